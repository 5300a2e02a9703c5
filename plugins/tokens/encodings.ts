/**
 * Which tiktoken encoding a model's text is counted with. Data and string tests only: tiktoken's
 * small model table is read, never its WASM, so the main thread does not load the encoders.
 */
import MODEL_TO_ENCODING from 'tiktoken/model_to_encoding.json' with { type: 'json' }

/** The encodings the bundled tiktoken build ships. */
export const ENCODINGS = ['o200k_base', 'cl100k_base', 'p50k_base', 'p50k_edit', 'r50k_base', 'gpt2'] as const
export type EncodingName = (typeof ENCODINGS)[number]

export const isEncoding = (name: unknown): name is EncodingName => typeof name === 'string' && (ENCODINGS as readonly string[]).includes(name)

/**
 * Model families by name prefix, first match wins. A family name must end the name or be
 * followed by `-` (dated and `-mini`/`-nano` variants), so `gpt-4` does not catch `gpt-4o` or `gpt-4.1`.
 */
const FAMILIES: ReadonlyArray<readonly [RegExp, EncodingName]> = [
  [/^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5(?:\.\d+)?|o1|o3|o4|gpt-oss)(?:-|$)/, 'o200k_base'],
  [/^(?:gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002|davinci-002|babbage-002)(?:-|$)/, 'cl100k_base'],
]

/** tiktoken's own table of exact model names (legacy p50k/r50k models included). */
const EXACT: ReadonlyMap<string, string> = new Map(Object.entries(MODEL_TO_ENCODING as Record<string, string>))

/** `openai/gpt-4o` → `gpt-4o`, `ft:gpt-4o-mini-2024-07-18:org::id` → `gpt-4o-mini-2024-07-18`. */
export function baseModelName(model: string): string {
  let name = model.trim().toLowerCase()
  const slash = name.lastIndexOf('/')
  if (slash >= 0) name = name.slice(slash + 1)
  if (name.startsWith('ft:')) name = name.slice(3).split(':')[0] ?? name
  return name
}

/** The encoding of a known OpenAI model family, or undefined for a model this table does not know. */
export function knownEncoding(model: string): EncodingName | undefined {
  const name = baseModelName(model)
  const exact = EXACT.get(name)
  if (isEncoding(exact)) return exact
  for (const [pattern, encoding] of FAMILIES) if (pattern.test(name)) return encoding
  return undefined
}
