/** One character of an HTTP token (RFC 9110, 5.6.2: tchar), of which header names are made. */
const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]"

/** An HTTP token: a header name. */
export const TOKEN = new RegExp(`^${TCHAR}+$`)

/** Tokens separated by commas, as a preflight's Access-Control-Request-Headers lists header names. */
export const TOKEN_LIST = new RegExp(`^${TCHAR}+(?:\\s*,\\s*${TCHAR}+)*$`)

/**
 * A header value as fetch sends it: without the HTTP white space around it (spaces, tabs, CRs
 * and LFs: Fetch's "normalize"), a secret file's trailing newline, say.
 */
export function trimHttpWhitespace(value: string): string {
  const white = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r' || c === '\n'
  let start = 0
  let end = value.length
  while (start < end && white(value[start])) start++
  while (end > start && white(value[end - 1])) end--
  return value.slice(start, end)
}
