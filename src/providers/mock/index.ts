import type { AdapterFactory, UpstreamCall } from '../types.ts'
import { mockChatCompletion, mockChatStream, mockCompletion, mockCompletionStream, mockEmbeddings } from './generate.ts'

const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : fallback)

const json = (body: unknown): Response =>
  new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } })

/**
 * The built-in deterministic model: no network, same answer for the same request.
 * Options: `latency_ms` before the answer, `chunks` and `chunk_delay_ms` for streams.
 */
export const mockAdapter: AdapterFactory = (provider) => {
  const latencyMs = num(provider.options?.latency_ms, 0)
  const chunks = num(provider.options?.chunks, 8)
  const chunkDelayMs = num(provider.options?.chunk_delay_ms, 0)
  const wait = (signal: AbortSignal): Promise<void> =>
    latencyMs === 0
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const timer = setTimeout(resolve, latencyMs)
          signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true })
        })

  return {
    type: 'mock',
    endpoints: new Set(['chat.completions', 'completions', 'embeddings'] as const),
    async send(call: UpstreamCall): Promise<Response> {
      await wait(call.signal)
      switch (call.endpoint) {
        case 'chat.completions':
          if (!call.stream) return json(mockChatCompletion(call.body))
          return new Response(mockChatStream(call.body, { chunks, chunkDelayMs, signal: call.signal }), {
            headers: { 'content-type': 'text/event-stream' },
          })
        case 'completions':
          if (!call.stream) return json(mockCompletion(call.body))
          return new Response(mockCompletionStream(call.body, { chunks, chunkDelayMs, signal: call.signal }), {
            headers: { 'content-type': 'text/event-stream' },
          })
        case 'embeddings':
          return json(mockEmbeddings(call.body))
        default:
          throw new Error(`the mock provider does not serve ${call.endpoint}`)
      }
    },
  }
}
