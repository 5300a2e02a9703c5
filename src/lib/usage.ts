import type { Pricing } from '../config/schema.ts'
import type { Usage } from '../plugin.ts'
import type { Tokenizer } from '../services.ts'

const int = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0)

/** Read an OpenAI-format `usage` object; null when the value is not one. */
export function parseUsage(raw: unknown, pricing: Pricing | undefined): Usage | null {
  if (typeof raw !== 'object' || raw === null) return null
  const u = raw as Record<string, unknown>
  if (typeof u.prompt_tokens !== 'number' && typeof u.total_tokens !== 'number') return null
  const details = u.prompt_tokens_details as Record<string, unknown> | undefined
  const promptTokens = int(u.prompt_tokens)
  const completionTokens = int(u.completion_tokens)
  const cachedTokens = int(details?.cached_tokens)
  return {
    promptTokens,
    completionTokens,
    cachedTokens,
    totalTokens: int(u.total_tokens) || promptTokens + completionTokens,
    costUsd: priceOf(promptTokens, completionTokens, cachedTokens, pricing),
    source: 'provider',
  }
}

/** USD for token counts at per-million prices; null without pricing. */
export function priceOf(prompt: number, completion: number, cached: number, pricing: Pricing | undefined): number | null {
  if (!pricing) return null
  const uncached = Math.max(0, prompt - cached)
  return (uncached * pricing.input + cached * (pricing.cached_input ?? pricing.input) + completion * pricing.output) / 1_000_000
}

/** A rough count (4 characters a token) for when the provider reports none. */
export const roughTokens = (chars: number): number => Math.ceil(chars / 4)

/** Rough prompt tokens of a request body: its messages, prompt or input, 4 characters a token. */
export function roughPromptTokens(body: Record<string, unknown>): number {
  const source = body.messages ?? body.prompt ?? body.input
  if (source === undefined) return 0
  return roughTokens(typeof source === 'string' ? source.length : JSON.stringify(source).length)
}

/** The tokenizer in force without a token-counting plugin: estimates, and prices from the config only. */
export const roughTokenizer: Tokenizer = {
  name: 'estimate',
  encodingFor: () => 'estimate',
  countPrompt: (_endpoint, body) => roughPromptTokens(body),
  countText: (text) => roughTokens(text.length),
  pricing: (_model, _upstream, configured) => configured,
}
