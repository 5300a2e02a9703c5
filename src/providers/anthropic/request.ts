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

function textBlock(text: string, part?: JsonObject): AnthropicBlock[] {
  // The Messages API refuses empty text blocks.
  if (text === '') return []
  const block: AnthropicBlock = { type: 'text', text }
  return [part ? withCache(block, part) : block]
}

function imageBlock(part: JsonObject, param: string): AnthropicBlock | Fail {
  const image = part.image_url
  const url = typeof image === 'string' ? image : isRecord(image) ? str(image.url) : undefined
  if (!url) return refuse('An image_url part needs image_url.url.', param)
  const data = parseDataUrl(url)
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
    if (content !== '') block.content = content
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
      input_schema: fn.parameters ?? { type: 'object', properties: {} },
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
  const format = body.response_format
  if (isRecord(format) && format.type === 'json_schema') {
    return refuse('response_format json_schema is not supported for Anthropic models; describe the JSON in the prompt or use a tool.', 'response_format')
  }

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
  const temperature = num(body.temperature)
  if (temperature !== undefined) request.temperature = temperature
  const topP = num(body.top_p)
  if (topP !== undefined) request.top_p = topP
  const topK = num(body.top_k)
  if (topK !== undefined) request.top_k = topK
  const stop = stopList(body.stop)
  if (stop) request.stop_sequences = stop
  if (body.stream === true) request.stream = true
  if (tools.tools) request.tools = tools.tools
  if (tools.tool_choice) request.tool_choice = tools.tool_choice
  const user = str(body.user)
  if (user) request.metadata = { user_id: user }
  return { ok: true, value: request }
}
