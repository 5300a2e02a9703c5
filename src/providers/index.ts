import type { ProviderConfig, ProviderType } from '../config/schema.ts'
import type { AdapterFactory, ProviderAdapter } from './types.ts'
import { openaiAdapter } from './openai/index.ts'
import { openaiCompatibleAdapter } from './openai-compatible/index.ts'
import { mockAdapter } from './mock/index.ts'
import { anthropicAdapter } from './anthropic/index.ts'
import { geminiAdapter } from './gemini/index.ts'

/** Every provider type and its adapter; the one place that maps a type to code. */
export const ADAPTERS: Partial<Record<ProviderType, AdapterFactory>> = {
  openai: openaiAdapter,
  'openai-compatible': openaiCompatibleAdapter,
  anthropic: anthropicAdapter,
  gemini: geminiAdapter,
  mock: mockAdapter,
}

/** Build the adapter of a provider, or say why not. */
export function createAdapter(provider: ProviderConfig): ProviderAdapter {
  const factory = ADAPTERS[provider.type]
  if (!factory) throw new Error(`provider "${provider.id}": type "${provider.type}" is not supported by this build`)
  return factory(provider)
}

export type { ProviderAdapter, UpstreamCall, AdapterFactory } from './types.ts'
