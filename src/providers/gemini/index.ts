import type { AdapterFactory, UpstreamCall } from '../types.ts'
import {
  errorResponse,
  isRecord,
  jsonResponse,
  pickHeaders,
  refusalResponse,
  sseResponse,
  str,
  wantsStreamUsage,
  webPageAnswer,
} from '../shared/openai-format.ts'
import { EMBED_BATCH_LIMIT, modelPath, toGeminiEmbedRequest, toGeminiRequest } from './request.ts'
import { brokenCallsOf, toChatCompletion, toEmbeddingList, toErrorResponse } from './response.ts'
import { geminiStreamToOpenAI, streamStartError } from './stream.ts'
import { firstEventWait, peekFirstEvent, type PeekedSse } from '../shared/sse-transform.ts'

/** @default 'v1beta' */
const DEFAULT_API_VERSION = 'v1beta'

const passHeaders = (headers: Headers): Record<string, string> => pickHeaders(headers, (name) => name === 'retry-after')

/** Read an upstream JSON object; a read that fails (abort, timeout) throws on to the pipeline. */
async function readJson(upstream: Response): Promise<Record<string, unknown> | null> {
  const text = await upstream.text()
  try {
    const parsed: unknown = JSON.parse(text)
    return isRecord(parsed) ? parsed : null
  } catch {
    return null
  }
}

/**
 * Google's Gemini API (generateContent, streamGenerateContent, batchEmbedContents) behind
 * the OpenAI API. `baseUrl` is the SDK's (`https://generativelanguage.googleapis.com`);
 * the adapter calls `{baseUrl}/{api_version}/models/{model}:{method}` with the key in
 * `x-goog-api-key`. Options: `api_version` (default v1beta), `safety_settings` (sent as
 * `safetySettings` on every chat call). Gemini has no switch for `parallel_tool_calls: false`:
 * the answer (streamed or not) then gives each choice's first function call only, as agent
 * frameworks that send it by default run one call per turn.
 */
export const geminiAdapter: AdapterFactory = (provider) => {
  // A baseUrl that already ends in an API version (a common slip) gives that version.
  const trimmed = (provider.baseUrl ?? 'https://generativelanguage.googleapis.com').replace(/\/+$/, '')
  const versioned = /^(.*)\/(v1(?:alpha|beta)?)$/.exec(trimmed)
  const base = versioned?.[1] ?? trimmed
  const options = provider.options ?? {}
  const apiVersion = typeof options.api_version === 'string' ? options.api_version : (versioned?.[2] ?? DEFAULT_API_VERSION)
  if (!/^v[0-9a-z]+$/.test(apiVersion)) throw new Error(`provider "${provider.id}": options.api_version must look like "v1beta"`)
  if (options.safety_settings !== undefined && !Array.isArray(options.safety_settings)) {
    throw new Error(`provider "${provider.id}": options.safety_settings must be an array`)
  }
  const translation = { safetySettings: Array.isArray(options.safety_settings) ? options.safety_settings : undefined }
  const fixed: Record<string, string> = { 'content-type': 'application/json', ...provider.headers }
  const waitFor = firstEventWait(provider)
  const urlOf = (model: string, method: string): string =>
    `${base}/${apiVersion}/${modelPath(model).split('/').map(encodeURIComponent).join('/')}:${method}`

  const post = (url: string, body: unknown, call: UpstreamCall): Promise<Response> =>
    fetch(url, {
      method: 'POST',
      headers: { ...fixed, 'x-goog-api-key': call.key.secret },
      body: JSON.stringify(body),
      signal: call.signal,
      redirect: 'manual',
    })

  async function chat(call: UpstreamCall, model: string): Promise<Response> {
    const translated = toGeminiRequest(call.body, translation)
    if (!translated.ok) return refusalResponse(translated)
    const url = call.stream ? urlOf(model, 'streamGenerateContent') + '?alt=sse' : urlOf(model, 'generateContent')
    const startedAt = performance.now()
    const upstream = await post(url, translated.value, call)
    const page = webPageAnswer(upstream)
    if (page) return page
    if (!upstream.ok) return toErrorResponse(upstream.status, await upstream.text().catch(() => ''), upstream.headers)
    const oneToolCall = call.body.parallel_tool_calls === false
    if (call.stream) {
      if (!upstream.body) return errorResponse(502, 'Gemini answered a stream request without a body.')
      // Google answers some streams that fail before any content (an overloaded model, a spent quota)
      // 200, the error their first event: that is the HTTP error it stands for, answered before the
      // client's stream starts, so balancing can try another key. A model that thinks before its
      // first chunk is not waited for past firstEventWait.
      const within = waitFor(startedAt)
      // Typed here: without the DOM's types (a plugin project type-checks this file too) the body is
      // Node's stream type, which `instanceof ReadableStream` below would not narrow away.
      const source: ReadableStream<Uint8Array> | PeekedSse = within > 0 ? await peekFirstEvent(upstream.body, { within }) : upstream.body
      if (!(source instanceof ReadableStream)) {
        const failed = streamStartError(source.event, upstream.headers)
        if (failed) {
          source.reader.cancel().catch(() => {})
          return failed
        }
      }
      const body = geminiStreamToOpenAI(source, { model, includeUsage: wantsStreamUsage(call.body), provider: provider.id, secret: call.key.secret, oneToolCall })
      return sseResponse(body, upstream.status, passHeaders(upstream.headers))
    }
    const response = await readJson(upstream)
    if (!response) return errorResponse(502, 'Gemini answered with a body that is not a JSON object.')
    const completion = toChatCompletion(response, model, { oneToolCall })
    // Gemini's failure, not an answer: as an upstream error, balancing tries again.
    const broken = brokenCallsOf(response, completion)
    if (broken) return errorResponse(502, broken)
    return jsonResponse(completion, upstream.status, passHeaders(upstream.headers))
  }

  /**
   * Gemini takes at most EMBED_BATCH_LIMIT inputs a call, OpenAI clients send up to 2048:
   * larger inputs go in consecutive calls (one at a time, so a rate limit stops the rest)
   * and their embeddings are joined in order. The first failing call answers for all.
   */
  async function embeddings(call: UpstreamCall, model: string): Promise<Response> {
    const translated = toGeminiEmbedRequest(call.body, model)
    if (!translated.ok) return refusalResponse(translated)
    const { requests } = translated.value
    const joined: unknown[] = []
    let last: Response | undefined
    for (let start = 0; start < requests.length; start += EMBED_BATCH_LIMIT) {
      const batch = requests.slice(start, start + EMBED_BATCH_LIMIT)
      const upstream = await post(urlOf(model, 'batchEmbedContents'), { requests: batch }, call)
      const page = webPageAnswer(upstream)
      if (page) return page
      if (!upstream.ok) return toErrorResponse(upstream.status, await upstream.text().catch(() => ''), upstream.headers)
      const response = await readJson(upstream)
      if (!response) return errorResponse(502, 'Gemini answered with a body that is not a JSON object.')
      // Each embedding's index is its place in the joined list: a short batch would shift every later one.
      const embeddings = Array.isArray(response.embeddings) ? response.embeddings : []
      if (embeddings.length !== batch.length) return errorResponse(502, `Gemini answered ${embeddings.length} embeddings for ${batch.length} inputs.`)
      joined.push(...embeddings)
      last = upstream
    }
    const list = toEmbeddingList({ embeddings: joined }, model, call.body.encoding_format === 'base64')
    return jsonResponse(list, last?.status ?? 200, last ? passHeaders(last.headers) : {})
  }

  return {
    type: 'gemini',
    endpoints: new Set(['chat.completions', 'embeddings'] as const),
    send(call: UpstreamCall): Promise<Response> {
      const model = str(call.body.model)
      if (!model) return Promise.resolve(refusalResponse({ message: 'The request must name a model.', param: 'model' }))
      if (call.endpoint === 'chat.completions') return chat(call, model)
      if (call.endpoint === 'embeddings') return embeddings(call, model)
      return Promise.resolve(
        refusalResponse({ message: `Provider "${provider.id}" (gemini) serves chat completions and embeddings only, not ${call.endpoint}.`, param: null }),
      )
    },
  }
}
