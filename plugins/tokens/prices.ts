/**
 * Built-in list prices, USD per million tokens, for common models: used only when a model
 * group has no `pricing` in the config — the config always overrides this table.
 *
 * Standard tier, text tokens, as each vendor published them (checked November 2025), and OpenAI's
 * Flex (half the standard price) and Priority tiers for the models it offers them on, as listed late
 * in 2025: an answer's `service_tier` picks them. Prices by prompt length use the lower band
 * (Gemini 2.5 Pro: prompts up to 200k tokens); `cached_input` is the
 * cache-read price. Anthropic's cache writes take `cache_write_input`'s default, 1.25 × input,
 * its price for the 5-minute cache, and those to the 1-hour cache `cache_write_1h_input`'s, 2 × input. Prices change:
 * set `pricing` on a model group when the bill must match.
 */
import type { Pricing } from '../../src/config/schema.ts'
import { baseModelName } from './encodings.ts'

export const BUILTIN_PRICES = {
  // OpenAI
  'gpt-5': { input: 1.25, output: 10, cached_input: 0.125, service_tiers: { flex: { input: 0.625, output: 5, cached_input: 0.0625 }, priority: { input: 2.5, output: 20, cached_input: 0.25 } } },
  'gpt-5-mini': { input: 0.25, output: 2, cached_input: 0.025, service_tiers: { flex: { input: 0.125, output: 1, cached_input: 0.0125 }, priority: { input: 0.45, output: 3.6, cached_input: 0.045 } } },
  'gpt-5-nano': { input: 0.05, output: 0.4, cached_input: 0.005, service_tiers: { flex: { input: 0.025, output: 0.2, cached_input: 0.0025 } } },
  'gpt-5-chat-latest': { input: 1.25, output: 10, cached_input: 0.125 },
  'gpt-5.1': { input: 1.25, output: 10, cached_input: 0.125, service_tiers: { flex: { input: 0.625, output: 5, cached_input: 0.0625 }, priority: { input: 2.5, output: 20, cached_input: 0.25 } } },
  'gpt-5.1-chat-latest': { input: 1.25, output: 10, cached_input: 0.125 },
  'gpt-4.1': { input: 2, output: 8, cached_input: 0.5, service_tiers: { priority: { input: 3.5, output: 14, cached_input: 0.875 } } },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cached_input: 0.1, service_tiers: { priority: { input: 0.7, output: 2.8, cached_input: 0.175 } } },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cached_input: 0.025, service_tiers: { priority: { input: 0.2, output: 0.8, cached_input: 0.05 } } },
  'gpt-4o': { input: 2.5, output: 10, cached_input: 1.25, service_tiers: { priority: { input: 4.25, output: 17, cached_input: 2.125 } } },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cached_input: 0.075, service_tiers: { priority: { input: 0.25, output: 1, cached_input: 0.125 } } },
  o1: { input: 15, output: 60, cached_input: 7.5 },
  'o1-mini': { input: 1.1, output: 4.4, cached_input: 0.55 },
  o3: { input: 2, output: 8, cached_input: 0.5, service_tiers: { flex: { input: 1, output: 4, cached_input: 0.25 }, priority: { input: 3.5, output: 14, cached_input: 0.875 } } },
  'o3-mini': { input: 1.1, output: 4.4, cached_input: 0.55 },
  'o4-mini': { input: 1.1, output: 4.4, cached_input: 0.275, service_tiers: { flex: { input: 0.55, output: 2.2, cached_input: 0.1375 }, priority: { input: 2, output: 8, cached_input: 0.5 } } },
  'chatgpt-4o-latest': { input: 5, output: 15 },
  'gpt-4-turbo': { input: 10, output: 30 },
  // gpt-4-turbo's snapshots and its vision preview, named apart from it.
  'gpt-4-0125-preview': { input: 10, output: 30 },
  'gpt-4-1106-preview': { input: 10, output: 30 },
  'gpt-4-vision-preview': { input: 10, output: 30 },
  'gpt-4-1106-vision-preview': { input: 10, output: 30 },
  'gpt-4': { input: 30, output: 60 },
  'gpt-4-32k': { input: 60, output: 120 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'gpt-3.5-turbo-16k': { input: 3, output: 4 },
  'gpt-3.5-turbo-instruct': { input: 1.5, output: 2 },
  // Dated snapshots OpenAI prices apart from their model (an exact name wins over the variant rule below).
  'gpt-4o-2024-05-13': { input: 5, output: 15 },
  'gpt-3.5-turbo-1106': { input: 1, output: 2 },
  'gpt-3.5-turbo-0613': { input: 1.5, output: 2 },
  'gpt-3.5-turbo-0301': { input: 1.5, output: 2 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
  // Anthropic
  'claude-opus-4-5': { input: 5, output: 25, cached_input: 0.5 },
  'claude-opus-4-1': { input: 15, output: 75, cached_input: 1.5 },
  'claude-opus-4': { input: 15, output: 75, cached_input: 1.5 },
  'claude-sonnet-4-5': { input: 3, output: 15, cached_input: 0.3 },
  'claude-sonnet-4': { input: 3, output: 15, cached_input: 0.3 },
  'claude-haiku-4-5': { input: 1, output: 5, cached_input: 0.1 },
  'claude-3-7-sonnet': { input: 3, output: 15, cached_input: 0.3 },
  'claude-3-5-sonnet': { input: 3, output: 15, cached_input: 0.3 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cached_input: 0.08 },
  'claude-3-opus': { input: 15, output: 75, cached_input: 1.5 },
  'claude-3-haiku': { input: 0.25, output: 1.25, cached_input: 0.03 },
  // Google
  'gemini-2.5-pro': { input: 1.25, output: 10, cached_input: 0.125 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5, cached_input: 0.03 },
  'gemini-2.5-flash-lite': { input: 0.1, output: 0.4, cached_input: 0.01 },
} as const satisfies Record<string, Pricing>

const TABLE: ReadonlyMap<string, Pricing> = new Map(Object.entries(BUILTIN_PRICES))

/**
 * A dated or aliased variant of a listed model, unless listed itself: `gpt-4o-2024-08-06`, `gpt-4-0613`,
 * `claude-sonnet-4-20250514`, `claude-3-5-haiku-latest`, `claude-sonnet-4-0`,
 * `gemini-2.5-flash-preview-05-20`, and Vertex AI's `claude-sonnet-4@20250514`. Only these suffixes match, so `gpt-4o-mini` never takes
 * `gpt-4o`'s price and `claude-opus-4-5` never takes `claude-opus-4`'s.
 */
const VARIANT = /^(.+?)(?:-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|0|latest|preview(?:-\d{2}-\d{2}|-\d{4}-\d{2}-\d{2})?)|@\d{8})$/

const FINE_TUNED = /(?:^|\/)ft:/i

/** The built-in price of a model, by its name or the name it is a dated variant of. Fine-tuned models (`ft:…`) cost more: none. */
export function builtinPricing(model: string): Pricing | undefined {
  if (FINE_TUNED.test(model)) return undefined
  const name = baseModelName(model)
  const exact = TABLE.get(name)
  if (exact) return exact
  const base = VARIANT.exec(name)?.[1]
  return base === undefined ? undefined : TABLE.get(base)
}
