/**
 * OpenAI's wire format, as the translating adapters (anthropic, gemini) produce it: the
 * shapes of a chat completion, its stream chunks and its errors, plus the small readers
 * the request translators share. Nothing here knows about a particular provider.
 */
import type { Endpoint } from '../../plugin.ts'

/** A JSON object read from a request or an upstream answer. */
export type JsonObject = Record<string, unknown>

export const isRecord = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

export const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined)

export const num = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) ? value : undefined

/** A non-negative integer token count, 0 for anything else. */
export const count = (value: unknown): number =>
  typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0

/**
 * The outcome of translating a request: the upstream body, or why it cannot be sent.
 * A refusal is an expected answer (the client asked for something the provider lacks),
 * so it is a value, answered as a 400 without calling the upstream.
 */
export type Translation<T> = { ok: true; value: T } | { ok: false; message: string; param: string | null }

export const refuse = (message: string, param: string | null = null): { ok: false; message: string; param: string | null } => ({
  ok: false,
  message,
  param,
})

// ---------------------------------------------------------------- responses

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

export interface ToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
  /** Provider data the client must send back with the call (Gemini's thought signature). */
  extra_content?: JsonObject
}

export interface ChatUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  prompt_tokens_details?: { cached_tokens: number }
  completion_tokens_details?: { reasoning_tokens: number }
  /**
   * Prompt tokens written to the provider's prompt cache (Anthropic's field, under the name
   * LiteLLM clients read it), part of `prompt_tokens` as cache hits are; priced apart (see priceOf).
   */
  cache_creation_input_tokens?: number
  /**
   * How the cache writes split between Anthropic's 5-minute and 1-hour caches (its own field, as it
   * came), when some went to the 1-hour cache, which is billed at 2 × input (see priceOf).
   */
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number }
}

export interface ChatMessage {
  role: 'assistant'
  content: string | null
  refusal: null
  tool_calls?: ToolCall[]
  /** The model's reasoning as text, where the provider shows it (DeepSeek's and vLLM's field name). */
  reasoning_content?: string
  /**
   * The provider's reasoning blocks as they must be sent back on the next turn (Anthropic's
   * thinking blocks with their signatures; the name LiteLLM clients use).
   */
  thinking_blocks?: JsonObject[]
}

export interface ChatChoice {
  index: number
  message: ChatMessage
  logprobs: null
  finish_reason: FinishReason
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: ChatChoice[]
  usage?: ChatUsage
}

/** Usage in OpenAI's shape; `reasoning` details and cache writes only when there are some. */
export function chatUsage(prompt: number, completion: number, cached = 0, reasoning = 0, cacheWrites = 0): ChatUsage {
  const usage: ChatUsage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
  usage.prompt_tokens_details = { cached_tokens: cached }
  if (reasoning > 0) usage.completion_tokens_details = { reasoning_tokens: reasoning }
  if (cacheWrites > 0) usage.cache_creation_input_tokens = cacheWrites
  return usage
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** An id for a generated tool call, where the provider gives none (OpenAI's `call_…`). */
export const newCallId = (): string => 'call_' + crypto.randomUUID().replaceAll('-', '').slice(0, 24)

/** The shape of {@link newCallId}'s ids: 24 lower-case hex digits (OpenAI's own mix cases, so one of theirs is one of these about once in 10^12). */
const MADE_CALL_ID = /^call_[0-9a-f]{24}$/

/** Whether a tool call id is one the gateway made ({@link newCallId}), not one a provider gave. */
export const isMadeCallId = (id: string): boolean => MADE_CALL_ID.test(id)

const JSON_HEADERS = { 'content-type': 'application/json' } as const
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' } as const

export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } })
}

export function sseResponse(body: ReadableStream<Uint8Array>, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { ...SSE_HEADERS, ...headers } })
}

// ---------------------------------------------------------------- errors

/** OpenAI's error families, by HTTP status. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'api_error'
  return 'invalid_request_error'
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

export function errorBody(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } }
}

/** An OpenAI-style error response, as an upstream that speaks OpenAI would have sent it. */
export function errorResponse(status: number, message: string, options: { type?: string; code?: string | null; param?: string | null; headers?: Record<string, string> } = {}): Response {
  return jsonResponse(errorBody(message, options.type ?? errorTypeForStatus(status), options.code ?? null, options.param ?? null), status, options.headers)
}

/**
 * What OpenAI answers a prompt (with its completion budget) over the model's context window with:
 * code `context_length_exceeded` on `messages`. SDK users and agent frameworks branch on that code to
 * trim the history and try again; a translating adapter gives its provider's words for it this code.
 */
export const CONTEXT_LENGTH_EXCEEDED = { code: 'context_length_exceeded', param: 'messages' } as const

/**
 * An adapter's answers that are its own refusals (see refusalResponse): the pipeline tells the
 * client what to change without blaming the provider, and counts nothing against its key. Known
 * by the object itself, not by a header: an OpenAI-compatible adapter hands on its upstream's
 * answer as it came, and a header any upstream could send would pass its body to the client
 * unscrubbed (an echoed provider key with it).
 */
const refusals = new WeakSet<Response>()

/** Whether `response` is an adapter's own refusal, made by {@link refusalResponse}. */
export const isRefusal = (response: Response): boolean => refusals.has(response)

/**
 * The status the provider really answered, on an adapter's error whose status it mapped (Anthropic's
 * 529 overloaded is a 503, an account out of credit a 403): the pipeline acts on the mapped one
 * and names this one in its message.
 */
export const UPSTREAM_STATUS_HEADER = 'x-sluice-upstream-status'

/** The 400 a translator's refusal becomes; the upstream is never called. */
export function refusalResponse(refusal: { message: string; param: string | null }): Response {
  const response = errorResponse(400, refusal.message, { code: 'invalid_request', param: refusal.param })
  refusals.add(response)
  return response
}

/** 4xx statuses whose web page still says what it is about: the key (401, 403), the pace (429), the request's time or size (408, 413). */
const TELLING_PAGES: ReadonlySet<number> = new Set([401, 403, 408, 413, 429])

/**
 * Whether an answer is a web page (text/html) that is no verdict of the API's on the request: the
 * API answers JSON, so a page comes from something else on the way, a `baseUrl` that points at a
 * website or at a wrong path (a 404 page), a proxy's or captive portal's login page (a 2xx). The
 * request may well be fine: it is the upstream's failure, retried on the next target, not the
 * client's 404 `model_not_found` or 400. A page with a status of TELLING_PAGES keeps its meaning;
 * a 5xx page is the upstream's failure anyway.
 */
export function isMisdirectedPage(status: number, contentType: string | null): boolean {
  if (contentType === null || !contentType.includes('text/html')) return false
  return (status >= 200 && status < 300) || (status >= 400 && status < 500 && !TELLING_PAGES.has(status))
}

/** A redirect (3xx), which the adapters never follow: a provider key goes only where it was configured to. */
export const isRedirect = (status: number): boolean => status >= 300 && status < 400

/**
 * An answer that is no answer of the API's, passed on as such, undefined for anything else: a
 * misdirected web page (see isMisdirectedPage), its status and text/html type without the page, or a
 * redirect, its status and `location`. Neither is an answer to translate (the body is cancelled); the
 * pipeline takes both for the upstream error they are, as it does for the providers it passes through.
 */
export function webPageAnswer(upstream: Response): Response | undefined {
  const type = upstream.headers.get('content-type')
  const location = upstream.headers.get('location')
  const redirect = isRedirect(upstream.status)
  if (!redirect && (!isMisdirectedPage(upstream.status, type) || type === null)) return undefined
  upstream.body?.cancel().catch(() => {})
  const headers: Record<string, string> = {}
  if (type !== null) headers['content-type'] = type
  if (redirect && location !== null) headers.location = location
  return new Response(null, { status: upstream.status, headers })
}

/** Copy the headers `keep` selects (rate-limit and retry hints), for balancing to read. */
export function pickHeaders(headers: Headers, keep: (name: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {}
  headers.forEach((value, name) => {
    if (keep(name)) out[name] = value
  })
  return out
}

// ---------------------------------------------------------------- stream chunks

export const SSE_DONE = 'data: [DONE]\n\n'

export const sseFrame = (data: unknown): string => `data: ${JSON.stringify(data)}\n\n`

/** The head every chunk of one stream shares. */
export interface ChunkHead {
  id: string
  model: string
  created: number
}

/**
 * Writes the frames of one OpenAI chat stream. With `include_usage` every chunk carries
 * `"usage":null` and the usage arrives in a last, choice-less chunk, as OpenAI does it.
 */
export class ChunkWriter {
  constructor(
    public head: ChunkHead,
    private readonly includeUsage: boolean,
  ) {}

  delta(delta: JsonObject, index = 0, finishReason: FinishReason | null = null): string {
    const chunk: JsonObject = {
      id: this.head.id,
      object: 'chat.completion.chunk',
      created: this.head.created,
      model: this.head.model,
      choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
    }
    if (this.includeUsage) chunk.usage = null
    return sseFrame(chunk)
  }

  finish(reason: FinishReason, index = 0): string {
    return this.delta({}, index, reason)
  }

  /** The usage chunk, or nothing when the client did not ask for one or the provider reported none. */
  usage(usage: ChatUsage | undefined): string {
    if (!this.includeUsage || usage === undefined) return ''
    return sseFrame({ id: this.head.id, object: 'chat.completion.chunk', created: this.head.created, model: this.head.model, choices: [], usage })
  }
}

/** Whether a chat body asked for the usage chunk. */
export function wantsStreamUsage(body: JsonObject): boolean {
  const options = body.stream_options
  return isRecord(options) && options.include_usage === true
}

/** OpenAI's error types (and Groq's `requests`/`tokens` for its rate limits) as the statuses they come with outside a stream. */
const TYPE_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  rate_limit_error: 429,
  requests: 429,
  tokens: 429,
  insufficient_quota: 429,
  server_error: 500,
  api_error: 500,
  overloaded_error: 503,
  service_unavailable: 503,
}

/** Error codes that say more than their type: a rate limit or a spent quota, whatever type it is filed under. */
const CODE_STATUS: Readonly<Record<string, number>> = {
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  invalid_api_key: 401,
  server_is_overloaded: 503,
  context_length_exceeded: 400,
}

/**
 * The status an error event stands for: its numeric `code` where that is an HTTP error status
 * (OpenRouter's, vLLM's), else its `code` or `type` as OpenAI answers them outside a stream, else 500.
 */
export function errorEventStatus(error: Record<string, unknown>): number {
  const numeric = num(error.code) ?? num(error.status)
  if (numeric !== undefined && Number.isInteger(numeric) && numeric >= 400 && numeric < 600) return numeric
  return CODE_STATUS[str(error.code) ?? ''] ?? TYPE_STATUS[str(error.type) ?? ''] ?? 500
}

/**
 * An error inside a stream, the way OpenAI sends one: a `data:` frame holding `{error}`
 * and no `[DONE]` after it. The official clients raise it as an API error.
 */
export const streamErrorFrame = (message: string, type: string, code: string | null = null): string => sseFrame(errorBody(message, type, code))

// ---------------------------------------------------------------- request readers

/** Names clients give JPEG data (OpenAI takes them) that Anthropic and Gemini refuse for the registered `image/jpeg`. */
const JPEG_ALIASES: ReadonlySet<string> = new Set(['image/jpg', 'image/pjpeg'])

/** `data:<mime>;base64,<data>` split in two, the type lower-cased and JPEG's aliases as `image/jpeg`; null for anything else. */
export function parseDataUrl(url: string): { mimeType: string; data: string } | null {
  // Split by hand: a pattern for the parameters backtracked for seconds over a head of a million `;`.
  if (!url.startsWith('data:')) return null
  const comma = url.indexOf(',')
  if (comma === -1) return null
  const head = url.slice(5, comma)
  if (!head.endsWith(';base64')) return null
  const mimeType = head.slice(0, head.indexOf(';')).toLowerCase()
  if (mimeType === '') return null
  return { mimeType: JPEG_ALIASES.has(mimeType) ? 'image/jpeg' : mimeType, data: url.slice(comma + 1) }
}

/** The text of an OpenAI message `content` (string or parts); null when a part is not text. */
export function contentText(content: unknown): string | null {
  if (content === null || content === undefined) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return null
  let text = ''
  for (const part of content) {
    if (!isRecord(part)) return null
    if (part.type === 'text' && typeof part.text === 'string') text += text ? '\n' + part.text : part.text
    else if (part.type === 'refusal' && typeof part.refusal === 'string') text += text ? '\n' + part.refusal : part.refusal
    else return null
  }
  return text
}

/** `stop` as a list of strings (OpenAI takes one string or up to four). */
export function stopList(stop: unknown): string[] | undefined {
  if (typeof stop === 'string') return stop ? [stop] : undefined
  if (!Array.isArray(stop)) return undefined
  const list = stop.filter((s): s is string => typeof s === 'string' && s !== '')
  return list.length ? list : undefined
}

/** The completion budget: `max_completion_tokens` wins over the older `max_tokens`. */
export function maxTokensOf(body: JsonObject): number | undefined {
  return num(body.max_completion_tokens) ?? num(body.max_tokens)
}

/** The field maxTokensOf read, for a refusal to name what the client sent. */
export function maxTokensField(body: JsonObject): 'max_completion_tokens' | 'max_tokens' {
  return num(body.max_completion_tokens) !== undefined ? 'max_completion_tokens' : 'max_tokens'
}

/**
 * How many completions a request asks the provider for: `n` (and, on the legacy endpoint, `best_of`,
 * which it generates and bills whole) for each prompt of a legacy completion's list. Each may run
 * to maxTokensOf, so a reservation takes that many allowances. A chat body's `best_of` is no field
 * of chat and multiplies nothing (unchecked there, 1e300 of it made a cost past any number).
 */
export function completionsAsked(body: JsonObject, endpoint: Endpoint): number {
  const n = manyOf(body.n)
  const bestOf = endpoint === 'completions' ? manyOf(body.best_of) : 1
  const prompt = body.prompt
  // A list of strings or of token lists is several prompts; a list of numbers is one prompt's tokens.
  const prompts = Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] !== 'number' ? prompt.length : 1
  return Math.max(n, bestOf) * prompts
}

/** A count above 1 as it is, else 1. */
function manyOf(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 1 ? value : 1
}

/** OpenAI's `reasoning_effort` values, from none (no reasoning) to the most. */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'] as const
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number]

/** A request's `reasoning_effort`, checked: undefined when not set, a refusal for a value OpenAI does not define. */
export function reasoningEffortOf(body: JsonObject): ReasoningEffort | undefined | { ok: false; message: string; param: string | null } {
  const effort = body.reasoning_effort
  if (effort === undefined || effort === null) return undefined
  const known = REASONING_EFFORTS.find((value) => value === effort)
  if (known) return known
  return refuse(`reasoning_effort must be one of ${REASONING_EFFORTS.map((value) => `"${value}"`).join(', ')}.`, 'reasoning_effort')
}

/**
 * What a chat body asks for that a translating adapter (`provider`: "Anthropic", "Gemini") cannot
 * give, refused before anything is sent rather than dropped: the legacy `functions` and
 * `function_call` (an answer would come back without the call the client waits for; `tools` and
 * `tool_choice` say the same and are translated) and log probabilities, which neither API returns
 * in OpenAI's shape; audio answers (`modalities` holding "audio") and `web_search_options`, which
 * neither adapter translates (an answer would come back as plain text, or without the search the
 * client counts on). `logprobs: false`, a null and `top_logprobs: 0` ask for nothing and pass.
 */
export function untranslatableChatField(body: JsonObject, provider: string): { ok: false; message: string; param: string | null } | undefined {
  if (body.functions !== undefined && body.functions !== null) {
    return refuse(`The legacy "functions" parameter cannot be sent to ${provider}: declare the functions as "tools" ({"type": "function", "function": {...}}) instead.`, 'functions')
  }
  if (body.function_call !== undefined && body.function_call !== null) {
    return refuse(`The legacy "function_call" parameter cannot be sent to ${provider}: use "tool_choice" (with the functions as "tools") instead.`, 'function_call')
  }
  if (Array.isArray(body.messages)) {
    for (const [i, message] of body.messages.entries()) {
      if (isRecord(message) && message.function_call !== undefined && message.function_call !== null) {
        return refuse(`An assistant message's legacy "function_call" cannot be sent to ${provider}: send the call as "tool_calls" and its result as a "tool" message.`, `messages[${i}].function_call`)
      }
    }
  }
  if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== false) {
    return refuse(`${provider} models do not return log probabilities through this gateway: leave "logprobs" out or false.`, 'logprobs')
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.top_logprobs !== 0) {
    return refuse(`${provider} models do not return log probabilities through this gateway: leave "top_logprobs" out.`, 'top_logprobs')
  }
  if (Array.isArray(body.modalities) && body.modalities.includes('audio')) {
    return refuse(`${provider} models do not answer with audio through this gateway: ask for "modalities": ["text"] (or leave "modalities" and "audio" out).`, 'modalities')
  }
  if (body.web_search_options !== undefined && body.web_search_options !== null) {
    return refuse(`"web_search_options" cannot be sent to ${provider} through this gateway, which would answer without searching: leave it out, or use a model that searches.`, 'web_search_options')
  }
  return undefined
}

/**
 * The generation in a model name, as major * 100 + minor (`claude-sonnet-4-5-20250929` → 405,
 * `claude-3-7-sonnet` → 307, `gemini-2.5-flash` → 205), read from the first number after the
 * family's name; a date stamp is not a minor version. Undefined for a name without one (an
 * alias such as `gemini-flash-latest`), which callers take for the newest generation.
 */
export function modelGeneration(model: string, family: string): number | undefined {
  const lower = model.toLowerCase()
  const at = lower.lastIndexOf(family)
  if (at < 0) return undefined
  const match = /(?:^|[-_.])(\d{1,2})(?:[.-](\d{1,2}))?(?=$|\D)/.exec(lower.slice(at + family.length))
  if (!match) return undefined
  return Number(match[1]) * 100 + Number(match[2] ?? 0)
}

/** Parse a tool call's `arguments` string to the object providers want. */
export function parseArguments(args: unknown): JsonObject | null {
  if (args === undefined || args === null || args === '') return {}
  if (isRecord(args)) return args
  if (typeof args !== 'string') return null
  try {
    const parsed: unknown = JSON.parse(args)
    return isRecord(parsed) ? parsed : null
  } catch {
    return null
  }
}

/** A tool's function definition, checked. */
export function functionTool(tool: unknown): { name: string; description?: string; parameters?: JsonObject } | null {
  if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function)) return null
  const fn = tool.function
  const name = str(fn.name)
  if (!name) return null
  const out: { name: string; description?: string; parameters?: JsonObject } = { name }
  const description = str(fn.description)
  if (description) out.description = description
  if (isRecord(fn.parameters)) out.parameters = fn.parameters
  return out
}

/** OpenAI's `tool_choice`, normalised. */
export type ToolChoice = { mode: 'auto' | 'none' | 'required' } | { mode: 'function'; name: string }

export function toolChoiceOf(choice: unknown): ToolChoice | null | undefined {
  if (choice === undefined || choice === null) return undefined
  if (choice === 'auto' || choice === 'none' || choice === 'required') return { mode: choice }
  if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return { mode: 'function', name: choice.function.name }
  }
  return null
}
