/**
 * Deterministic OpenAI-format answers. The gateway's built-in `mock` provider and the
 * test/benchmark mock upstream both build their bodies here, so a test that talks to one
 * and a benchmark that talks to the other see byte-for-byte the same shapes.
 *
 * Inputs are read defensively (every field `unknown`): the gateway validated the body
 * before, and the mock upstream must not crash on whatever a test throws at it.
 */

/** A chat request as the mock reads it. Any validated chat body is assignable. */
export interface ChatBody {
  readonly model?: unknown
  readonly messages?: unknown
  /** Reply length in words (one word = one completion token). */
  readonly max_tokens?: unknown
  /** Newer spelling of `max_tokens`; wins when both are set, as at OpenAI. */
  readonly max_completion_tokens?: unknown
  readonly n?: unknown
  readonly tools?: unknown
  readonly tool_choice?: unknown
  readonly stream_options?: unknown
  /** OpenAI's processing tier: the answer names the one that served (see {@link servedTier}). */
  readonly service_tier?: unknown
}

/** A legacy `/v1/completions` request as the mock reads it. */
export interface CompletionBody {
  readonly model?: unknown
  /** `string | string[] | number[] | number[][]` */
  readonly prompt?: unknown
  readonly max_tokens?: unknown
  readonly n?: unknown
  readonly echo?: unknown
  readonly stream_options?: unknown
}

/** An embeddings request as the mock reads it. */
export interface EmbeddingsBody {
  readonly model?: unknown
  /** `string | string[] | number[] | number[][]` */
  readonly input?: unknown
  readonly dimensions?: unknown
  /** `"float"` (default) or `"base64"` (little-endian float32, as the OpenAI SDK asks by default). */
  readonly encoding_format?: unknown
}

/** OpenAI's `usage` object. */
export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

/** One tool call as it appears in a non-stream assistant message. */
export interface ToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

/** An OpenAI `chat.completion` object. */
export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  system_fingerprint: string
  choices: Array<{
    index: number
    message: { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ToolCall[] }
    logprobs: null
    finish_reason: 'stop' | 'length' | 'tool_calls'
  }>
  usage: Usage
  /** The tier that served, when the request named one. */
  service_tier?: string
}

/** An OpenAI `text_completion` object (legacy completions). */
export interface TextCompletion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  system_fingerprint: string
  choices: Array<{ text: string; index: number; logprobs: null; finish_reason: 'stop' | 'length' }>
  usage: Usage
}

/** An OpenAI embeddings list. `embedding` is a base64 string when `encoding_format` is `base64`. */
export interface EmbeddingList {
  object: 'list'
  data: Array<{ object: 'embedding'; index: number; embedding: number[] | string }>
  model: string
  usage: { prompt_tokens: number; total_tokens: number }
}

/** An OpenAI model object. */
export interface ModelObject {
  id: string
  object: 'model'
  created: number
  owned_by: string
}

/** An OpenAI models list. */
export interface ModelList {
  object: 'list'
  data: ModelObject[]
}

/** OpenAI's error envelope, as the mock upstream answers failures. */
export interface ErrorBody {
  error: { message: string; type: string; param: null; code: string }
}

/** Options shared by every builder. */
export interface MockOptions {
  /** Unix seconds for `created`. @default the current time */
  created?: number
  /** Replaces the id derived from the request (ids are a hash of the request otherwise). */
  id?: string
  /** Reply length in words when the request sets no `max_tokens`. @default 16 */
  words?: number
}

/** Options of the stream builders. */
export interface MockStreamOptions extends MockOptions {
  /**
   * Number of content chunks the reply is cut into (never more than its words).
   * @default one chunk per word, as OpenAI streams about one token per chunk
   */
  chunks?: number
  /** Pause before each chunk after the first, in ms. 0 writes the whole stream at once. @default 0 */
  chunkDelayMs?: number
  /** Stops a paced stream (it errors with the signal's reason) when aborted, e.g. the incoming request's signal. */
  signal?: AbortSignal
  /**
   * Called once if a paced stream is stopped before its end, by the reader cancelling or
   * `signal` aborting: the client went away. An unpaced stream is whole at once and never calls it.
   */
  onCancel?: () => void
  /** Called once, synchronously, with the usage this stream reports (or would report, for callers counting tokens). */
  onUsage?: (usage: Usage) => void
}

/** Default reply length: about one short sentence. */
export const DEFAULT_REPLY_WORDS = 16
/** Upper bound on reply length, so a request asking for a huge `max_tokens` cannot make the mock allocate without bound. */
export const MAX_REPLY_WORDS = 4096
/** Upper bound on `n`. */
export const MAX_CHOICES = 8
/** Embedding width when the request sets no `dimensions`. */
export const DEFAULT_EMBEDDING_DIMENSIONS = 8
/** Upper bound on `dimensions` (text-embedding-3-large is 3072). */
export const MAX_EMBEDDING_DIMENSIONS = 4096
/** The model name used when a request names none. */
export const DEFAULT_MOCK_MODEL = 'mock-gpt'

const SYSTEM_FINGERPRINT = 'fp_sluice_mock'
// A fixed date keeps model lists byte-identical across runs.
const MODEL_CREATED = 1_700_000_000
// What OpenAI charges for a low-detail image; close enough for an estimate.
const IMAGE_PART_TOKENS = 85

// The reply text. Cycled when a reply is longer than the list.
const REPLY_WORDS = (
  'This is a mock reply from sluice. It is deterministic: the same request always gets ' +
  'the same words, and its length follows max_tokens, one word per token, so counts ' +
  'can be checked exactly in tests and benchmarks.'
).split(' ')

const encoder = new TextEncoder()
const DONE_FRAME = encoder.encode('data: [DONE]\n\n')

// ---------------------------------------------------------------- small helpers

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function positiveInt(value: unknown, max: number): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) return undefined
  return Math.min(Math.floor(value), max)
}

function modelOf(body: { readonly model?: unknown }): string {
  return typeof body.model === 'string' && body.model !== '' ? body.model : DEFAULT_MOCK_MODEL
}

function nowSeconds(opts: MockOptions | undefined): number {
  return opts?.created ?? Math.floor(Date.now() / 1000)
}

function includeUsage(body: { readonly stream_options?: unknown }): boolean {
  return isRecord(body.stream_options) && body.stream_options.include_usage === true
}

/** FNV-1a, 32 bits: a cheap stable hash for ids and embedding seeds; not for security. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

function hashId(prefix: string, seed: unknown, opts: MockOptions | undefined): string {
  if (opts?.id !== undefined) return opts.id
  return `${prefix}${fnv1a(JSON.stringify(seed) ?? '').toString(16).padStart(8, '0')}`
}

function usageOf(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

/** The first `count` words of the reply text, as one string. */
export function replyText(count: number): string {
  return replyPieces(count, count).join('')
}

/**
 * The reply cut into `chunks` pieces whose concatenation is `replyText(words)`. Each piece
 * after the first starts with its separating space, as OpenAI's stream deltas do.
 */
function replyPieces(words: number, chunks: number): string[] {
  const pieces: string[] = []
  const perChunk = Math.ceil(words / Math.max(1, Math.min(chunks, words)))
  let piece = ''
  for (let i = 0; i < words; i++) {
    piece += (i === 0 ? '' : ' ') + REPLY_WORDS[i % REPLY_WORDS.length]
    if ((i + 1) % perChunk === 0 || i === words - 1) {
      pieces.push(piece)
      piece = ''
    }
  }
  return pieces
}

function splitEvenly(text: string, chunks: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / Math.max(1, chunks)))
  const out: string[] = []
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size))
  return out.length > 0 ? out : ['']
}

// ---------------------------------------------------------------- token estimates

/** Characters of text in one message `content` (a string or an array of parts); images count as a fixed number of tokens' worth. */
function contentChars(content: unknown): number {
  if (typeof content === 'string') return content.length
  if (!Array.isArray(content)) return 0
  let chars = 0
  for (const part of content) {
    if (!isRecord(part)) continue
    if (typeof part.text === 'string') chars += part.text.length
    else if (part.type === 'image_url' || part.type === 'input_image') chars += IMAGE_PART_TOKENS * 4
  }
  return chars
}

/**
 * A cheap, deterministic prompt-token estimate: a quarter token per character of text,
 * plus OpenAI's per-message and reply-priming overheads (3 each). Tool definitions count
 * by their JSON size. Real tokenizing is the tokens plugin's job; the mock only needs
 * numbers that are stable and in the right range.
 */
export function estimateChatPromptTokens(body: ChatBody): number {
  const messages = Array.isArray(body.messages) ? body.messages : []
  let chars = 0
  for (const message of messages) {
    if (!isRecord(message)) continue
    chars += contentChars(message.content)
    if (typeof message.name === 'string') chars += message.name.length
    if (Array.isArray(message.tool_calls)) {
      for (const call of message.tool_calls) {
        if (isRecord(call) && isRecord(call.function)) {
          const fn = call.function
          chars += (typeof fn.name === 'string' ? fn.name.length : 0) + (typeof fn.arguments === 'string' ? fn.arguments.length : 0)
        }
      }
    }
  }
  if (Array.isArray(body.tools) && body.tools.length > 0) chars += JSON.stringify(body.tools).length
  return Math.ceil(chars / 4) + 3 * messages.length + 3
}

function textTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4))
}

// ---------------------------------------------------------------- chat planning

interface ToolPlan {
  name: string
  arguments: string
}

interface ChatPlan {
  id: string
  created: number
  model: string
  choices: number
  /** Words of the text reply; unused when `tool` is set. */
  words: number
  /** The text reply ends where the client's token budget did: its finish is `length`, as OpenAI's. */
  cut: boolean
  tool: ToolPlan | null
  usage: Usage
  /** The tier the answer names, when the request named one. */
  tier: string | undefined
}

function functionTools(tools: unknown): Array<{ name: string; parameters: unknown }> {
  if (!Array.isArray(tools)) return []
  const out: Array<{ name: string; parameters: unknown }> = []
  for (const tool of tools) {
    if (isRecord(tool) && isRecord(tool.function) && typeof tool.function.name === 'string') {
      out.push({ name: tool.function.name, parameters: tool.function.parameters })
    }
  }
  return out
}

function lastMessage(body: ChatBody): Record<string, unknown> | undefined {
  if (!Array.isArray(body.messages)) return undefined
  const last: unknown = body.messages[body.messages.length - 1]
  return isRecord(last) ? last : undefined
}

/**
 * Decides whether the mock "calls a tool", mirroring how a model behaves in an agent loop:
 * - `tool_choice: "none"` never calls;
 * - `tool_choice: {function: {name}}` calls that function;
 * - `tool_choice: "required"` calls the tool named in the last message, else the first tool;
 * - `"auto"` or unset calls a tool only when the last message is the user's and names the
 *   tool, so after the tool's result comes back the mock answers in text and loops end.
 */
function chooseTool(body: ChatBody): { name: string; parameters: unknown } | null {
  const tools = functionTools(body.tools)
  if (tools.length === 0) return null
  const choice = body.tool_choice
  if (choice === 'none') return null
  if (isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === 'string') {
    const wanted = choice.function.name
    return tools.find((tool) => tool.name === wanted) ?? { name: wanted, parameters: undefined }
  }
  const last = lastMessage(body)
  const text = last === undefined ? '' : typeof last.content === 'string' ? last.content : JSON.stringify(last.content ?? '')
  const named = tools.find((tool) => text.includes(tool.name))
  if (choice === 'required') return named ?? tools[0] ?? null
  return last?.role === 'user' ? (named ?? null) : null
}

/** A value that satisfies a JSON-schema fragment, picked without randomness: enums take their first member. */
function sampleFromSchema(schema: unknown, depth: number): unknown {
  if (!isRecord(schema)) return 'mock'
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0]
  if ('const' in schema) return schema.const
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'string':
      return 'mock'
    case 'number':
    case 'integer':
      return 1
    case 'boolean':
      return true
    case 'null':
      return null
    case 'array':
      return []
    case 'object':
      return depth > 4 ? {} : sampleObject(schema, depth + 1)
    default:
      return isRecord(schema.properties) ? sampleObject(schema, depth + 1) : 'mock'
  }
}

function sampleObject(schema: Record<string, unknown>, depth: number): Record<string, unknown> {
  const properties = isRecord(schema.properties) ? schema.properties : {}
  // Fill the required fields when the schema lists them (a real model may skip optional ones), else all.
  const keys = Array.isArray(schema.required)
    ? schema.required.filter((key): key is string => typeof key === 'string')
    : Object.keys(properties)
  const out: Record<string, unknown> = {}
  for (const key of keys) out[key] = sampleFromSchema(properties[key], depth)
  return out
}

function planChat(body: ChatBody, opts: MockOptions | undefined): ChatPlan {
  const choices = positiveInt(body.n, MAX_CHOICES) ?? 1
  const budget = positiveInt(body.max_completion_tokens, Infinity) ?? positiveInt(body.max_tokens, Infinity)
  const words = Math.min(budget ?? positiveInt(opts?.words, MAX_REPLY_WORDS) ?? DEFAULT_REPLY_WORDS, MAX_REPLY_WORDS)
  const picked = chooseTool(body)
  const tool = picked === null ? null : { name: picked.name, arguments: JSON.stringify(sampleFromSchema(picked.parameters, 0)) }
  const perChoice = tool === null ? words : textTokens(tool.name + tool.arguments)
  return {
    id: hashId('chatcmpl-mock', [body.model, body.messages], opts),
    created: nowSeconds(opts),
    model: modelOf(body),
    choices,
    words,
    // A budget past MAX_REPLY_WORDS is not what stopped the reply: the mock's own bound did.
    cut: budget !== undefined && budget <= MAX_REPLY_WORDS,
    tool,
    usage: usageOf(estimateChatPromptTokens(body), perChoice * choices),
    tier: servedTier(body.service_tier),
  }
}

/**
 * The tier an answer names for the one a request asked for, as OpenAI answers: `auto` is served
 * as `default`, any other as asked. A request that names none gets no `service_tier` (OpenAI's
 * answers always carry one; the mock's stay as they were for clients that do not ask).
 */
function servedTier(asked: unknown): string | undefined {
  if (typeof asked !== 'string') return undefined
  return asked === 'auto' ? 'default' : asked
}

/** A chat reply's finish: a tool call's, else `length` where the budget cut the text, else `stop`. */
const chatFinish = (plan: ChatPlan): 'stop' | 'length' | 'tool_calls' => (plan.tool !== null ? 'tool_calls' : plan.cut ? 'length' : 'stop')

function toolCallId(plan: ChatPlan, choice: number): string {
  return `call_mock${fnv1a(`${plan.id}:${choice}`).toString(16).padStart(8, '0')}`
}

// ---------------------------------------------------------------- chat builders

/**
 * An OpenAI `chat.completion` for `body`. The reply is `replyText(max_tokens ?? 16)`
 * (one word per completion token), or a tool call when {@link chooseTool}'s rules say so.
 */
export function mockChatCompletion(body: ChatBody, opts?: MockOptions): ChatCompletion {
  const plan = planChat(body, opts)
  const content = plan.tool === null ? replyText(plan.words) : null
  const choices: ChatCompletion['choices'] = []
  for (let index = 0; index < plan.choices; index++) {
    const message: ChatCompletion['choices'][number]['message'] = { role: 'assistant', content, refusal: null }
    if (plan.tool !== null) {
      message.tool_calls = [
        { id: toolCallId(plan, index), type: 'function', function: { name: plan.tool.name, arguments: plan.tool.arguments } },
      ]
    }
    choices.push({ index, message, logprobs: null, finish_reason: chatFinish(plan) })
  }
  return {
    id: plan.id,
    object: 'chat.completion',
    created: plan.created,
    model: plan.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices,
    usage: plan.usage,
    ...(plan.tier !== undefined && { service_tier: plan.tier }),
  }
}

/**
 * The same answer as {@link mockChatCompletion}, as OpenAI's SSE stream: a role chunk, the
 * content (or tool-call argument) pieces, a chunk with `finish_reason`, a usage chunk with
 * `choices: []` when `stream_options.include_usage` is set, then `data: [DONE]`.
 */
export function mockChatStream(body: ChatBody, opts: MockStreamOptions = {}): ReadableStream<Uint8Array> {
  const plan = planChat(body, opts)
  opts.onUsage?.(plan.usage)
  const withUsage = includeUsage(body)
  const head = { id: plan.id, object: 'chat.completion.chunk', created: plan.created, model: plan.model, system_fingerprint: SYSTEM_FINGERPRINT, ...(plan.tier !== undefined && { service_tier: plan.tier }) }
  // With include_usage OpenAI puts `usage: null` on every chunk but the last; clients key on it.
  const tail = withUsage ? { usage: null } : {}
  const frames: Frame[] = []
  const push = (delayed: boolean, choices: unknown[], extra: object = tail): void => {
    frames.push({ bytes: encoder.encode(`data: ${JSON.stringify({ ...head, choices, ...extra })}\n\n`), delayed })
  }
  const choice = (index: number, delta: object, finish: string | null = null): object => ({ index, delta, logprobs: null, finish_reason: finish })

  if (plan.tool === null) {
    for (let i = 0; i < plan.choices; i++) push(false, [choice(i, { role: 'assistant', content: '', refusal: null })])
    for (const piece of replyPieces(plan.words, opts.chunks ?? plan.words)) {
      for (let i = 0; i < plan.choices; i++) push(true, [choice(i, { content: piece })])
    }
  } else {
    const tool = plan.tool
    for (let i = 0; i < plan.choices; i++) {
      const call = { index: 0, id: toolCallId(plan, i), type: 'function', function: { name: tool.name, arguments: '' } }
      push(false, [choice(i, { role: 'assistant', content: null, tool_calls: [call], refusal: null })])
    }
    // OpenAI streams arguments a few characters at a time; 8 keeps frames realistic without flooding.
    const pieces = splitEvenly(tool.arguments, opts.chunks ?? Math.ceil(tool.arguments.length / 8))
    for (const piece of pieces) {
      for (let i = 0; i < plan.choices; i++) push(true, [choice(i, { tool_calls: [{ index: 0, function: { arguments: piece } }] })])
    }
  }
  const finish = chatFinish(plan)
  for (let i = 0; i < plan.choices; i++) push(true, [choice(i, {}, finish)])
  if (withUsage) push(false, [], { usage: plan.usage })
  frames.push({ bytes: DONE_FRAME, delayed: false })
  return sseStream(frames, opts)
}

// ---------------------------------------------------------------- legacy completions

function promptList(prompt: unknown): Array<string | readonly unknown[]> {
  if (typeof prompt === 'string') return [prompt]
  if (!Array.isArray(prompt) || prompt.length === 0) return ['']
  // number[] is one tokenized prompt; anything else is a list of prompts.
  if (prompt.every((item) => typeof item === 'number')) return [prompt]
  return prompt.map((item): string | readonly unknown[] => (typeof item === 'string' || Array.isArray(item) ? item : ''))
}

function promptTokens(prompt: string | readonly unknown[]): number {
  return typeof prompt === 'string' ? Math.ceil(prompt.length / 4) : prompt.length
}

interface CompletionPlan {
  id: string
  created: number
  model: string
  texts: Array<{ prefix: string; words: number }>
  /** Each text ends where the client's `max_tokens` did: finish `length`, as OpenAI's. */
  cut: boolean
  usage: Usage
}

function planCompletion(body: CompletionBody, opts: MockOptions | undefined): CompletionPlan {
  const prompts = promptList(body.prompt)
  const n = positiveInt(body.n, MAX_CHOICES) ?? 1
  const budget = positiveInt(body.max_tokens, Infinity)
  const words = Math.min(budget ?? positiveInt(opts?.words, MAX_REPLY_WORDS) ?? DEFAULT_REPLY_WORDS, MAX_REPLY_WORDS)
  const texts: CompletionPlan['texts'] = []
  let prompt = 0
  // OpenAI orders choices prompt-major: all n answers to prompt 0, then prompt 1, ...
  for (const p of prompts) {
    prompt += promptTokens(p)
    const prefix = body.echo === true && typeof p === 'string' ? p : ''
    for (let k = 0; k < n; k++) texts.push({ prefix, words })
  }
  return {
    id: hashId('cmpl-mock', [body.model, body.prompt], opts),
    created: nowSeconds(opts),
    model: modelOf(body),
    texts,
    cut: budget !== undefined && budget <= MAX_REPLY_WORDS,
    usage: usageOf(prompt, words * texts.length),
  }
}

/** An OpenAI `text_completion` for a legacy completions body; one choice per prompt × `n`. */
export function mockCompletion(body: CompletionBody, opts?: MockOptions): TextCompletion {
  const plan = planCompletion(body, opts)
  return {
    id: plan.id,
    object: 'text_completion',
    created: plan.created,
    model: plan.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: plan.texts.map((t, index) => ({ text: t.prefix + replyText(t.words), index, logprobs: null, finish_reason: plan.cut ? 'length' : 'stop' })),
    usage: plan.usage,
  }
}

/** {@link mockCompletion} as an SSE stream of `text_completion` chunks, ending like the chat stream. */
export function mockCompletionStream(body: CompletionBody, opts: MockStreamOptions = {}): ReadableStream<Uint8Array> {
  const plan = planCompletion(body, opts)
  opts.onUsage?.(plan.usage)
  const withUsage = includeUsage(body)
  const head = { id: plan.id, object: 'text_completion', created: plan.created, model: plan.model, system_fingerprint: SYSTEM_FINGERPRINT }
  const frames: Frame[] = []
  const push = (delayed: boolean, choices: unknown[], usage?: Usage): void => {
    const extra = usage !== undefined ? { usage } : withUsage ? { usage: null } : {}
    frames.push({ bytes: encoder.encode(`data: ${JSON.stringify({ ...head, choices, ...extra })}\n\n`), delayed })
  }
  const choice = (index: number, text: string, finish: string | null = null): object => ({ text, index, logprobs: null, finish_reason: finish })
  const pieces = plan.texts.map((t) => {
    const words = replyPieces(t.words, opts.chunks ?? t.words)
    return t.prefix === '' ? words : [t.prefix, ...words]
  })
  const steps = Math.max(...pieces.map((p) => p.length))
  for (let step = 0; step < steps; step++) {
    pieces.forEach((p, index) => {
      const piece = p[step]
      if (piece !== undefined) push(step > 0, [choice(index, piece)])
    })
  }
  pieces.forEach((_, index) => push(true, [choice(index, '', plan.cut ? 'length' : 'stop')]))
  if (withUsage) push(false, [], plan.usage)
  frames.push({ bytes: DONE_FRAME, delayed: false })
  return sseStream(frames, opts)
}

// ---------------------------------------------------------------- embeddings and models

function embeddingInputs(input: unknown): Array<string | readonly unknown[]> {
  if (typeof input === 'string') return [input]
  if (!Array.isArray(input) || input.length === 0) return []
  if (input.every((item) => typeof item === 'number')) return [input]
  return input.map((item): string | readonly unknown[] => (typeof item === 'string' || Array.isArray(item) ? item : String(item)))
}

/** A unit-length vector seeded by the input, so equal inputs embed equally and different ones differ. */
function embedVector(input: string | readonly unknown[], dims: number): Float32Array {
  let state = fnv1a(typeof input === 'string' ? input : input.join(','))
  const vector = new Float32Array(dims)
  let norm = 0
  for (let i = 0; i < dims; i++) {
    // xorshift32: enough spread for a mock, and identical on every platform.
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    const value = (state >>> 0) / 0x1_0000_0000 - 0.5
    vector[i] = value
    norm += value * value
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0
  for (let i = 0; i < dims; i++) vector[i] = (vector[i] ?? 0) * scale
  return vector
}

/** Deterministic embeddings: one unit vector per input, `dimensions` wide (default 8). */
export function mockEmbeddings(body: EmbeddingsBody, opts?: { dimensions?: number }): EmbeddingList {
  const dims =
    positiveInt(body.dimensions, MAX_EMBEDDING_DIMENSIONS) ?? positiveInt(opts?.dimensions, MAX_EMBEDDING_DIMENSIONS) ?? DEFAULT_EMBEDDING_DIMENSIONS
  const base64 = body.encoding_format === 'base64'
  let tokens = 0
  const data = embeddingInputs(body.input).map((input, index) => {
    tokens += promptTokens(input)
    const vector = embedVector(input, dims)
    const embedding = base64 ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64') : Array.from(vector)
    return { object: 'embedding' as const, index, embedding }
  })
  return { object: 'list', data, model: modelOf(body), usage: { prompt_tokens: tokens, total_tokens: tokens } }
}

/** One OpenAI model object. */
export function mockModel(id: string): ModelObject {
  return { id, object: 'model', created: MODEL_CREATED, owned_by: 'sluice-mock' }
}

/** The OpenAI `GET /v1/models` list for `ids`. */
export function mockModels(ids: readonly string[]): ModelList {
  return { object: 'list', data: ids.map(mockModel) }
}

// ---------------------------------------------------------------- failures

const ERROR_FAMILIES: Record<number, { type: string; code: string; message: string }> = {
  400: { type: 'invalid_request_error', code: 'invalid_request', message: 'The mock was asked to reject this request.' },
  401: { type: 'authentication_error', code: 'invalid_api_key', message: 'Incorrect API key provided (mock).' },
  403: { type: 'permission_error', code: 'insufficient_permissions', message: 'This key may not use this model (mock).' },
  404: { type: 'not_found_error', code: 'model_not_found', message: 'The model does not exist (mock).' },
  429: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'Rate limit reached (mock).' },
}

/** OpenAI's error envelope for `status`, with the type and code OpenAI would use. */
export function mockErrorBody(status: number, message?: string): ErrorBody {
  const family = ERROR_FAMILIES[status] ?? (status >= 500
    ? { type: 'server_error', code: 'server_error', message: 'The mock upstream failed on purpose.' }
    : { type: 'invalid_request_error', code: 'invalid_request', message: `The mock answered ${status} on purpose.` })
  return { error: { message: message ?? family.message, type: family.type, param: null, code: family.code } }
}

const FAIL_MODEL = /^mock-fail-([1-5]\d\d)$/
const SLOW_MODEL = /^mock-slow-(\d{1,6})$/

/**
 * What a magic model name asks of a mock: `mock-fail-503` answers 503, `mock-slow-2000`
 * waits 2 s before answering. Lets gateway tests steer an upstream through config alone.
 */
export function mockModelDirective(model: unknown): { failStatus?: number; delayMs?: number } {
  if (typeof model !== 'string') return {}
  const fail = FAIL_MODEL.exec(model)
  if (fail?.[1] !== undefined) return { failStatus: Number(fail[1]) }
  const slow = SLOW_MODEL.exec(model)
  if (slow?.[1] !== undefined) return { delayMs: Number(slow[1]) }
  return {}
}

// ---------------------------------------------------------------- SSE plumbing

interface Frame {
  bytes: Uint8Array
  /** Whether `chunkDelayMs` is waited before this frame (content frames), or it follows at once (usage, [DONE]). */
  delayed: boolean
}

/** Plays `frames` out, waiting before delayed ones; stops its timer the moment the reader cancels or `signal` aborts. */
function sseStream(frames: readonly Frame[], opts: MockStreamOptions): ReadableStream<Uint8Array> {
  const delay = Math.max(0, opts.chunkDelayMs ?? 0)
  const signal = opts.signal
  let next = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let wake: (() => void) | undefined
  // Set once the stream closed normally or was stopped; later cancels and aborts are no-ops.
  let ended = false
  let onAbort: (() => void) | undefined

  const end = (): void => {
    ended = true
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    wake?.()
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
  }
  const wait = (): Promise<void> =>
    new Promise((resolve) => {
      wake = resolve
      timer = setTimeout(resolve, delay)
    })

  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (signal?.aborted === true) {
        ended = true
        controller.error(signal.reason)
        return
      }
      if (delay === 0) {
        // Without pacing there is nothing to wait for: queue every frame now, each as its own chunk.
        for (const frame of frames) controller.enqueue(frame.bytes)
        ended = true
        controller.close()
        return
      }
      if (signal !== undefined) {
        onAbort = () => {
          if (ended) return
          end()
          controller.error(signal.reason)
          opts.onCancel?.()
        }
        signal.addEventListener('abort', onAbort, { once: true })
      }
    },
    async pull(controller) {
      const frame = frames[next]
      if (ended || frame === undefined) return
      if (frame.delayed && next > 0) await wait()
      if (ended) return
      next++
      controller.enqueue(frame.bytes)
      if (next === frames.length) {
        end()
        controller.close()
      }
    },
    cancel() {
      if (ended) return
      end()
      opts.onCancel?.()
    },
  })
}
