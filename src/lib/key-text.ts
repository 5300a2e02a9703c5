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
 * like a key, or holding one (`Bearer sk-…`), is masked, since messages never carry a whole
 * key; anything long is cut.
 */
export function echo(value: string, max = 64): string {
  if (keyEnvironment(value) !== null) return maskKey(value)
  const shown = value.includes('sk-') ? maskKeysUpTo(value, max + 1) : value
  return shown.length > max ? `${shown.slice(0, max)}…` : shown
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

/** The longest text KEY_IN_TEXT takes for a key: `sk-`, 16 characters of environment, `-`, 256 of secret. */
const KEY_TEXT_MAX = 3 + 16 + 1 + 256

/**
 * The first `max` characters of `text` with every key in them masked: a key across the cut is
 * masked whole, never shown in part, and a long text is read only as far as those characters need.
 */
export function maskKeysUpTo(text: string, max: number): string {
  // Masking shortens the text, so what fills `max` characters may come from further on: read on until
  // a whole key's length lies past them, where a key cut off at the end of what was read cannot show.
  let end = Math.min(text.length, max + KEY_TEXT_MAX)
  for (;;) {
    const masked = maskKeysIn(text.slice(0, end))
    if (end === text.length || masked.length >= max + KEY_TEXT_MAX) return masked.length > max ? masked.slice(0, max) : masked
    end = Math.min(text.length, end + max + KEY_TEXT_MAX - masked.length)
  }
}

/** The masked display form of a stored key (its first and last characters, as the admin API shows it). */
export const displayKey = (start: string, end: string): string => `${start}…${end}`
