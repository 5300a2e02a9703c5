import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

/**
 * Secrets at rest by envelope encryption: each secret has its own random data key
 * (AES-256-GCM); the data key is sealed with the master key (AES-256-GCM too), and the
 * envelope names the master key by an id. Rotating the master key re-seals data keys only.
 */
export interface Envelope {
  v: 1
  /** Id of the master key that sealed `wk`. */
  kid: string
  /** The data key sealed by the master key: iv | tag | ciphertext, base64. */
  wk: string
  /** The secret sealed by the data key: iv | tag | ciphertext, base64. */
  ct: string
}

/** A master key and its id (the first 16 hex characters of its SHA-256: public, not the key). */
export interface MasterKey {
  id: string
  key: Buffer
}

export function masterKey(base64: string): MasterKey {
  const key = Buffer.from(base64, 'base64')
  if (key.length !== 32) throw new Error('an encryption key must be 32 bytes, base64-encoded (try: openssl rand -base64 32)')
  return { id: Bun.SHA256.hash(key, 'hex').slice(0, 16), key }
}

function seal(key: Buffer, plaintext: Buffer, aad: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(aad))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')
}

function open(key: Buffer, sealed: string, aad: string): Buffer {
  const raw = Buffer.from(sealed, 'base64')
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
  decipher.setAAD(Buffer.from(aad))
  decipher.setAuthTag(raw.subarray(12, 28))
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()])
}

/**
 * Seal a secret. `context` (e.g. `provider/key`) is bound in as additional data, so an
 * envelope copied onto another row does not open there.
 */
export function encryptSecret(master: MasterKey, secret: string, context: string): string {
  const dataKey = randomBytes(32)
  const envelope: Envelope = { v: 1, kid: master.id, wk: seal(master.key, dataKey, `${master.id}|${context}`), ct: seal(dataKey, Buffer.from(secret, 'utf8'), context) }
  return JSON.stringify(envelope)
}

/**
 * An envelope sealed with a master key this process was not given (another instance runs with a
 * newer SLUICE_ENCRYPTION_KEY, say): `keyId` names it, so the operator knows which key to set.
 */
export class UnknownMasterKeyError extends Error {
  constructor(
    readonly keyId: string,
    readonly context: string,
  ) {
    super(`the secret of ${context} was sealed with master key ${keyId}, which is not configured`)
    this.name = 'UnknownMasterKeyError'
  }
}

/** Open an envelope with whichever of the known master keys sealed it. */
export function decryptSecret(masters: readonly MasterKey[], stored: string, context: string): string {
  const envelope = parseEnvelope(stored)
  const master = masters.find((m) => m.id === envelope.kid)
  if (!master) throw new UnknownMasterKeyError(envelope.kid, context)
  const dataKey = open(master.key, envelope.wk, `${master.id}|${context}`)
  return open(dataKey, envelope.ct, context).toString('utf8')
}

/** Re-seal the data key under another master key; the secret's own ciphertext is kept. */
export function rewrapSecret(from: readonly MasterKey[], to: MasterKey, stored: string, context: string): string {
  const envelope = parseEnvelope(stored)
  const master = from.find((m) => m.id === envelope.kid)
  if (!master) throw new UnknownMasterKeyError(envelope.kid, context)
  const dataKey = open(master.key, envelope.wk, `${master.id}|${context}`)
  const next: Envelope = { v: 1, kid: to.id, wk: seal(to.key, dataKey, `${to.id}|${context}`), ct: envelope.ct }
  return JSON.stringify(next)
}

export function envelopeKeyId(stored: string): string {
  return parseEnvelope(stored).kid
}

function parseEnvelope(stored: string): Envelope {
  const value = JSON.parse(stored) as Partial<Envelope>
  if (value.v !== 1 || typeof value.kid !== 'string' || typeof value.wk !== 'string' || typeof value.ct !== 'string') {
    throw new Error('not a sealed secret envelope')
  }
  return value as Envelope
}

/**
 * A secret as a header carries it, without the white space around it (a secret file's trailing
 * newline is not sent), and without the other white space (NBSP, say) either, which an upstream may
 * not echo as it was sent (as one byte, not UTF-8): trim() takes both, and what is left is still
 * part of what was sent, and goes.
 */
const sent = (value: string): string => value.trim()

/** Remove a provider secret from text that may reach a client or a log (an upstream may echo the key it was sent). */
export function scrub(text: string, secret: string): string {
  const value = sent(secret)
  return value.length >= 4 ? text.split(value).join('***') : text
}

/** Percent-decoded, or as written where it is not valid percent-encoding. */
const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/**
 * Every secret a call to a provider carries besides its key: the values of its extra headers
 * (often credentials: an organisation token, a gateway key), and the password and query values of
 * its base URL (`?key=…`, `?api-key=…`). An upstream's error may echo any of them. Values under 4
 * characters are left: too short to be a credential, and too common to blank out of a message.
 * The key and header values count as sent (trimmed); a base URL's user info as fetch sends it
 * when no other Authorization header is set: `Basic base64(user:password)`, and a user name
 * standing alone, which is a token (`https://<token>@host`, masked as such by the admin API).
 */
export function callSecrets(key: string, headers: Readonly<Record<string, string>> | undefined, baseUrl: string | undefined): string[] {
  const secrets = [sent(key)]
  if (headers) for (const value of Object.values(headers)) secrets.push(sent(value))
  if (baseUrl) {
    try {
      const url = new URL(baseUrl)
      if (url.password) secrets.push(decoded(url.password), url.password)
      else if (url.username) secrets.push(decoded(url.username), url.username)
      if (url.username || url.password) secrets.push(Buffer.from(`${decoded(url.username)}:${decoded(url.password)}`).toString('base64'))
      for (const value of url.searchParams.values()) secrets.push(value)
      // The raw text too: an upstream echoes the URL as it was sent, percent-encoding and all.
      for (const part of url.search.slice(1).split('&')) secrets.push(part.slice(part.indexOf('=') + 1))
    } catch {
      // A base URL that does not parse holds nothing to find.
    }
  }
  // Longest first: a secret that holds another is removed whole.
  return [...new Set(secrets.filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length)
}

/** Remove every one of `secrets` (see callSecrets) from text that may reach a client or a log. */
export function scrubAll(text: string, secrets: readonly string[]): string {
  for (const secret of secrets) if (text.includes(secret)) text = text.split(secret).join('***')
  return text
}
