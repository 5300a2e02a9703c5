/** Characters of secret a well-formed key has at least after `sk-<env>-` (DESIGN.md). */
const MIN_SECRET_LENGTH = 32
const SHAPE = /^sk-([a-z0-9]{1,16})-([0-9A-Za-z]{32,256})$/

/** The environment of a well-formed key; null when it does not have the sluice key shape. */
export function keyEnvironment(key: string): string | null {
  const match = SHAPE.exec(key)
  if (!match || match[2]!.length < MIN_SECRET_LENGTH) return null
  return match[1]!
}

/**
 * A form of a presented key that is safe to show and log: never the whole key.
 * Long enough keys show their display start and last four, like the admin API does.
 */
export function maskKey(key: string): string {
  if (key.length >= 24) return `${key.slice(0, 12)}…${key.slice(-4)}`
  if (key.length >= 8) return `${key.slice(0, 4)}…(${key.length} characters)`
  return `(${key.length} characters)`
}

/**
 * Caller input echoed in a message (an id, a team header, a model name): a value shaped
 * like a key is masked, since messages never carry a whole key; anything long is cut.
 */
export function echo(value: string, max = 64): string {
  if (keyEnvironment(value) !== null) return maskKey(value)
  return value.length > max ? `${value.slice(0, max)}…` : value
}

/** A sluice key anywhere in a text: the shape keyEnvironment takes, between non-key characters. */
const KEY_IN_TEXT = /(?<![0-9A-Za-z-])sk-[a-z0-9]{1,16}-[0-9A-Za-z]{32,256}(?![0-9A-Za-z])/g

/**
 * Free text with every key in it masked (an operator's revoke reason that tells the holder the new
 * key): what a message or an admin view shows of it never holds a whole key.
 */
export function maskKeysIn(text: string): string {
  return text.replace(KEY_IN_TEXT, maskKey)
}
