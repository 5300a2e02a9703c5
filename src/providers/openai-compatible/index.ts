import type { AdapterFactory } from '../types.ts'
import { createOpenAIBase } from '../openai/index.ts'

/**
 * Any server that speaks OpenAI's API (vLLM, Ollama, Groq, Mistral, Azure's v1 API…).
 * `baseUrl` is required (the config check says so). An empty secret sends no auth header.
 */
export const openaiCompatibleAdapter: AdapterFactory = (provider) =>
  createOpenAIBase(provider, { type: 'openai-compatible', baseUrl: provider.baseUrl ?? '' })
