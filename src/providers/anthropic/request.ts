import {
  contentText,
  functionTool,
  isRecord,
  maxTokensField,
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
  thinking?: { type: 'adaptive' } | { type: 'enabled'; budget_tokens: number }
  output_config?: { effort?: 'low' | 'medium' | 'high' | 'xhigh'; format?: StructuredFormat }
}

/** A JSON schema Claude's answer must follow (Claude 4.5 and later: structured outputs). */
export interface StructuredFormat {
  type: 'json_schema'
  schema: JsonObject
}

/**
 * A translated request; `answerTool` names the tool Claude gives its answer through when the client
 * asked for JSON that way (see answerToolOf), so the answer can be handed back as the message content.
 */
export type AnthropicTranslation = { ok: true; value: AnthropicRequest; answerTool?: string } | Fail

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
  const blocks: AnthropicBlock[] = thinkingBlocks(message.thinking_blocks)
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

/**
 * The thinking blocks an assistant message carries back (`thinking_blocks`, as the gateway
 * answers them and LiteLLM clients keep them): Claude's reasoning with its signature, or the
 * encrypted data of a redacted one. Anthropic checks the signature, so only whole blocks go.
 */
function thinkingBlocks(value: unknown): AnthropicBlock[] {
  if (!Array.isArray(value)) return []
  const blocks: AnthropicBlock[] = []
  for (const block of value) {
    if (!isRecord(block)) continue
    if (block.type === 'thinking' && typeof block.thinking === 'string' && typeof block.signature === 'string') {
      blocks.push({ type: 'thinking', thinking: block.thinking, signature: block.signature })
    } else if (block.type === 'redacted_thinking' && typeof block.data === 'string') {
      blocks.push({ type: 'redacted_thinking', data: block.data })
    }
  }
  return blocks
}

const isThinkingBlock = (block: AnthropicBlock | undefined): boolean => block?.type === 'thinking' || block?.type === 'redacted_thinking'

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
  // System messages alone, which OpenAI answers: Anthropic needs a turn, so the instructions are the user's.
  if (turns.length === 0 && system.length) return { system: [], turns: [{ role: 'user', content: system }] }
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

/** Claude 4.5 and later answer in a JSON schema given as `output_config.format`. */
const FIRST_STRUCTURED = 405

/** The client's json_schema, refused unless it describes an object (as a tool's input or a structured answer must). */
function jsonSchemaOf(format: JsonObject): { spec: JsonObject; schema: JsonObject } | Fail {
  const spec = isRecord(format.json_schema) ? format.json_schema : {}
  const schema = isRecord(spec.schema) ? spec.schema : { type: 'object', additionalProperties: true }
  if (schema.type !== 'object') {
    return refuse('response_format json_schema must describe an object (type "object") for Anthropic models.', 'response_format.json_schema.schema')
  }
  return { spec, schema }
}

/**
 * `response_format` json_schema as Anthropic's structured outputs (`output_config.format`), where
 * the model has them (Claude 4.5 and later, and a name without a version) and the client asked for
 * what the answer tool cannot give: a strict schema (Anthropic holds the answer to it, as OpenAI
 * does with `strict`), a schema next to tools of the client's own, or a schema while Claude thinks
 * (which rules out forcing a tool). Anthropic takes what OpenAI's strict mode takes (every object
 * closed with `additionalProperties: false`); a schema it does not take comes back as its own 400.
 * Undefined where the answer tool serves (see answerToolOf).
 */
function structuredFormatOf(body: JsonObject, format: JsonObject): StructuredFormat | undefined | Fail {
  const generation = modelGeneration(str(body.model) ?? '', 'claude')
  if (generation !== undefined && generation < FIRST_STRUCTURED) return undefined
  const found = jsonSchemaOf(format)
  if (isFail(found)) return found
  const ownTools = Array.isArray(body.tools) && body.tools.length > 0
  const effort = reasoningEffortOf(body)
  const thinks = !isFail(effort) && effort !== undefined && effort !== 'none'
  if (found.spec.strict !== true && !ownTools && !thinks) return undefined
  return { type: 'json_schema', schema: structuredSchema(found.schema) as JsonObject }
}

/** Constraints OpenAI's strict mode takes and Anthropic's structured outputs refuse. */
const UNHELD = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength', 'maxItems'] as const

/**
 * A schema as structured outputs take it: the constraints they refuse (numbers' and strings'
 * bounds, `maxItems`, `minItems` above 1) are taken out and written into the field's
 * `description` instead, as Anthropic's own SDKs do, so Claude still reads them (the answer
 * tool never held them either). The client's schema is not changed.
 */
function structuredSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(structuredSchema)
  if (!isRecord(node)) return node
  const out: JsonObject = {}
  const moved: string[] = []
  for (const [key, value] of Object.entries(node)) {
    if ((UNHELD as readonly string[]).includes(key) && typeof value === 'number') moved.push(`${key}: ${value}`)
    else if (key === 'minItems' && typeof value === 'number' && value > 1) moved.push(`${key}: ${value}`)
    else out[key] = key === 'properties' || key === '$defs' || key === 'definitions' ? mapValues(value) : structuredSchema(value)
  }
  if (moved.length) {
    const note = `{${moved.join(', ')}}`
    out.description = typeof out.description === 'string' && out.description ? `${out.description} ${note}` : note
  }
  return out
}

/** Each schema of a name → schema map (`properties`, `$defs`) made a structured-output schema. */
function mapValues(value: unknown): unknown {
  if (!isRecord(value)) return value
  const out: JsonObject = {}
  for (const [name, schema] of Object.entries(value)) out[name] = structuredSchema(schema)
  return out
}

/**
 * How a request's `response_format` JSON is asked of Claude: as structured outputs (`format`, see
 * structuredFormatOf) or through the answer tool (`tool`, see answerToolOf). Undefined when no
 * JSON is asked for, or for json_object in a request that has tools of its own; a refusal for
 * what cannot be served.
 */
export function jsonAnswerOf(body: JsonObject): { format: StructuredFormat } | { tool: AnswerTool } | undefined | Fail {
  const format = body.response_format
  if (!isRecord(format) || (format.type !== 'json_object' && format.type !== 'json_schema')) return undefined
  if (format.type === 'json_schema') {
    const structured = structuredFormatOf(body, format)
    if (structured !== undefined) return isFail(structured) ? structured : { format: structured }
  }
  const tool = answerToolOf(body, format)
  return tool === undefined || isFail(tool) ? tool : { tool }
}

/**
 * `response_format` asks for JSON, which the Messages API has no switch for on every model:
 * the answer is asked for through a tool Claude must call (json_schema: the client's schema;
 * json_object: any object), and the call's input is given back as the message content.
 * Undefined for json_object in a request that has tools of its own (the tool would take their
 * place; the client gets Claude's text, as before); a refusal for what cannot be served that way.
 */
function answerToolOf(body: JsonObject, format: JsonObject): AnswerTool | undefined | Fail {
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
    return refuse('response_format json_schema cannot be combined with tools for Anthropic models before Claude 4.5: the schema is asked for through a tool of its own.', 'response_format')
  }
  const found = jsonSchemaOf(format)
  if (isFail(found)) return found
  const name = str(found.spec.name)
  const description = str(found.spec.description)
  return {
    name: name && TOOL_NAME.test(name) ? name : ANSWER_TOOL,
    description: description ? `Give your whole answer through this tool. ${description}` : 'Give your whole answer through this tool, as JSON that follows its schema.',
    input_schema: found.schema,
  }
}

/** From Claude 4.5 on, Anthropic refuses `temperature` and `top_p` in one request. */
const FIRST_ONE_SAMPLER = 405

/**
 * `temperature` and `top_p` as Anthropic takes them. OpenAI's temperature goes up to 2,
 * Anthropic's to 1: above 1 is Claude's most random, 1. Claude 4.5 and later (and a model name
 * without a version, taken for a current one) refuse the two together; many clients send one of
 * them at its neutral value (1, which changes nothing), so that one is left out when the other is
 * set, and when both matter `temperature` is kept (the one Anthropic suggests adjusting). Older
 * models take both. Neutral is the client's own value: 1.5 asks for more randomness than the
 * default, so it is kept (as 1) over top_p, where only a temperature of exactly 1 gives way.
 */
function sampling(body: JsonObject, model: string): Pick<AnthropicRequest, 'temperature' | 'top_p'> {
  let temperature = num(body.temperature)
  let topP = num(body.top_p)
  if (temperature !== undefined && topP !== undefined) {
    const generation = modelGeneration(model, 'claude')
    if (topP >= 1) topP = undefined
    else if (temperature === 1) temperature = undefined
    else if (generation === undefined || generation >= FIRST_ONE_SAMPLER) topP = undefined
  }
  const out: Pick<AnthropicRequest, 'temperature' | 'top_p'> = {}
  if (temperature !== undefined) out.temperature = Math.min(temperature, 1)
  if (topP !== undefined) out.top_p = topP
  return out
}

/** Claude 3.7 was the first to think; from 4.6 Claude thinks adaptively (4.7 on: only so). */
const FIRST_THINKING = 307
const FIRST_ADAPTIVE = 406
/** Thinking budgets (tokens) for the models that take one; Anthropic's minimum is 1,024. */
const MIN_BUDGET = 1024
const BUDGETS: Readonly<Record<Exclude<ReasoningEffort, 'none'>, number>> = { minimal: MIN_BUDGET, low: MIN_BUDGET, medium: 2048, high: 4096, xhigh: 8192 }
const EFFORTS: Readonly<Record<Exclude<ReasoningEffort, 'none'>, 'low' | 'medium' | 'high' | 'xhigh'>> = {
  minimal: 'low',
  low: 'low',
  medium: 'medium',
  high: 'high',
  xhigh: 'xhigh',
}

/**
 * Whether the conversation is in a tool loop whose thinking was lost: the last turn gives tool
 * results to an assistant turn that has no thinking block first (or is itself such an assistant
 * turn, a prefill). Anthropic refuses such a request
 * with thinking on (the turn must start with the thinking that led to its tool calls), and clients
 * that keep only OpenAI's fields do not send thinking back; that request is sent without thinking.
 */
function lostThinking(turns: AnthropicMessage[]): boolean {
  const last = turns[turns.length - 1]
  const before = turns[turns.length - 2]
  // A final assistant turn (a prefill Claude continues) must start with thinking too.
  if (last?.role === 'assistant') return !isThinkingBlock(last.content[0])
  if (last?.role !== 'user' || last.content[0]?.type !== 'tool_result' || before?.role !== 'assistant') return false
  return !isThinkingBlock(before.content[0])
}

/**
 * OpenAI's `reasoning_effort` as Anthropic's thinking. Claude 4.6 and later think adaptively, at
 * an `effort` (minimal is low); 3.7 to 4.5 take a budget of thinking tokens within `max_tokens`,
 * which is raised past the budget when the client set none, and narrows the budget when it did.
 * A model name without a version is taken for a current one. `none`, and models before 3.7,
 * get no thinking. Thinking rules out forcing a tool (tool_choice, response_format's answer tool):
 * Anthropic refuses both together.
 */
function thinkingOf(
  request: AnthropicRequest,
  effort: ReasoningEffort | undefined,
  clientMaxTokens: number | undefined,
  defaultMaxTokens: number,
  maxTokensParam: 'max_completion_tokens' | 'max_tokens',
): Partial<Pick<AnthropicRequest, 'thinking' | 'output_config' | 'max_tokens'>> | Fail | undefined {
  if (effort === undefined || effort === 'none') return undefined
  const generation = modelGeneration(request.model, 'claude')
  if (generation !== undefined && generation < FIRST_THINKING) return undefined
  if (request.tool_choice?.type === 'any' || request.tool_choice?.type === 'tool') {
    return refuse('reasoning_effort cannot be combined with a forced tool call (tool_choice "required" or a named function, or response_format json) for Anthropic models: Claude cannot be made to call a tool while it thinks. Use tool_choice "auto", or leave reasoning_effort out.', 'reasoning_effort')
  }
  if (lostThinking(request.messages)) return undefined
  if (generation === undefined || generation >= FIRST_ADAPTIVE) {
    return { thinking: { type: 'adaptive' }, output_config: { effort: EFFORTS[effort] } }
  }
  let budget = BUDGETS[effort]
  let maxTokens = request.max_tokens
  if (clientMaxTokens === undefined) {
    if (maxTokens <= budget) maxTokens = budget + defaultMaxTokens
  } else if (clientMaxTokens <= budget) {
    budget = clientMaxTokens - 1
    if (budget < MIN_BUDGET) {
      return refuse(`With reasoning_effort, ${request.model} needs ${maxTokensParam} above ${MIN_BUDGET}: its thinking budget (at least ${MIN_BUDGET} tokens) is part of it.`, maxTokensParam)
    }
  }
  return { thinking: { type: 'enabled', budget_tokens: budget }, max_tokens: maxTokens }
}

/**
 * While Claude thinks, Anthropic takes `temperature` only at 1, `top_p` only from 0.95 and no
 * `top_k`; what the client set outside that is left out (as OpenAI's reasoning models ignore
 * sampling), so the request is served rather than refused.
 */
function thinkingSampling(request: AnthropicRequest): void {
  if (request.temperature !== undefined && request.temperature !== 1) delete request.temperature
  if (request.top_p !== undefined && request.top_p < 0.95) delete request.top_p
  delete request.top_k
}

/**
 * The conversation without the thinking blocks a client replayed, for a request sent without
 * thinking. A turn left empty goes, and the turns around it merge, as Anthropic wants alternation.
 */
function withoutThinking(turns: AnthropicMessage[]): AnthropicMessage[] {
  if (!turns.some((turn) => turn.content.some(isThinkingBlock))) return turns
  const kept: AnthropicMessage[] = []
  for (const turn of turns) append(kept, turn.role, turn.content.filter((block) => !isThinkingBlock(block)))
  for (const turn of kept) toolResultsFirst(turn)
  return kept
}

/**
 * Tools for a conversation that used tools the request no longer offers (a final summary, a
 * framework's last call without tools): Anthropic refuses `tool_use` and `tool_result` blocks in a
 * request that defines no tools, where OpenAI takes them. The tools the history called are
 * declared (any input) with tool_choice none, so Claude reads its history and calls nothing, as
 * the client offered nothing. Undefined when no tool was called.
 */
const HISTORY_TOOL_NAME = /^[a-zA-Z0-9_-]{1,128}$/

function historyTools(turns: AnthropicMessage[]): Pick<AnthropicRequest, 'tools' | 'tool_choice'> | undefined {
  const names = new Set<string>()
  let called = false
  for (const turn of turns) {
    for (const block of turn.content) {
      if (block.type !== 'tool_use') continue
      called = true
      // A name Anthropic takes for a tool; a call named otherwise (made elsewhere) needs no declaration of its own.
      if (typeof block.name === 'string' && HISTORY_TOOL_NAME.test(block.name)) names.add(block.name)
    }
  }
  if (!called) return undefined
  if (names.size === 0) names.add('earlier_tool')
  return { tools: [...names].map((name) => ({ name, input_schema: { type: 'object' } })), tool_choice: { type: 'none' } }
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
export function toAnthropicRequest(body: JsonObject, options: AnthropicRequestOptions): AnthropicTranslation {
  const model = str(body.model)
  if (!model) return refuse('The request must name a model.', 'model')
  const untranslatable = untranslatableChatField(body, 'Anthropic')
  if (untranslatable) return untranslatable
  const n = num(body.n)
  if (n !== undefined && n > 1) return refuse('Anthropic returns one choice per request: n must be 1.', 'n')
  const answer = jsonAnswerOf(body)
  if (isFail(answer)) return answer
  const effort = reasoningEffortOf(body)
  if (isFail(effort)) return effort

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
  Object.assign(request, sampling(body, model))
  const topK = num(body.top_k)
  if (topK !== undefined) request.top_k = topK
  // Anthropic refuses a stop sequence of whitespace only ("\n" is a common one); it is left out.
  const stop = stopList(body.stop)?.filter((sequence) => !blank(sequence))
  if (stop?.length) request.stop_sequences = stop
  if (body.stream === true) request.stream = true
  if (tools.tools) request.tools = tools.tools
  if (tools.tool_choice) request.tool_choice = tools.tool_choice
  if (answer && 'tool' in answer) {
    request.tools = [answer.tool]
    request.tool_choice = { type: 'tool', name: answer.tool.name }
  } else if (answer) request.output_config = { format: answer.format }
  if (!request.tools) Object.assign(request, historyTools(request.messages))
  // OpenAI's newer safety_identifier means what `user` meant, and what Anthropic's user_id means.
  const user = str(body.safety_identifier) || str(body.user)
  if (user) request.metadata = { user_id: opaqueUserId(user) }
  const thinking = thinkingOf(request, effort, maxTokensOf(body), options.defaultMaxTokens, maxTokensField(body))
  if (isFail(thinking)) return thinking
  if (thinking) {
    const { output_config: effortConfig, ...rest } = thinking
    Object.assign(request, rest)
    if (effortConfig) request.output_config = { ...request.output_config, ...effortConfig }
    thinkingSampling(request)
  } else {
    request.messages = withoutThinking(request.messages)
    if (request.messages.length === 0) return refuse('Anthropic needs at least one non-empty user or assistant message.', 'messages')
  }
  return answer && 'tool' in answer ? { ok: true, value: request, answerTool: answer.tool.name } : { ok: true, value: request }
}
