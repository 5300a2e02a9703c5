import {
  CONTEXT_LENGTH_EXCEEDED,
  chatUsage,
  count,
  errorResponse,
  errorTypeForStatus,
  isRecord,
  newCallId,
  nowSeconds,
  str,
  type ChatChoice,
  type ChatCompletion,
  type ChatUsage,
  type FinishReason,
  type JsonObject,
  type ToolCall,
  UPSTREAM_STATUS_HEADER,
} from '../shared/openai-format.ts'

const FILTERED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY', 'IMAGE_PROHIBITED_CONTENT'])

/**
 * Finish reasons for a function call Gemini generated but could not make valid (a call it wrote
 * as code, or one the request did not allow): the candidate then holds no answer at all. Such a
 * failure is Gemini's and passes on a second try more often than not.
 */
const BROKEN_CALL = new Set(['MALFORMED_FUNCTION_CALL', 'UNEXPECTED_TOOL_CALL'])

/**
 * Why a candidate that ended on a broken function call has nothing to give, or undefined for
 * any other candidate: an error to answer instead of an empty answer that looks finished.
 */
export function brokenCallOf(candidate: JsonObject, answered: boolean): string | undefined {
  const reason = candidate.finishReason
  if (answered || typeof reason !== 'string' || !BROKEN_CALL.has(reason)) return undefined
  const said = str(candidate.finishMessage)
  return `Gemini ended without an answer (finishReason ${reason}): the function call it generated was not valid${said ? ` (${said.slice(0, 300)})` : ''}. Sending the request again usually succeeds.`
}

/** Gemini's `finishReason` in OpenAI's terms; a candidate that called functions finished with `tool_calls`. */
export function finishReason(reason: unknown, calledTools: boolean): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length'
  if (typeof reason === 'string' && FILTERED.has(reason)) return 'content_filter'
  return calledTools ? 'tool_calls' : 'stop'
}

/**
 * `usageMetadata` in OpenAI's terms. `promptTokenCount` already includes cached content;
 * thinking tokens are output tokens, as OpenAI counts reasoning.
 */
export function usageOf(metadata: unknown): ChatUsage | undefined {
  // No usage is better than zeros: without it the gateway counts the tokens itself.
  if (!isRecord(metadata)) return undefined
  const u = metadata
  const thoughts = count(u.thoughtsTokenCount)
  return chatUsage(count(u.promptTokenCount), count(u.candidatesTokenCount) + thoughts, count(u.cachedContentTokenCount), thoughts)
}

/** A functionCall part as an OpenAI tool call; a thought signature rides along for the client to send back. */
export function toolCallOf(part: JsonObject): ToolCall | null {
  const call = part.functionCall
  if (!isRecord(call)) return null
  const toolCall: ToolCall = {
    id: str(call.id) ?? newCallId(),
    type: 'function',
    function: { name: str(call.name) ?? '', arguments: JSON.stringify(isRecord(call.args) ? call.args : {}) },
  }
  const signature = str(part.thoughtSignature)
  if (signature) toolCall.extra_content = { google: { thought_signature: signature } }
  return toolCall
}

/** The visible text of a part; thought summaries are not part of the answer. */
export const textOf = (part: JsonObject): string => (part.thought === true ? '' : (str(part.text) ?? ''))

/** The thought summary a part holds (Gemini sends them with `includeThoughts`), or '' for any other part. */
export const thoughtOf = (part: JsonObject): string => (part.thought === true ? (str(part.text) ?? '') : '')

/** How a `GenerateContentResponse` becomes a completion, beyond its content. */
export interface CompletionOptions {
  /**
   * The client sent `parallel_tool_calls: false`, which Gemini has no switch for: only each
   * candidate's first function call is given (the client runs one call per turn and would not
   * expect more), the others are dropped.
   */
  oneToolCall?: boolean
}

function choiceOf(candidate: JsonObject, position: number, options: CompletionOptions): ChatChoice {
  const content = isRecord(candidate.content) ? candidate.content : {}
  const parts = Array.isArray(content.parts) ? content.parts.filter(isRecord) : []
  let text = ''
  let reasoning = ''
  const toolCalls: ToolCall[] = []
  for (const part of parts) {
    text += textOf(part)
    reasoning += thoughtOf(part)
    const call = toolCallOf(part)
    if (call && !(options.oneToolCall && toolCalls.length > 0)) toolCalls.push(call)
  }
  return {
    index: typeof candidate.index === 'number' ? candidate.index : position,
    message: {
      role: 'assistant',
      content: text === '' && toolCalls.length ? null : text,
      refusal: null,
      ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
      ...(reasoning ? { reasoning_content: reasoning } : {}),
    },
    logprobs: null,
    finish_reason: finishReason(candidate.finishReason, toolCalls.length > 0),
  }
}

/** An OpenAI-style id from Gemini's `responseId`. */
export const completionId = (response: JsonObject): string => {
  const id = str(response.responseId)
  return id ? `chatcmpl-${id}` : `chatcmpl-${crypto.randomUUID().replaceAll('-', '')}`
}

/**
 * Why a `GenerateContentResponse` holds no answer because every candidate ended on a broken
 * function call (with nothing else in it), or undefined: then it is answered as an error. Read
 * beside the completion already made from it (its choices follow the candidates), not a second one.
 */
export function brokenCallsOf(response: JsonObject, completion: ChatCompletion = toChatCompletion(response, '')): string | undefined {
  const candidates = Array.isArray(response.candidates) ? response.candidates.filter(isRecord) : []
  let why: string | undefined
  for (const [i, candidate] of candidates.entries()) {
    const message = completion.choices[i]?.message
    const answered = Boolean(message?.content) || (message?.tool_calls?.length ?? 0) > 0
    why = brokenCallOf(candidate, answered)
    if (why === undefined) return undefined
  }
  return why
}

/**
 * A `GenerateContentResponse` as an OpenAI `chat.completion`. A blocked prompt is one empty,
 * filtered choice. With `oneToolCall` each choice keeps only its first tool call (see CompletionOptions).
 */
export function toChatCompletion(response: JsonObject, fallbackModel: string, options: CompletionOptions = {}): ChatCompletion {
  const candidates = Array.isArray(response.candidates) ? response.candidates.filter(isRecord) : []
  const choices = candidates.map((candidate, position) => choiceOf(candidate, position, options))
  if (choices.length === 0) {
    choices.push({ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' })
  }
  const completion: ChatCompletion = {
    id: completionId(response),
    object: 'chat.completion',
    created: nowSeconds(),
    model: str(response.modelVersion) ?? fallbackModel,
    choices,
  }
  const usage = usageOf(response.usageMetadata)
  if (usage) completion.usage = usage
  return completion
}

/**
 * A vector at unit length, as OpenAI's embeddings always are (its docs: a dot product is their cosine
 * similarity, and clients and vector stores rely on it). Gemini normalizes only its full-size output:
 * one cut to `outputDimensionality` (OpenAI's `dimensions`) comes back shorter than 1, so ranking by
 * dot product would favour whatever text happens to have the longer prefix. A vector already at unit
 * length, or all zeros, is left as it came.
 */
export function unitVector(values: number[]): number[] {
  let sum = 0
  for (const v of values) sum += v * v
  const norm = Math.sqrt(sum)
  if (norm === 0 || Math.abs(norm - 1) < 1e-6) return values
  return values.map((v) => v / norm)
}

/** An OpenAI embeddings list from `batchEmbedContents`, each vector at unit length (unitVector); base64 as OpenAI encodes it (little-endian float32). */
export function toEmbeddingList(response: JsonObject, model: string, base64: boolean): JsonObject {
  const embeddings = Array.isArray(response.embeddings) ? response.embeddings.filter(isRecord) : []
  const data = embeddings.map((embedding, index) => {
    const values = unitVector(Array.isArray(embedding.values) ? embedding.values.map((v) => (typeof v === 'number' ? v : 0)) : [])
    const vector = base64 ? Buffer.from(new Float32Array(values).buffer).toString('base64') : values
    return { object: 'embedding', index, embedding: vector }
  })
  // Gemini reports no token counts for embeddings; the gateway counts them itself.
  return { object: 'list', data, model }
}

/** Seconds from a `google.rpc.RetryInfo` detail (`"37s"`, `"0.5s"`), for a `retry-after` header. */
export function retryAfterOf(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined
  for (const detail of details) {
    if (!isRecord(detail) || !String(detail['@type'] ?? '').endsWith('google.rpc.RetryInfo')) continue
    const seconds = /^(\d+(?:\.\d+)?)s$/.exec(str(detail.retryDelay) ?? '')?.[1]
    if (seconds !== undefined) return String(Math.ceil(Number(seconds)))
  }
  return undefined
}

/**
 * How Gemini words a prompt over the context window ("The input token count (1054016) exceeds the
 * maximum number of tokens allowed (1048576)."): OpenAI's context_length_exceeded.
 */
const CONTEXT_TOO_LONG = /input token count .*exceeds the maximum number of tokens/i

/**
 * How Google words the 400 FAILED_PRECONDITION of a project that cannot use the API as it stands
 * (no billing where the free tier is not offered, a location it does not serve): about the key's
 * account, not the request (a file still being processed is a FAILED_PRECONDITION of the request's).
 */
const ACCOUNT_PRECONDITION = /billing|free tier|location is not supported|country/i

/**
 * The status the gateway acts on: an account out of prepaid credit (402) or one that cannot use the
 * API (see ACCOUNT_PRECONDITION) is the key's fault, as a 403: balancing stops using that key and
 * tries the next, and the client is not told that its request was invalid. Anything else as it came.
 */
function statusOf(status: number, googleStatus: string | undefined, message: string): number {
  if (status === 402) return 403
  if (status === 400 && googleStatus === 'FAILED_PRECONDITION' && ACCOUNT_PRECONDITION.test(message)) return 403
  return status
}

/** Gemini answers a bad API key with 400 INVALID_ARGUMENT; it is a key problem, so it becomes the 401 it means. */
function isKeyError(details: unknown): boolean {
  return Array.isArray(details) && details.some((d) => isRecord(d) && (d.reason === 'API_KEY_INVALID' || d.reason === 'API_KEY_EXPIRED'))
}

/**
 * A Gemini error answer (`{error: {code, message, status, details}}`) as an OpenAI-style
 * error with the same status (a bad key's 400 as 401, an account's billing failure as 403, see
 * statusOf; the real one in UPSTREAM_STATUS_HEADER).
 * A retry delay becomes `retry-after`. Google's `status` (INVALID_ARGUMENT, NOT_FOUND) restates
 * the HTTP status and is no `code`: the gateway's (model_not_found) says more to OpenAI clients; a
 * prompt over the context window gets OpenAI's own code (CONTEXT_LENGTH_EXCEEDED).
 */
export function toErrorResponse(status: number, text: string, headers: Headers): Response {
  let message = ''
  let details: unknown
  let googleStatus: string | undefined
  try {
    const raw: unknown = JSON.parse(text)
    // The JSON-array stream form wraps its error in a list.
    const parsed: unknown = Array.isArray(raw) ? raw[0] : raw
    if (isRecord(parsed) && isRecord(parsed.error)) {
      message = str(parsed.error.message) ?? ''
      details = parsed.error.details
      googleStatus = str(parsed.error.status)
    }
  } catch {
    message = text.trim().slice(0, 500)
  }
  const mapped = status === 400 && isKeyError(details) ? 401 : statusOf(status, googleStatus, message)
  const out: Record<string, string> = {}
  const retry = headers.get('retry-after') ?? retryAfterOf(details)
  if (retry) out['retry-after'] = retry
  if (mapped !== status) out[UPSTREAM_STATUS_HEADER] = String(status)
  const context = mapped === 400 && CONTEXT_TOO_LONG.test(message) ? CONTEXT_LENGTH_EXCEEDED : undefined
  return errorResponse(mapped, message || `Gemini answered HTTP ${status}.`, { type: errorTypeForStatus(mapped), headers: out, ...context })
}
