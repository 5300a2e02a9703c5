import {
  contentText,
  functionTool,
  isMadeCallId,
  isRecord,
  maxTokensOf,
  modelGeneration,
  num,
  parseArguments,
  parseDataUrl,
  reasoningEffortOf,
  refuse,
  stopList,
  str,
  toolChoiceOf,
  untranslatableChatField,
  type JsonObject,
  type ReasoningEffort,
  type Translation,
} from '../shared/openai-format.ts'
import { echo } from '../../lib/key-text.ts'

/** One part of a Gemini `Content`: text, inline data, a file, a function call or response. */
export type GeminiPart = JsonObject

export interface GeminiContent {
  role: 'user' | 'model'
  parts: GeminiPart[]
}

export interface GeminiFunctionDeclaration {
  name: string
  description?: string
  /** JSON Schema as the client wrote it (Gemini's `parametersJsonSchema` takes it unchanged). */
  parametersJsonSchema?: JsonObject
}

/** The body of `generateContent` / `streamGenerateContent`, as far as the translation fills it. */
export interface GeminiRequest {
  contents: GeminiContent[]
  systemInstruction?: { parts: GeminiPart[] }
  tools?: Array<{ functionDeclarations: GeminiFunctionDeclaration[] }>
  toolConfig?: { functionCallingConfig: { mode: 'AUTO' | 'ANY' | 'NONE'; allowedFunctionNames?: string[] } }
  generationConfig?: JsonObject
  safetySettings?: unknown[]
}

export interface GeminiRequestOptions {
  /** Sent as `safetySettings` on every call (provider option `safety_settings`). */
  safetySettings?: unknown[]
}

type Fail = { ok: false; message: string; param: string | null }
const isFail = (value: unknown): value is Fail => isRecord(value) && value.ok === false

/** Where the client's tool call carries Gemini's thought signature (Google's OpenAI-compatible convention). */
export function thoughtSignatureOf(call: JsonObject): string | undefined {
  const extra = call.extra_content
  return isRecord(extra) && isRecord(extra.google) ? str(extra.google.thought_signature) : undefined
}

const MIME_BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  heic: 'image/heic',
  heif: 'image/heif',
  pdf: 'application/pdf',
}

/** The MIME type an http(s) URL's file extension suggests. */
export function guessMimeType(url: string): string | undefined {
  let path: string
  try {
    path = new URL(url).pathname
  } catch {
    return undefined
  }
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase()
  return ext ? MIME_BY_EXTENSION[ext] : undefined
}

/** The image types Gemini takes; it answers any other (GIF, which OpenAI takes, BMP, SVG...) with a 400 of its own. */
const GEMINI_IMAGE_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif'])

/** A refusal of an image whose type Gemini does not take, or undefined for any other part (a PDF, audio). */
function unsupportedImage(mimeType: string, param: string): Fail | undefined {
  if (!mimeType.startsWith('image/') || GEMINI_IMAGE_TYPES.has(mimeType)) return undefined
  return refuse(`Gemini does not take images of type ${echo(mimeType)}; send it as one of ${[...GEMINI_IMAGE_TYPES].join(', ')}.`, param)
}

function imagePart(part: JsonObject, param: string): GeminiPart | Fail {
  const image = part.image_url
  const url = typeof image === 'string' ? image : isRecord(image) ? str(image.url) : undefined
  if (!url) return refuse('An image_url part needs image_url.url.', param)
  const data = parseDataUrl(url)
  if (data) return unsupportedImage(data.mimeType, param) ?? { inlineData: data }
  if (/^https?:\/\//i.test(url)) {
    const mimeType = guessMimeType(url)
    if (!mimeType) {
      return refuse(
        'Gemini needs the type of a linked image: use a URL ending in .png, .jpg, .jpeg, .webp, .heic or .heif, or send the image inline as a data: URL.',
        param,
      )
    }
    return unsupportedImage(mimeType, param) ?? { fileData: { mimeType, fileUri: url } }
  }
  return refuse('Image URLs must be data: URLs (base64) or http(s) URLs.', param)
}

const AUDIO_MIME: Record<string, string> = { wav: 'audio/wav', mp3: 'audio/mp3' }

/** A user message's content as parts. */
function userParts(content: unknown, param: string): GeminiPart[] | Fail {
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }]
  if (content === null || content === undefined) return []
  if (!Array.isArray(content)) return refuse('Message content must be a string or an array of parts.', param)
  const parts: GeminiPart[] = []
  for (const [i, part] of content.entries()) {
    const at = `${param}[${i}]`
    if (!isRecord(part)) return refuse('Each content part must be an object.', at)
    switch (part.type) {
      case 'text': {
        const text = str(part.text) ?? ''
        if (text !== '') parts.push({ text })
        break
      }
      case 'image_url': {
        const image = imagePart(part, at)
        if (isFail(image)) return image
        parts.push(image)
        break
      }
      case 'input_audio': {
        const audio = isRecord(part.input_audio) ? part.input_audio : {}
        const mimeType = AUDIO_MIME[str(audio.format) ?? '']
        const data = str(audio.data)
        if (!mimeType || !data) return refuse('input_audio needs data and a format of wav or mp3.', at)
        parts.push({ inlineData: { mimeType, data } })
        break
      }
      case 'file': {
        const file = isRecord(part.file) ? part.file : {}
        const data = parseDataUrl(str(file.file_data) ?? '')
        if (!data) return refuse('Gemini accepts file parts only as data: URLs in file.file_data (file ids cannot be forwarded).', at)
        const refusal = unsupportedImage(data.mimeType, at)
        if (refusal) return refusal
        parts.push({ inlineData: data })
        break
      }
      default:
        return refuse(`Content parts of type "${String(part.type)}" cannot be sent to Gemini.`, at)
    }
  }
  return parts
}

/**
 * The value Google documents for a function call whose thought signature is lost: it tells
 * Gemini 3 to skip the check instead of refusing the whole request.
 */
export const SKIP_THOUGHT_SIGNATURE = 'skip_thought_signature_validator'

/** Gemini 1.x and 2.x do not check thought signatures; every later model (and every alias) may. */
const UNSIGNED_GENERATIONS = /(^|\/)gemini-[12]([.-]|$)/i

/** Whether a model refuses a function call replayed without its thought signature (a body without a model is translated as it is). */
export function checksThoughtSignatures(model: string | undefined): boolean {
  return model !== undefined && !UNSIGNED_GENERATIONS.test(model)
}

/**
 * An assistant message: its text, then its tool calls as functionCall parts. Gemini 3 refuses
 * a replayed step whose calls carry no thought signature, and most OpenAI clients drop the
 * `extra_content` that holds it; such a step gets the documented skip value on its first call.
 */
/** A tool call of the conversation, by its id: the function it called, its place among its message's calls, and whether its id went to Gemini. */
interface CallSeen {
  name: string
  position: number
  sent: boolean
}

function modelParts(message: JsonObject, param: string, callNames: Map<string, CallSeen>, fillSignatures: boolean): GeminiPart[] | Fail {
  const parts: GeminiPart[] = []
  const text = contentText(message.content)
  if (text === null) return refuse('Assistant messages sent to Gemini may only hold text and tool calls.', `${param}.content`)
  if (text !== '') parts.push({ text })
  const calls = message.tool_calls
  let firstCall: GeminiPart | undefined
  let signed = false
  if (Array.isArray(calls)) {
    for (const [i, call] of calls.entries()) {
      const at = `${param}.tool_calls[${i}]`
      if (!isRecord(call) || !isRecord(call.function) || !str(call.function.name)) return refuse('A tool call needs function.name.', at)
      const name = str(call.function.name)!
      const args = parseArguments(call.function.arguments)
      if (args === null) return refuse('Tool call arguments must be a JSON object.', `${at}.function.arguments`)
      const id = str(call.id)
      // Gemini's own id (where it gives one) goes back with the call; one the gateway made for a call without one does not.
      const sent = id !== undefined && !isMadeCallId(id)
      if (id) callNames.set(id, { name, position: i, sent })
      const part: GeminiPart = { functionCall: sent ? { id, name, args } : { name, args } }
      const signature = thoughtSignatureOf(call)
      if (signature) part.thoughtSignature = signature
      signed ||= signature !== undefined
      firstCall ??= part
      parts.push(part)
    }
  }
  if (fillSignatures && firstCall && !signed) firstCall.thoughtSignature = SKIP_THOUGHT_SIGNATURE
  return parts
}

/**
 * A `tool` message as a functionResponse part; Gemini wants the function's name, found from the call id,
 * and the call's id when it went with the call (Gemini's own).
 */
function functionResponsePart(message: JsonObject, param: string, callNames: Map<string, CallSeen>): GeminiPart | Fail {
  const id = str(message.tool_call_id)
  const called = id ? callNames.get(id) : undefined
  const name = called?.name ?? str(message.name)
  if (!name) {
    return refuse(
      `The tool message answers tool_call_id "${id ?? ''}", which no earlier assistant message called; Gemini needs the function name.`,
      `${param}.tool_call_id`,
    )
  }
  const text = contentText(message.content)
  if (text === null) return refuse('Tool messages sent to Gemini may only hold text.', `${param}.content`)
  let response: JsonObject = { content: text }
  try {
    const parsed: unknown = JSON.parse(text)
    if (isRecord(parsed)) response = parsed
  } catch {
    // Plain text results are wrapped as {content}.
  }
  return { functionResponse: called?.sent ? { id, name, response } : { name, response } }
}

/**
 * A turn's function responses in the order of the calls they answer. OpenAI pairs a result with its
 * call by `tool_call_id`, so clients send results as they finish; Gemini pairs them by order (two
 * calls of one function would swap results), so they go in the order of the calls, in the places
 * the responses held. Responses whose call is not known keep their order, after the others.
 */
function inCallOrder(content: GeminiContent, positions: Map<GeminiPart, number>): void {
  const responses = content.parts.filter((part) => part.functionResponse !== undefined)
  if (responses.length < 2) return
  const ordered = [...responses].sort((a, b) => (positions.get(a) ?? Infinity) - (positions.get(b) ?? Infinity))
  let next = 0
  content.parts = content.parts.map((part) => (part.functionResponse !== undefined ? ordered[next++]! : part))
}

function append(contents: GeminiContent[], role: 'user' | 'model', parts: GeminiPart[]): void {
  if (parts.length === 0) return
  const last = contents[contents.length - 1]
  if (last?.role === role) last.parts.push(...parts)
  else contents.push({ role, parts })
}

function translateMessages(messages: unknown, fillSignatures: boolean): { system: GeminiPart[]; contents: GeminiContent[] } | Fail {
  if (!Array.isArray(messages) || messages.length === 0) return refuse('messages must be a non-empty array.', 'messages')
  const system: GeminiPart[] = []
  const contents: GeminiContent[] = []
  const callNames = new Map<string, CallSeen>()
  /** Each functionResponse part's call's place among its turn's calls (see inCallOrder). */
  const positions = new Map<GeminiPart, number>()
  for (const [i, message] of messages.entries()) {
    const param = `messages[${i}]`
    if (!isRecord(message)) return refuse('Each message must be an object.', param)
    switch (message.role) {
      case 'system':
      case 'developer': {
        const text = contentText(message.content)
        if (text === null) return refuse('System messages may only hold text.', `${param}.content`)
        if (text !== '') system.push({ text })
        break
      }
      case 'user': {
        const parts = userParts(message.content, `${param}.content`)
        if (isFail(parts)) return parts
        append(contents, 'user', parts)
        break
      }
      case 'assistant': {
        const parts = modelParts(message, param, callNames, fillSignatures)
        if (isFail(parts)) return parts
        append(contents, 'model', parts)
        break
      }
      case 'tool': {
        const part = functionResponsePart(message, param, callNames)
        if (isFail(part)) return part
        const called = callNames.get(str(message.tool_call_id) ?? '')
        if (called) positions.set(part, called.position)
        append(contents, 'user', [part])
        break
      }
      default:
        return refuse(`Messages with role "${String(message.role)}" cannot be sent to Gemini.`, `${param}.role`)
    }
  }
  if (positions.size > 1) for (const content of contents) inCallOrder(content, positions)
  // System messages alone, which OpenAI answers: Gemini needs contents, so the instructions are the user's.
  if (contents.length === 0 && system.length) return { system: [], contents: [{ role: 'user', parts: system }] }
  if (contents.length === 0) return refuse('Gemini needs at least one non-empty user or assistant message.', 'messages')
  return { system, contents }
}

function translateTools(body: JsonObject): Pick<GeminiRequest, 'tools' | 'toolConfig'> | Fail {
  const out: Pick<GeminiRequest, 'tools' | 'toolConfig'> = {}
  if (body.tools === undefined || body.tools === null) return out
  if (!Array.isArray(body.tools)) return refuse('tools must be an array.', 'tools')
  const declarations: GeminiFunctionDeclaration[] = []
  for (const [i, tool] of body.tools.entries()) {
    const fn = functionTool(tool)
    if (!fn) return refuse('Only tools of type "function" with a name can be sent to Gemini.', `tools[${i}]`)
    const declaration: GeminiFunctionDeclaration = { name: fn.name }
    if (fn.description) declaration.description = fn.description
    // A function without parameters is declared without a schema; Gemini refuses an empty object schema on some models.
    const properties = fn.parameters?.properties
    if (fn.parameters && !(isRecord(properties) && Object.keys(properties).length === 0)) declaration.parametersJsonSchema = fn.parameters
    declarations.push(declaration)
  }
  if (declarations.length === 0) return out
  out.tools = [{ functionDeclarations: declarations }]
  const choice = toolChoiceOf(body.tool_choice)
  if (choice === null) return refuse('tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}.', 'tool_choice')
  if (choice === undefined) return out
  switch (choice.mode) {
    case 'auto':
      out.toolConfig = { functionCallingConfig: { mode: 'AUTO' } }
      break
    case 'none':
      out.toolConfig = { functionCallingConfig: { mode: 'NONE' } }
      break
    case 'required':
      out.toolConfig = { functionCallingConfig: { mode: 'ANY' } }
      break
    case 'function':
      out.toolConfig = { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [choice.name] } }
      break
  }
  return out
}

/**
 * Gemini 2.5's thinking budget in tokens for each effort, as Google's own OpenAI-compatible
 * endpoint maps it; 0 turns thinking off on the models that allow it.
 */
const THINKING_BUDGETS: Record<ReasoningEffort, number> = { none: 0, minimal: 1024, low: 1024, medium: 8192, high: 24576, xhigh: 24576 }
const PRO_LEAST_BUDGET = 128

/** A Pro model (gemini-2.5-pro, gemini-3-pro-preview, gemini-3.1-pro-preview, gemini-pro-latest). */
const PRO = /-pro\b/i

/** Generations (major * 100 + minor, see modelGeneration) where the thinking switches change. */
const FIRST_THINKING = 205
const FIRST_THINKING_LEVEL = 300
const FIRST_PRO_MEDIUM = 301
const FIRST_XHIGH = 400

/**
 * The `thinkingLevel` for an effort on Gemini 3 and later. The levels a model takes depend on its
 * tier (Google's thinking guide): Flash takes minimal, low, medium and high; Gemini 3 Pro only low
 * and high, and Gemini 3.1 Pro low, medium and high: a Pro refuses "minimal" (it cannot think that
 * little), so none and minimal get its least, "low". Gemini 3 Pro's "medium" becomes "high", its
 * default: the client asked for more than low, and too little thinking costs answers where too
 * much costs only time. "xhigh" exists from Gemini 4 on; an alias may still point at Gemini 3,
 * which refuses it, so it gets "high".
 */
function thinkingLevel(effort: ReasoningEffort, model: string, generation: number | undefined): string {
  const level = effort === 'none' ? 'minimal' : effort === 'xhigh' ? (generation !== undefined && generation >= FIRST_XHIGH ? 'xhigh' : 'high') : effort
  if (!PRO.test(model)) return level
  if (level === 'minimal') return 'low'
  if (level === 'medium' && generation !== undefined && generation < FIRST_PRO_MEDIUM) return 'high'
  return level
}

/**
 * `generationConfig.thinkingConfig` for a `reasoning_effort`, or undefined when the model does
 * not think. Gemini 3 and later (and an alias without a version, taken for the newest) take a
 * `thinkingLevel` (see thinkingLevel: they cannot stop thinking, so none is their least level).
 * Gemini 2.5 takes a `thinkingBudget` instead; sending both is refused. Models before 2.5 have
 * no thinking. Any effort but none also asks for the thought summaries.
 */
export function thinkingConfig(effort: ReasoningEffort, model: string): JsonObject | undefined {
  const generation = modelGeneration(model, 'gemini')
  if (generation !== undefined && generation < FIRST_THINKING) return undefined
  const config: JsonObject = {}
  if (generation === undefined || generation >= FIRST_THINKING_LEVEL) {
    config.thinkingLevel = thinkingLevel(effort, model, generation)
  } else {
    // Gemini 2.5 Pro cannot stop thinking (a budget of 0 is refused): none is its least, 128.
    config.thinkingBudget = effort === 'none' && PRO.test(model) ? PRO_LEAST_BUDGET : THINKING_BUDGETS[effort]
  }
  if (effort !== 'none') config.includeThoughts = true
  return config
}

/** OpenAI's sampling fields and their names in `generationConfig`. */
const SAMPLING: ReadonlyArray<readonly [string, string]> = [
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['seed', 'seed'],
]
const WITH_PENALTIES: ReadonlyArray<readonly [string, string]> = [...SAMPLING, ['presence_penalty', 'presencePenalty'], ['frequency_penalty', 'frequencyPenalty']]

/** The first generation whose models refuse a presence or frequency penalty ("Penalty is not enabled"). */
const FIRST_WITHOUT_PENALTIES = 205

/**
 * Whether a model takes `presencePenalty` and `frequencyPenalty`: Gemini before 2.5 does; 2.5 and
 * later refuse any penalty but 0 with a 400, which OpenAI's models never do. For those (and an alias
 * without a version, taken for the newest) the penalties are left out, as Anthropic's adapter leaves
 * out what Claude cannot take, so the request is served rather than refused.
 */
function takesPenalties(model: string): boolean {
  const generation = modelGeneration(model, 'gemini')
  return generation !== undefined && generation < FIRST_WITHOUT_PENALTIES
}

/** The first generation that takes a JSON answer (`responseMimeType`) beside function declarations. */
const FIRST_JSON_WITH_FUNCTIONS = 300

/**
 * Whether a model refuses a JSON answer beside function declarations ("Function calling with a
 * response mime type: 'application/json' is unsupported"): Gemini before 3 does; Gemini 3 (and an
 * alias without a version, taken for the newest) takes the two together.
 */
function refusesJsonWithFunctions(model: string): boolean {
  const generation = modelGeneration(model, 'gemini')
  return generation !== undefined && generation < FIRST_JSON_WITH_FUNCTIONS
}

function generationConfig(body: JsonObject, declaresFunctions: boolean): JsonObject | Fail {
  const config: JsonObject = {}
  const effort = reasoningEffortOf(body)
  if (isFail(effort)) return effort
  if (effort !== undefined) {
    const thinking = thinkingConfig(effort, str(body.model) ?? '')
    if (thinking) config.thinkingConfig = thinking
  }
  const max = maxTokensOf(body)
  if (max !== undefined) config.maxOutputTokens = max
  for (const [from, to] of takesPenalties(str(body.model) ?? '') ? WITH_PENALTIES : SAMPLING) {
    const value = num(body[from])
    if (value !== undefined) config[to] = value
  }
  const stop = stopList(body.stop)
  if (stop) config.stopSequences = stop
  const n = num(body.n)
  if (n !== undefined && n > 1) config.candidateCount = n
  const format = body.response_format
  // Before Gemini 3, JSON cannot be asked for beside functions: json_object is left to the prompt (as
  // Anthropic's adapter leaves it with tools), a schema the answer would not be held to is refused.
  const jsonAllowed = !declaresFunctions || !refusesJsonWithFunctions(str(body.model) ?? '')
  if (isRecord(format) && format.type === 'json_schema' && !jsonAllowed) {
    return refuse(`response_format json_schema cannot be combined with tools for ${str(body.model) ?? 'this model'}: Gemini before 3 answers in JSON only without function declarations. Leave tools out of this request, or use a Gemini 3 model.`, 'response_format')
  }
  if (isRecord(format) && jsonAllowed) {
    if (format.type === 'json_object') config.responseMimeType = 'application/json'
    else if (format.type === 'json_schema') {
      const schema = isRecord(format.json_schema) ? format.json_schema.schema : undefined
      if (!isRecord(schema)) return refuse('response_format.json_schema.schema must be a JSON Schema object.', 'response_format')
      config.responseMimeType = 'application/json'
      config.responseJsonSchema = schema
    }
  }
  return config
}

/** Gemini's path for a model: `models/{model}`, or the name as given when it already has a collection. */
export function modelPath(model: string): string {
  return model.includes('/') ? model : `models/${model}`
}

/**
 * Translate an OpenAI chat body into a `generateContent` body. System messages become
 * `systemInstruction`; assistant turns are role `model`; tool results are
 * `functionResponse` parts named after the call they answer; consecutive turns of one
 * role are merged. `body.model` (the upstream model) decides whether replayed tool calls
 * that lost their thought signature get Google's skip value, and how `reasoning_effort`
 * becomes a `thinkingConfig`.
 */
export function toGeminiRequest(body: JsonObject, options: GeminiRequestOptions = {}): Translation<GeminiRequest> {
  const untranslatable = untranslatableChatField(body, 'Gemini')
  if (untranslatable) return untranslatable
  const conversation = translateMessages(body.messages, checksThoughtSignatures(str(body.model)))
  if (isFail(conversation)) return conversation
  const tools = translateTools(body)
  if (isFail(tools)) return tools
  const config = generationConfig(body, tools.tools !== undefined)
  if (isFail(config)) return config

  const request: GeminiRequest = { contents: conversation.contents }
  if (conversation.system.length) request.systemInstruction = { parts: conversation.system }
  if (tools.tools) request.tools = tools.tools
  if (tools.toolConfig) request.toolConfig = tools.toolConfig
  if (Object.keys(config).length) request.generationConfig = config
  if (options.safetySettings) request.safetySettings = options.safetySettings
  return { ok: true, value: request }
}

/** The most requests one `batchEmbedContents` call takes; OpenAI takes up to 2048 inputs in one call. */
export const EMBED_BATCH_LIMIT = 100

/** The body of `batchEmbedContents` for an OpenAI embeddings body (the adapter splits it into calls of at most EMBED_BATCH_LIMIT). */
export function toGeminiEmbedRequest(body: JsonObject, model: string): Translation<{ requests: JsonObject[] }> {
  const input = body.input
  const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((x) => typeof x === 'string') ? (input as string[]) : null
  if (texts === null || texts.length === 0) {
    return refuse('Gemini embeddings take input as a string or an array of strings (token arrays cannot be forwarded).', 'input')
  }
  const dimensions = num(body.dimensions)
  const path = modelPath(model)
  const requests = texts.map((text) => {
    const request: JsonObject = { model: path, content: { parts: [{ text }] } }
    if (dimensions !== undefined) request.outputDimensionality = dimensions
    return request
  })
  return { ok: true, value: { requests } }
}
