/**
 * The `log_bodies: "redacted"` form of a request body: its shape and parameters, never its
 * text. Message contents, prompts, embedding inputs, tool-call arguments, a model's reasoning
 * and thinking sent back, descriptions, stop sequences and the named end user become their
 * length (`"[42 chars]"`); anything that looks like a secret (a key or token of a well-known
 * shape, a bearer credential, a field named like a key or password) becomes `"[masked]"`, as
 * does a field name that is itself a secret. Bounded in depth and width.
 */

/**
 * Fields whose every string is content, replaced by its length, however deep: free text a user,
 * a developer or a model wrote. Parameters (model, numbers, flags, ids, tool and function names,
 * JSON-schema types and property names, metadata) stay, with secrets masked.
 */
const CONTENT_FIELDS: ReadonlySet<string> = new Set([
  // Messages, prompts, inputs and their parts.
  'content', 'prompt', 'input', 'text', 'suffix', 'instructions', 'system', 'refusal', 'query', 'documents',
  // What a model wrote and is sent back: tool-call arguments, reasoning and thinking (with their signatures and encrypted forms).
  'arguments', 'reasoning_content', 'reasoning_details', 'thinking', 'thinking_blocks', 'signature', 'encrypted_content',
  // Media and files.
  'url', 'data', 'image_url', 'file_data',
  // A developer's words: tool, function, response-format and schema descriptions; stop sequences.
  'description', 'stop',
  // The end user the caller names (often an email address).
  'user', 'safety_identifier',
])
/** Content when a string (a model's reasoning sent back), parameters when an object (`{"effort": "high"}`). */
const CONTENT_WHEN_TEXT: ReadonlySet<string> = new Set(['reasoning'])
/** Field names whose value is a secret (words split by `_` or `-`; see {@link isSecretField} for camelCase). */
const SECRET_FIELD = /(^|_|-)(api_?key|key|secret|password|passwd|pwd|pw|passphrase|authorization|auth|token|access_token|refresh_token|credential|credentials|cookie)$/i
/** Where a camelCase name starts a new word: `clientSecret`, `APIKey`, `awsSecretAccessKey`. */
const CAMEL_BOUNDARY = /(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])/g
const UPPER = /[A-Z]/
/**
 * A value that looks like a key or a credential, wherever it appears in a string (or an object
 * key): `sk-`/`pk-`/`rk-` keys (OpenAI, Anthropic, sluice and many more) not glued to a word
 * before them, Stripe keys, the sluice admin key, GitHub, GitLab, Google API, Slack, AWS access
 * key ids, Hugging Face and npm tokens, JWTs, PEM private keys, credentials in a URL, and a
 * bearer credential in any letter case.
 */
const SECRET_VALUE = new RegExp(
  [
    String.raw`(?<![A-Za-z0-9])(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}`,
    String.raw`(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}`,
    String.raw`\bsluice-admin-[A-Za-z0-9]+`,
    String.raw`\bgh[pousr]_[A-Za-z0-9]{20,}`,
    String.raw`\bgithub_pat_[A-Za-z0-9_]{20,}`,
    String.raw`\bglpat-[A-Za-z0-9_-]{20,}`,
    String.raw`\bAIza[0-9A-Za-z_-]{30,}`,
    String.raw`\bxox[abposr]-[A-Za-z0-9-]{10,}`,
    String.raw`\b(?:AKIA|ASIA)[0-9A-Z]{12,}`,
    String.raw`\b(?:hf|npm)_[A-Za-z0-9]{30,}`,
    String.raw`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`,
    String.raw`-----BEGIN [A-Z ]*PRIVATE KEY-----`,
    String.raw`[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@`,
    String.raw`\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+\S+`,
  ].join('|'),
)

const MAX_DEPTH = 8
const MAX_ITEMS = 64
const MAX_KEYS = 64
const MAX_STRING = 200
/** Values shown of one body in all: each bound above still let 64^4 values through (a 17 MB line, 1.6 s of the event loop). */
const MAX_VALUES = 5000
const CUT = `[cut: over ${MAX_VALUES} values]`

export const MASKED = '[masked]'
export const chars = (s: string): string => `[${s.length} chars]`

/** Whether a field's name says its value is a secret, in snake, kebab or camel case. */
function isSecretField(name: string): boolean {
  return SECRET_FIELD.test(name) || (UPPER.test(name) && SECRET_FIELD.test(name.replace(CAMEL_BOUNDARY, '_')))
}

/** The redacted copy of a request body (or any JSON value). */
export function redactBody(value: unknown): unknown {
  return walk(value, false, 0, { left: MAX_VALUES })
}

/** Values a walk may still show; once spent, every container stops at the value it reached, marked {@link CUT}. */
interface Budget {
  left: number
}

function walk(value: unknown, content: boolean, depth: number, budget: Budget): unknown {
  budget.left--
  if (typeof value === 'string') {
    // A long string is shown by its length alone, before any pattern runs over it: SECRET_VALUE's
    // search costs about the square of the length (a 200 KB field held the event loop 13 s).
    if (content || value.length > MAX_STRING) return chars(value)
    return SECRET_VALUE.test(value) ? MASKED : value
  }
  if (value === null || typeof value !== 'object') return value
  if (depth >= MAX_DEPTH) return '[nested]'
  if (Array.isArray(value)) {
    // Token id arrays (prompts, inputs given as tokens) are content too: their count is enough.
    if (content && value.every((v) => typeof v === 'number')) return `[${value.length} tokens]`
    const out: unknown[] = []
    for (const v of value.length > MAX_ITEMS ? value.slice(0, MAX_ITEMS) : value) {
      if (budget.left <= 0) {
        out.push(CUT)
        return out
      }
      out.push(walk(v, content, depth + 1, budget))
    }
    if (value.length > MAX_ITEMS) out.push(`[+${value.length - MAX_ITEMS} more]`)
    return out
  }
  const out: Record<string, unknown> = {}
  const fields = value as Record<string, unknown>
  // A message's `name` is its author's (a person's name); a tool's or function's name stays.
  const message = !content && typeof fields.role === 'string'
  let n = 0
  let maskedKeys = 0
  for (const [k, v] of Object.entries(fields)) {
    if (n++ >= MAX_KEYS) {
      out['…'] = `[+${Object.keys(fields).length - MAX_KEYS} more fields]`
      break
    }
    if (budget.left <= 0) {
      out['…'] = CUT
      break
    }
    // A secret used as a field name (a map keyed by API key, say) is masked as a value would be.
    // A field name is masked like a secret when it is long too (see the strings above).
    const name = k.length > MAX_STRING || SECRET_VALUE.test(k) ? (++maskedKeys === 1 ? MASKED : `${MASKED} ${maskedKeys}`) : k
    if (isSecretField(k) && v !== null && typeof v !== 'number' && typeof v !== 'boolean') out[name] = MASKED
    // A content part keeps only its `type`; elsewhere the field's name decides.
    else out[name] = walk(v, content ? k !== 'type' : CONTENT_FIELDS.has(k) || (message && k === 'name') || (typeof v === 'string' && CONTENT_WHEN_TEXT.has(k)), depth + 1, budget)
  }
  return out
}
