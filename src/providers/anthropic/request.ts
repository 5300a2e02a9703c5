import {
  contentText,
  functionTool,
  isRecord,
  maxTokensOf,
  num,
  parseArguments,
  parseDataUrl,
  refuse,
  stopList,
  str,
  toolChoiceOf,
  type JsonObject,
  type Translation,
} from '../shared/openai-format.ts'

/** One content block of the Messages API (text, image, document, tool_use, tool_result). */
export type AnthropicBlock = JsonObject

export interface AnthropicMessage {
  role: 'user' | 'assistant'
  content: AnthropicBlock[]
}

/** The body of `POST /v1/messages`, as far as the translation fills it. */
export interface AnthropicRequest {
  model: string
  max_tokens: number
  messages: AnthropicMessage[]
  system?: AnthropicBlock[]
  temperature?: number
  top_p?: number
  top_k?: number
  stop_sequences?: string[]
  stream?: boolean
  tools?: Array<{ name: string; description?: string; input_schema: JsonObject; cache_control?: JsonObject }>
  tool_choice?: { type: 'auto' | 'any' | 'none' | 'tool'; name?: string; disable_parallel_tool_use?: boolean }
  metadata?: { user_id: string }
}

export interface AnthropicRequestOptions {
  /** Anthropic requires `max_tokens`; this is sent when the client gives none. */
  defaultMaxTokens: number
}

type Fail = { ok: false; message: string; param: string | null }
type Blocks = AnthropicBlock[] | Fail

const isFail = (value: unknown): value is Fail => isRecord(value) && value.ok === false

/**
 * Anthropic accepts tool ids of `[a-zA-Z0-9_-]` only; ids made elsewhere (other providers,
 * other gateways) may hold more. The same mapping on both sides keeps calls and results paired.
 */
export const toolUseId = (id: string): string => id.replace(/[^a-zA-Z0-9_-]/g, '_')

/** Carry a client's prompt-caching mark (`cache_control`, as LiteLLM clients send it) onto a block. */
function withCache(block: AnthropicBlock, part: JsonObject): AnthropicBlock {
  if (isRecord(part.cache_control)) block.cache_control = part.cache_control
  return block
}

/** Whether a text is empty or only whitespace: the Messages API refuses such a text block. */
const blank = (text: string): boolean => text.trim() === ''

function textBlock(text: string, part?: JsonObject): AnthropicBlock[] {
  // The Messages API refuses text blocks that are empty or only whitespace ("text content
  // blocks must contain non-whitespace text"); such a part carries nothing for Claude anyway.
  if (blank(text)) return []
  const block: AnthropicBlock = { type: 'text', text }
  return [part ? withCache(block, part) : block]
}

function imageBlock(part: JsonObject, param: string): AnthropicBlock | Fail {
  const image = part.image_url
  const url = typeof image === 'string' ? image : isRecord(image) ? str(image.url) : undefined
  if (!url) return refuse('An image_url part needs image_url.url.', param)
  const data = parseDataUrl(url)
  if (data?.mimeType === 'application/pdf') {
    // Some clients send a PDF as an image_url data: URL; Claude reads it as a document.
    return withCache({ type: 'document', source: { type: 'base64', media_type: data.mimeType, data: data.data } }, part)
  }
  if (data) return withCache({ type: 'image', source: { type: 'base64', media_type: data.mimeType, data: data.data } }, part)
  if (/^https?:\/\//i.test(url)) return withCache({ type: 'image', source: { type: 'url', url } }, part)
  return refuse('Image URLs must be data: URLs (base64) or http(s) URLs.', param)
}

function fileBlock(part: JsonObject, param: string): AnthropicBlock | Fail {
  const file = isRecord(part.file) ? part.file : {}
  const data = parseDataUrl(str(file.file_data) ?? '')
  if (data?.mimeType === 'application/pdf') {
    return withCache({ type: 'document', source: { type: 'base64', media_type: data.mimeType, data: data.data } }, part)
  }
  return refuse('Anthropic accepts file parts only as PDF data: URLs in file.file_data (file ids cannot be forwarded).', param)
}

/** A user message's content as blocks. */
function userBlocks(content: unknown, param: string): Blocks {
  if (typeof content === 'string') return textBlock(content)
  if (content === null || content === undefined) return []
  if (!Array.isArray(content)) return refuse('Message content must be a string or an array of parts.', param)
  const blocks: AnthropicBlock[] = []
  for (const [i, part] of content.entries()) {
    const at = `${param}[${i}]`
    if (!isRecord(part)) return refuse('Each content part must be an object.', at)
    switch (part.type) {
      case 'text':
        blocks.push(...textBlock(str(part.text) ?? '', part))
        break
      case 'image_url': {
        const block = imageBlock(part, at)
        if (isFail(block)) return block
        blocks.push(block)
        break
      }
      case 'file': {
        const block = fileBlock(part, at)
        if (isFail(block)) return block
        blocks.push(block)
        break
      }
      default:
        return refuse(`Content parts of type "${String(part.type)}" cannot be sent to Anthropic.`, at)
    }
  }
  return blocks
}

/** An assistant message: its text, then its tool calls as tool_use blocks. */
function assistantBlocks(message: JsonObject, param: string): Blocks {
  const blocks: AnthropicBlock[] = []
  const content = message.content
  if (Array.isArray(content)) {
    for (const [i, part] of content.entries()) {
      if (!isRecord(part)) return refuse('Each content part must be an object.', `${param}.content[${i}]`)
      if (part.type === 'text') blocks.push(...textBlock(str(part.text) ?? '', part))
      else if (part.type === 'refusal') blocks.push(...textBlock(str(part.refusal) ?? ''))
      else return refuse(`Assistant content parts of type "${String(part.type)}" cannot be sent to Anthropic.`, `${param}.content[${i}]`)
    }
  } else if (typeof content === 'string') {
    blocks.push(...textBlock(content))
  }
  const calls = message.tool_calls
  if (Array.isArray(calls)) {
    for (const [i, call] of calls.entries()) {
      const at = `${param}.tool_calls[${i}]`
      const fn = isRecord(call) && isRecord(call.function) ? call.function : undefined
      const id = isRecord(call) ? str(call.id) : undefined
      const name = str(fn?.name)
      if (!fn || !id || !name) return refuse('A tool call needs an id and function.name.', at)
      const input = parseArguments(fn.arguments)
      if (input === null) return refuse('Tool call arguments must be a JSON object.', `${at}.function.arguments`)
      blocks.push({ type: 'tool_use', id: toolUseId(id), name, input })
    }
  }
  return blocks
}

/** A `tool` message as a tool_result block (it travels in a user turn). */
function toolResultBlock(message: JsonObject, param: string): AnthropicBlock | Fail {
  const id = str(message.tool_call_id)
  if (!id) return refuse('A tool message needs tool_call_id.', `${param}.tool_call_id`)
  const block: AnthropicBlock = { type: 'tool_result', tool_use_id: toolUseId(id) }
  const content = message.content
  if (typeof content === 'string') {
    if (!blank(content)) block.content = content
  } else if (Array.isArray(content)) {
    const blocks = userBlocks(content, `${param}.content`)
    if (isFail(blocks)) return blocks
    if (blocks.length) block.content = blocks
  }
  return block
}

/** Append blocks to the conversation, merging into the last turn when the role repeats. */
function append(turns: AnthropicMessage[], role: 'user' | 'assistant', blocks: AnthropicBlock[]): void {
  if (blocks.length === 0) return
  const last = turns[turns.length - 1]
  if (last?.role === role) last.content.push(...blocks)
  else turns.push({ role, content: blocks })
}

/** Anthropic wants a user turn's tool results before anything else in it. */
function toolResultsFirst(turn: AnthropicMessage): void {
  if (turn.role !== 'user' || !turn.content.some((b) => b.type === 'tool_result')) return
  turn.content = [...turn.content.filter((b) => b.type === 'tool_result'), ...turn.content.filter((b) => b.type !== 'tool_result')]
}

/**
 * A final assistant turn is a prefill Claude continues from; Anthropic refuses one that ends
 * in whitespace, so the trailing whitespace goes (and the turn, if nothing is left).
 */
function trimPrefill(turns: AnthropicMessage[]): void {
  const last = turns[turns.length - 1]
  if (last?.role !== 'assistant') return
  const block = last.content[last.content.length - 1]
  if (block?.type !== 'text' || typeof block.text !== 'string') return
  const text = block.text.trimEnd()
  if (text) block.text = text
  else last.content.pop()
  if (last.content.length === 0) turns.pop()
}

function translateMessages(messages: unknown): { system: AnthropicBlock[]; turns: AnthropicMessage[] } | Fail {
  if (!Array.isArray(messages) || messages.length === 0) return refuse('messages must be a non-empty array.', 'messages')
  const system: AnthropicBlock[] = []
  const turns: AnthropicMessage[] = []
  for (const [i, message] of messages.entries()) {
    const param = `messages[${i}]`
    if (!isRecord(message)) return refuse('Each message must be an object.', param)
    switch (message.role) {
      case 'system':
      case 'developer': {
        // Anthropic has one system prompt, outside the turns: every system message goes there, in order.
        if (Array.isArray(message.content)) {
          for (const [k, part] of message.content.entries()) {
            if (!isRecord(part) || part.type !== 'text') return refuse('System messages may only hold text.', `${param}.content[${k}]`)
            system.push(...textBlock(str(part.text) ?? '', part))
          }
        } else {
          const text = contentText(message.content)
          if (text === null) return refuse('System messages may only hold text.', `${param}.content`)
          system.push(...textBlock(text))
        }
        break
      }
      case 'user': {
        const blocks = userBlocks(message.content, `${param}.content`)
        if (isFail(blocks)) return blocks
        append(turns, 'user', blocks)
        break
      }
      case 'assistant': {
        const blocks = assistantBlocks(message, param)
        if (isFail(blocks)) return blocks
        append(turns, 'assistant', blocks)
        break
      }
      case 'tool': {
        const block = toolResultBlock(message, param)
        if (isFail(block)) return block
        append(turns, 'user', [block])
        break
      }
      default:
        return refuse(`Messages with role "${String(message.role)}" cannot be sent to Anthropic.`, `${param}.role`)
    }
  }
  for (const turn of turns) toolResultsFirst(turn)
  trimPrefill(turns)
  if (turns.length === 0) return refuse('Anthropic needs at least one non-empty user or assistant message.', 'messages')
  return { system, turns }
}

/**
 * A function's parameters as Anthropic's `input_schema`, which must say `type: "object"`.
 * OpenAI takes a schema without it (`{}`, or only `properties`) as an object all the same.
 */
function inputSchema(parameters: JsonObject | undefined): JsonObject {
  if (!parameters) return { type: 'object', properties: {} }
  return parameters.type === undefined ? { type: 'object', ...parameters } : parameters
}

function translateTools(body: JsonObject): Pick<AnthropicRequest, 'tools' | 'tool_choice'> | Fail {
  const out: Pick<AnthropicRequest, 'tools' | 'tool_choice'> = {}
  if (body.tools === undefined || body.tools === null) return out
  if (!Array.isArray(body.tools)) return refuse('tools must be an array.', 'tools')
  const tools: NonNullable<AnthropicRequest['tools']> = []
  for (const [i, tool] of body.tools.entries()) {
    const fn = functionTool(tool)
    if (!fn) return refuse('Only tools of type "function" with a name can be sent to Anthropic.', `tools[${i}]`)
    const entry: NonNullable<AnthropicRequest['tools']>[number] = {
      name: fn.name,
      input_schema: inputSchema(fn.parameters),
    }
    if (fn.description) entry.description = fn.description
    if (isRecord(tool) && isRecord(tool.cache_control)) entry.cache_control = tool.cache_control
    tools.push(entry)
  }
  if (tools.length === 0) return out
  out.tools = tools
  const choice = toolChoiceOf(body.tool_choice)
  if (choice === null) return refuse('tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}.', 'tool_choice')
  const parallel = body.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {}
  if (choice === undefined) {
    if (body.parallel_tool_calls === false) out.tool_choice = { type: 'auto', ...parallel }
    return out
  }
  switch (choice.mode) {
    case 'auto':
      out.tool_choice = { type: 'auto', ...parallel }
      break
    case 'none':
      out.tool_choice = { type: 'none' }
      break
    case 'required':
      out.tool_choice = { type: 'any', ...parallel }
      break
    case 'function':
      out.tool_choice = { type: 'tool', name: choice.name, ...parallel }
      break
  }
  return out
}

/** A tool Claude is made to call, whose input is the JSON answer `response_format` asks for. */
export interface AnswerTool {
  name: string
  description: string
  input_schema: JsonObject
}

/** The answer tool's name when the client's json_schema has none that Anthropic takes for a tool. */
const ANSWER_TOOL = 'json_answer'
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/

/**
 * `response_format` asks for JSON, which the Messages API has no switch for on every model:
 * the answer is asked for through a tool Claude must call (json_schema: the client's schema;
 * json_object: any object), and the call's input is given back as the message content.
 * Undefined when no JSON is asked for, or for json_object in a request that has tools of its
 * own (the tool would take their place; the client gets Claude's text, as before); a refusal
 * for what cannot be served that way.
 */
export function answerToolOf(body: JsonObject): AnswerTool | undefined | Fail {
  const format = body.response_format
  if (!isRecord(format) || (format.type !== 'json_object' && format.type !== 'json_schema')) return undefined
  const ownTools = Array.isArray(body.tools) && body.tools.length > 0
  if (format.type === 'json_object') {
    if (ownTools) return undefined
    return {
      name: ANSWER_TOOL,
      description: 'Give your whole answer through this tool, as the JSON object the conversation asks for.',
      input_schema: { type: 'object', additionalProperties: true },
    }
  }
  if (ownTools) {
    return refuse('response_format json_schema cannot be combined with tools for Anthropic models: the schema is asked for through a tool of its own.', 'response_format')
  }
  const spec = isRecord(format.json_schema) ? format.json_schema : {}
  const schema = isRecord(spec.schema) ? spec.schema : { type: 'object', additionalProperties: true }
  if (schema.type !== 'object') {
    return refuse('response_format json_schema must describe an object (type "object") for Anthropic models.', 'response_format.json_schema.schema')
  }
  const name = str(spec.name)
  const description = str(spec.description)
  return {
    name: name && TOOL_NAME.test(name) ? name : ANSWER_TOOL,
    description: description ? `Give your whole answer through this tool. ${description}` : 'Give your whole answer through this tool, as JSON that follows its schema.',
    input_schema: schema,
  }
}

/** The name of the tool a request's JSON answer comes back through, if it asks for one that way. */
export function answerToolName(body: JsonObject): string | undefined {
  const tool = answerToolOf(body)
  return tool && !isFail(tool) ? tool.name : undefined
}

/**
 * `temperature` and `top_p` as Anthropic takes them. OpenAI's temperature goes up to 2,
 * Anthropic's to 1: above 1 is Claude's most random, 1. Recent Claude models refuse
 * `temperature` and `top_p` together; many clients send one of them at its neutral value
 * (1, which changes nothing), so that one is left out when the other is set.
 */
function sampling(body: JsonObject): Pick<AnthropicRequest, 'temperature' | 'top_p'> {
  const raw = num(body.temperature)
  let temperature = raw === undefined ? undefined : Math.min(raw, 1)
  let topP = num(body.top_p)
  if (temperature !== undefined && topP !== undefined) {
    if (topP >= 1) topP = undefined
    else if (temperature === 1) temperature = undefined
  }
  const out: Pick<AnthropicRequest, 'temperature' | 'top_p'> = {}
  if (temperature !== undefined) out.temperature = temperature
  if (topP !== undefined) out.top_p = topP
  return out
}

const EMAIL_OR_PHONE = /@|^\+?[\d\s().-]{7,}$/

/**
 * Anthropic takes a `user_id` of at most 256 characters and refuses one that looks like an
 * email address or a phone number (it must be opaque), where OpenAI takes any string; many
 * applications send the user's email. Such a value goes as its SHA-256, which stays the same
 * for the same user (what the id is for) and tells Anthropic nothing about who it is.
 */
function opaqueUserId(user: string): string {
  if (user.length <= 256 && !EMAIL_OR_PHONE.test(user)) return user
  return new Bun.CryptoHasher('sha256').update(user).digest('hex')
}

/**
 * Translate an OpenAI chat body into a Messages API body. System and developer messages
 * become the top-level `system`; tool results travel as `tool_result` blocks in user
 * turns; consecutive turns of one role are merged, because Anthropic wants alternation.
 */
export function toAnthropicRequest(body: JsonObject, options: AnthropicRequestOptions): Translation<AnthropicRequest> {
  const model = str(body.model)
  if (!model) return refuse('The request must name a model.', 'model')
  const n = num(body.n)
  if (n !== undefined && n > 1) return refuse('Anthropic returns one choice per request: n must be 1.', 'n')
  const answer = answerToolOf(body)
  if (isFail(answer)) return answer

  const conversation = translateMessages(body.messages)
  if (isFail(conversation)) return conversation
  const tools = translateTools(body)
  if (isFail(tools)) return tools

  const request: AnthropicRequest = {
    model,
    max_tokens: maxTokensOf(body) ?? options.defaultMaxTokens,
    messages: conversation.turns,
  }
  if (conversation.system.length) request.system = conversation.system
  Object.assign(request, sampling(body))
  const topK = num(body.top_k)
  if (topK !== undefined) request.top_k = topK
  // Anthropic refuses a stop sequence of whitespace only ("\n" is a common one); it is left out.
  const stop = stopList(body.stop)?.filter((sequence) => !blank(sequence))
  if (stop?.length) request.stop_sequences = stop
  if (body.stream === true) request.stream = true
  if (tools.tools) request.tools = tools.tools
  if (tools.tool_choice) request.tool_choice = tools.tool_choice
  if (answer) {
    request.tools = [answer]
    request.tool_choice = { type: 'tool', name: answer.name }
  }
  // OpenAI's newer safety_identifier means what `user` meant, and what Anthropic's user_id means.
  const user = str(body.safety_identifier) || str(body.user)
  if (user) request.metadata = { user_id: opaqueUserId(user) }
  return { ok: true, value: request }
}
