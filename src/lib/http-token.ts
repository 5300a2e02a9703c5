/** One character of an HTTP token (RFC 9110, 5.6.2: tchar), of which header names are made. */
const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]"

/** An HTTP token: a header name. */
export const TOKEN = new RegExp(`^${TCHAR}+$`)

/** Tokens separated by commas, as a preflight's Access-Control-Request-Headers lists header names. */
export const TOKEN_LIST = new RegExp(`^${TCHAR}+(?:\\s*,\\s*${TCHAR}+)*$`)
