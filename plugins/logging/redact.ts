/**
 * The `log_bodies: "redacted"` form of a request body: its shape and parameters, never its
 * text. Message contents, prompts, embedding inputs and tool-call arguments become their
 * length (`"[42 chars]"`); anything that looks like a secret (an `sk-…` key, a bearer token,
 * a field named like a key or password) becomes `"[masked]"`. Bounded in depth and width.
 */

/** Fields whose every string is content, replaced by its length. */
const CONTENT_FIELDS: ReadonlySet<string> = new Set(['content', 'prompt', 'input', 'text', 'arguments', 'suffix', 'instructions', 'url', 'data', 'image_url', 'file_data', 'refusal'])
/** Field names whose value is a secret (words split by `_` or `-`; see {@link isSecretField} for camelCase). */
const SECRET_FIELD = /(^|_|-)(api_?key|key|secret|password|passwd|authorization|auth|token|access_token|refresh_token|credential|credentials|cookie)$/i
/** Where a camelCase name starts a new word: `clientSecret`, `APIKey`, `awsSecretAccessKey`. */
const CAMEL_BOUNDARY = /(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])/g
const UPPER = /[A-Z]/
/** A value that looks like a key or a bearer credential, wherever it appears. */
const SECRET_VALUE = /\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}|\bsluice-admin-[A-Za-z0-9]+|\bBearer\s+\S+|\bAKIA[0-9A-Z]{12,}|\bey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/

const MAX_DEPTH = 8
const MAX_ITEMS = 64
const MAX_KEYS = 64
const MAX_STRING = 200

export const MASKED = '[masked]'
export const chars = (s: string): string => `[${s.length} chars]`

/** Whether a field's name says its value is a secret, in snake, kebab or camel case. */
function isSecretField(name: string): boolean {
  return SECRET_FIELD.test(name) || (UPPER.test(name) && SECRET_FIELD.test(name.replace(CAMEL_BOUNDARY, '_')))
}

/** The redacted copy of a request body (or any JSON value). */
export function redactBody(value: unknown): unknown {
  return walk(value, false, 0)
}

function walk(value: unknown, content: boolean, depth: number): unknown {
  if (typeof value === 'string') {
    if (content) return chars(value)
    if (SECRET_VALUE.test(value)) return MASKED
    return value.length > MAX_STRING ? chars(value) : value
  }
  if (value === null || typeof value !== 'object') return value
  if (depth >= MAX_DEPTH) return '[nested]'
  if (Array.isArray(value)) {
    // Token id arrays (prompts, inputs given as tokens) are content too: their count is enough.
    if (content && value.every((v) => typeof v === 'number')) return `[${value.length} tokens]`
    const out = value.slice(0, MAX_ITEMS).map((v) => walk(v, content, depth + 1))
    if (value.length > MAX_ITEMS) out.push(`[+${value.length - MAX_ITEMS} more]`)
    return out
  }
  const out: Record<string, unknown> = {}
  let n = 0
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (n++ >= MAX_KEYS) {
      out['…'] = `[+${Object.keys(value).length - MAX_KEYS} more fields]`
      break
    }
    if (isSecretField(k) && v !== null && typeof v !== 'number' && typeof v !== 'boolean') out[k] = MASKED
    // A content part keeps only its `type`; elsewhere the field's name decides.
    else out[k] = walk(v, content ? k !== 'type' : CONTENT_FIELDS.has(k), depth + 1)
  }
  return out
}
