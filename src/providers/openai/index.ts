import type { ProviderConfig } from '../../config/schema.ts'
import type { Endpoint } from '../../plugin.ts'
import type { AdapterFactory, ProviderAdapter, UpstreamCall } from '../types.ts'
import { firstEventWait, peekFirstEvent } from '../shared/sse-transform.ts'
import { streamStartError } from './stream-start.ts'

const PATHS: Partial<Record<Endpoint, string>> = {
  'chat.completions': '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
}

/** Options shared by OpenAI and the vendors that copy its API. */
export interface OpenAIBaseOptions {
  type: string
  baseUrl: string
}

const bearer = (secret: string): Record<string, string> => (secret ? { authorization: `Bearer ${secret}` } : {})

/** A header name a key may travel in (an HTTP token), and the names that must keep their own meaning. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'transfer-encoding', 'connection'])

/**
 * `options.auth_header`: the header the key travels in, as it is, instead of `Authorization:
 * Bearer` (Azure OpenAI's classic API takes keys in `api-key`). Undefined when not set.
 */
function authHeaderOf(provider: ProviderConfig): ((secret: string) => Record<string, string>) | undefined {
  const name = provider.options?.auth_header
  if (name === undefined) return undefined
  if (typeof name !== 'string' || !HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) {
    throw new Error(`provider "${provider.id}": options.auth_header must be a header name such as "api-key" (not content-type, host or the like)`)
  }
  const header = name.toLowerCase()
  return (secret) => (secret ? { [header]: secret } : {})
}

/**
 * Each endpoint's URL under the base. A query in the base (Azure's `?api-version=…`) stays at
 * the end of every URL, after the endpoint's path.
 */
function endpointUrls(baseUrl: string): Map<Endpoint, string> {
  const at = baseUrl.indexOf('?')
  const query = at === -1 ? '' : baseUrl.slice(at)
  const base = (at === -1 ? baseUrl : baseUrl.slice(0, at)).replace(/\/+$/, '')
  const urls = new Map<Endpoint, string>()
  for (const [endpoint, path] of Object.entries(PATHS) as [Endpoint, string][]) urls.set(endpoint, base + path + query)
  return urls
}

/**
 * The OpenAI wire format is the gateway's own, so this adapter forwards bodies as they
 * are and hands the upstream response back untouched: no translation on the hot path.
 */
export function createOpenAIBase(provider: ProviderConfig, options: OpenAIBaseOptions): ProviderAdapter {
  // Built once: the URL per endpoint and the constant headers.
  const urls = endpointUrls(options.baseUrl)
  const authHeaders = authHeaderOf(provider) ?? bearer
  const fixed: Record<string, string> = { 'content-type': 'application/json', ...provider.headers }
  // `options.stream_usage: false`: for servers that refuse `stream_options` (the gateway adds it to
  // every stream to read the usage); their streams are then counted by estimate.
  const streamUsage = provider.options?.stream_usage
  if (streamUsage !== undefined && typeof streamUsage !== 'boolean') {
    throw new Error(`provider "${provider.id}": options.stream_usage must be true or false`)
  }
  const dropStreamOptions = streamUsage === false
  // `options.stream_start_errors: true`: for servers that may answer 200 and fail in the stream's
  // first event (OpenRouter, older vLLM); the stream is then read from a copy until that event.
  // Off by default: the copy (a tee of the native body) cost a no-plugins gateway about 14 µs of CPU a
  // stream, about 11 % of its streams a second, for every stream of a provider that never does this.
  const startErrors = provider.options?.stream_start_errors
  if (startErrors !== undefined && typeof startErrors !== 'boolean') {
    throw new Error(`provider "${provider.id}": options.stream_start_errors must be true or false`)
  }
  const waitFor = startErrors === true ? firstEventWait(provider) : null

  return {
    type: options.type,
    endpoints: new Set(urls.keys()),
    send(call: UpstreamCall): Promise<Response> {
      const url = urls.get(call.endpoint)
      if (!url) return Promise.reject(new Error(`provider ${provider.id} does not serve ${call.endpoint}`))
      const startedAt = performance.now()
      const sent = fetch(url, {
        method: 'POST',
        headers: { ...fixed, ...authHeaders(call.key.secret) },
        body: JSON.stringify(dropStreamOptions && call.body.stream_options !== undefined ? withoutStreamOptions(call.body) : call.body),
        signal: call.signal,
        // Never follow a redirect with a secret attached to somewhere we were not told about.
        redirect: 'manual',
      })
      // The fetch's own promise where there is nothing to look at: no extra turn for every call.
      if (waitFor === null || !call.stream) return sent
      return sent.then(async (response) => {
        if (response.status !== 200 || response.body === null || !response.headers.get('content-type')?.includes('text/event-stream')) return response
        return (await failedStart(response, waitFor(startedAt))) ?? response
      })
    },
  }
}

/**
 * The HTTP error a 200 stream's first event stands for (see streamStartError), read from a copy of
 * the body so that the stream itself still goes on untouched (Bun hands a fetched body to the client
 * natively; one read in JavaScript would cost every chunk). Undefined for a stream that starts with
 * content, or sends no event within `within` ms (a reasoning model thinking first).
 */
async function failedStart(response: Response, within: number): Promise<Response | undefined> {
  if (within <= 0) return undefined
  const peeked = await peekFirstEvent(response.clone().body!, { within })
  peeked.reader.cancel().catch(() => {})
  const failed = streamStartError(peeked.first, response.headers)
  if (failed) response.body?.cancel().catch(() => {})
  return failed
}

function withoutStreamOptions(body: Record<string, unknown>): Record<string, unknown> {
  const { stream_options: _dropped, ...rest } = body
  return rest
}

export const openaiAdapter: AdapterFactory = (provider) =>
  createOpenAIBase(provider, { type: 'openai', baseUrl: provider.baseUrl ?? 'https://api.openai.com/v1' })
