import type { AdapterFactory, UpstreamCall } from '../types.ts'
import {
  errorResponse,
  isRecord,
  jsonResponse,
  refusalResponse,
  sseResponse,
  wantsStreamUsage,
  webPageAnswer,
} from '../shared/openai-format.ts'
import { toAnthropicRequest } from './request.ts'
import { rateLimitHeaders, streamStartError, toChatCompletion, toErrorResponse } from './response.ts'
import { anthropicStreamToOpenAI } from './stream.ts'
import { firstEventWait, peekFirstEvent } from '../shared/sse-transform.ts'

/** @default '2023-06-01' */
const DEFAULT_VERSION = '2023-06-01'
/** @default 4096 */
const DEFAULT_MAX_TOKENS = 4096

const positiveInt = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined

/**
 * Anthropic's Messages API behind the OpenAI chat API. `baseUrl` is the SDK's
 * (`https://api.anthropic.com`); the adapter calls `{baseUrl}/v1/messages`.
 * Options: `anthropic_version` (header, default 2023-06-01), `default_max_tokens`
 * (sent when the client gives none, default 4096). Serves chat completions only.
 */
export const anthropicAdapter: AdapterFactory = (provider) => {
  // Tolerate the common slip of a baseUrl that already ends in /v1.
  const base = (provider.baseUrl ?? 'https://api.anthropic.com').replace(/\/+$/, '').replace(/\/v1$/, '')
  const url = `${base}/v1/messages`
  const options = provider.options ?? {}
  const version = typeof options.anthropic_version === 'string' ? options.anthropic_version : DEFAULT_VERSION
  const defaultMaxTokens = positiveInt(options.default_max_tokens)
  if (options.default_max_tokens !== undefined && defaultMaxTokens === undefined) {
    throw new Error(`provider "${provider.id}": options.default_max_tokens must be a positive integer`)
  }
  const translation = { defaultMaxTokens: defaultMaxTokens ?? DEFAULT_MAX_TOKENS }
  const fixed: Record<string, string> = { 'content-type': 'application/json', 'anthropic-version': version, ...provider.headers }
  const waitFor = firstEventWait(provider)

  return {
    type: 'anthropic',
    endpoints: new Set(['chat.completions'] as const),
    async send(call: UpstreamCall): Promise<Response> {
      if (call.endpoint !== 'chat.completions') {
        return refusalResponse({ message: `Provider "${provider.id}" (anthropic) serves chat completions only, not ${call.endpoint}.`, param: null })
      }
      const translated = toAnthropicRequest(call.body, translation)
      if (!translated.ok) return refusalResponse(translated)
      const request = translated.value
      if (call.stream) request.stream = true
      // Where the client asked for JSON through a tool, the answer comes back as a call of it.
      const answerTool = translated.answerTool

      const startedAt = performance.now()
      const upstream = await fetch(url, {
        method: 'POST',
        headers: { ...fixed, 'x-api-key': call.key.secret },
        body: JSON.stringify(request),
        signal: call.signal,
        redirect: 'manual',
      })
      const page = webPageAnswer(upstream)
      if (page) return page
      if (!upstream.ok) return toErrorResponse(upstream.status, await upstream.text().catch(() => ''), upstream.headers)
      const headers = rateLimitHeaders(upstream.headers)

      if (call.stream) {
        if (!upstream.body) return errorResponse(502, 'Anthropic answered a stream request without a body.')
        // Anthropic answers an overloaded (or otherwise failing) stream 200 and says so in its first
        // event: that is the HTTP error it stands for, answered before the client's stream starts, so
        // balancing can try another key and the client gets a status, not a stream that fails at once.
        // The wait is bounded (firstEventWait): a proxy in front of Claude that sends message_start
        // only with the first token is passed on as it comes, not cut as a timeout.
        const peeked = await peekFirstEvent(upstream.body, { within: waitFor(startedAt) })
        const failed = streamStartError(peeked.first, upstream.headers)
        if (failed) {
          peeked.reader.cancel().catch(() => {})
          return failed
        }
        const body = anthropicStreamToOpenAI(peeked, {
          model: request.model,
          includeUsage: wantsStreamUsage(call.body),
          provider: provider.id,
          secret: call.key.secret,
          answerTool,
        })
        return sseResponse(body, upstream.status, headers)
      }
      // Read first, parse after: a read that fails (abort, timeout) must reach the pipeline as such.
      const text = await upstream.text()
      let message: unknown
      try {
        message = JSON.parse(text)
      } catch {
        return errorResponse(502, 'Anthropic answered with a body that is not JSON.')
      }
      if (!isRecord(message)) return errorResponse(502, 'Anthropic answered with an unexpected body.')
      return jsonResponse(toChatCompletion(message, request.model, answerTool), upstream.status, headers)
    },
  }
}
