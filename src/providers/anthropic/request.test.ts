import { describe, expect, test } from 'bun:test'
import { toAnthropicRequest, type AnthropicRequest } from './request.ts'

const options = { defaultMaxTokens: 4096 }

function ok(body: Record<string, unknown>): AnthropicRequest {
  const result = toAnthropicRequest({ model: 'claude-x', ...body }, options)
  if (!result.ok) throw new Error(`refused: ${result.message}`)
  return result.value
}

function refused(body: Record<string, unknown>): { message: string; param: string | null } {
  const result = toAnthropicRequest({ model: 'claude-x', ...body }, options)
  if (result.ok) throw new Error('expected a refusal')
  return result
}

const call = (id: string, name = 'lookup', args = '{"q":"x"}') => ({ id, type: 'function', function: { name, arguments: args } })

describe('toAnthropicRequest', () => {
  test('max_tokens: max_completion_tokens wins, then max_tokens, then the default', () => {
    const messages = [{ role: 'user', content: 'hi' }]
    expect(ok({ messages }).max_tokens).toBe(4096)
    expect(ok({ messages, max_tokens: 10 }).max_tokens).toBe(10)
    expect(ok({ messages, max_tokens: 10, max_completion_tokens: 20 }).max_tokens).toBe(20)
  })

  test('a tool history without tools declares the called tools with tool_choice none; tools of the request or none called leave it alone', () => {
    const loop = [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: null, tool_calls: [call('a', 'lookup'), call('b', 'functions.search'), call('c', 'lookup')] },
      { role: 'tool', tool_call_id: 'a', content: '1' },
      { role: 'tool', tool_call_id: 'b', content: '2' },
      { role: 'tool', tool_call_id: 'c', content: '3' },
    ]
    const bare = ok({ messages: loop })
    expect(bare.tools).toEqual([{ name: 'lookup', input_schema: { type: 'object' } }])
    expect(bare.tool_choice).toEqual({ type: 'none' })
    const odd = ok({ messages: [loop[0], { role: 'assistant', tool_calls: [call('x', 'a.b')] }, { role: 'tool', tool_call_id: 'x', content: '1' }] })
    expect(odd.tools?.map((tool) => tool.name)).toEqual(['earlier_tool'])
    const own = ok({ messages: loop, tools: [{ type: 'function', function: { name: 'lookup' } }] })
    expect(own.tools?.map((tool) => tool.name)).toEqual(['lookup'])
    expect(own.tool_choice).toBeUndefined()
    const plain = ok({ messages: [{ role: 'user', content: 'q' }] })
    expect(plain.tools).toBeUndefined()
    expect(plain.tool_choice).toBeUndefined()
  })

  test('system messages alone go as the user turn, without a system; nothing at all is still refused', () => {
    const request = ok({ messages: [{ role: 'system', content: 'only system' }, { role: 'assistant', content: ' ' }] })
    expect(request.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'only system' }] }])
    expect(request.system).toBeUndefined()
    expect(refused({ messages: [{ role: 'system', content: ' ' }, { role: 'user', content: '' }] }).param).toBe('messages')
  })

  test('parallel tool results merge into one user turn, results before any text', () => {
    const request = ok({
      messages: [
        { role: 'user', content: 'look both up' },
        { role: 'assistant', content: null, tool_calls: [call('t1'), call('t2', 'other', '')] },
        { role: 'tool', tool_call_id: 't1', content: 'one' },
        { role: 'tool', tool_call_id: 't2', content: [{ type: 'text', text: 'two' }] },
        { role: 'user', content: 'thanks' },
      ],
    })
    expect(request.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'look both up' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'x' } },
          // Empty arguments are an empty input object.
          { type: 'tool_use', id: 't2', name: 'other', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 't1', content: 'one' },
          { type: 'tool_result', tool_use_id: 't2', content: [{ type: 'text', text: 'two' }] },
          { type: 'text', text: 'thanks' },
        ],
      },
    ])
  })

  test('a user text before tool results in the same turn is moved after them', () => {
    const request = ok({
      messages: [
        { role: 'assistant', content: 'calling', tool_calls: [call('t1')] },
        { role: 'user', content: 'by the way' },
        { role: 'tool', tool_call_id: 't1', content: 'r' },
      ],
    })
    expect(request.messages[1]?.content.map((b) => b.type)).toEqual(['tool_result', 'text'])
  })

  test('empty texts are dropped (Anthropic refuses empty text blocks); empty messages vanish', () => {
    const request = ok({
      messages: [
        { role: 'system', content: '' },
        { role: 'user', content: '' },
        { role: 'user', content: [{ type: 'text', text: '' }, { type: 'text', text: 'real' }] },
        { role: 'assistant', content: '' },
      ],
    })
    expect(request.system).toBeUndefined()
    expect(request.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'real' }] }])
    expect(refused({ messages: [{ role: 'system', content: '' }, { role: 'user', content: ' ' }] }).param).toBe('messages')
  })

  test('cache_control marks are carried onto system, content and tool blocks', () => {
    const mark = { type: 'ephemeral' }
    const request = ok({
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'long context', cache_control: mark }] },
        { role: 'user', content: [{ type: 'text', text: 'q', cache_control: mark }] },
      ],
      tools: [{ type: 'function', function: { name: 'f' }, cache_control: mark }],
    })
    expect(request.system).toEqual([{ type: 'text', text: 'long context', cache_control: mark }])
    expect(request.messages[0]?.content[0]).toEqual({ type: 'text', text: 'q', cache_control: mark })
    expect(request.tools).toEqual([{ name: 'f', input_schema: { type: 'object', properties: {} }, cache_control: mark }])
  })

  test('a PDF file part becomes a document block', () => {
    const request = ok({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } }] }] })
    expect(request.messages[0]?.content[0]).toEqual({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } })
  })

  test('stop, top_k, stream and user map; unknown OpenAI fields are not forwarded', () => {
    const request = ok({
      messages: [{ role: 'user', content: 'hi' }],
      stop: 'END',
      top_k: 5,
      stream: true,
      stream_options: { include_usage: true },
      user: 'u1',
      seed: 1,
      presence_penalty: 0.5,
      logprobs: false,
      response_format: { type: 'text' },
    })
    expect(request).toEqual({
      model: 'claude-x',
      max_tokens: 4096,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
      stop_sequences: ['END'],
      top_k: 5,
      stream: true,
      metadata: { user_id: 'u1' },
    })
  })

  test('parallel_tool_calls false without a tool_choice is auto with parallel use disabled; no tools, no tool_choice', () => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string' } } } } }]
    expect(ok({ messages: [{ role: 'user', content: 'x' }], tools, parallel_tool_calls: false }).tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true })
    expect(ok({ messages: [{ role: 'user', content: 'x' }], tools, tool_choice: 'auto' }).tool_choice).toEqual({ type: 'auto' })
    expect(ok({ messages: [{ role: 'user', content: 'x' }], tool_choice: 'required' }).tool_choice).toBeUndefined()
  })

  test('what Anthropic cannot take is refused with the field named', () => {
    const user = (content: unknown) => ({ messages: [{ role: 'user', content }] })
    expect(refused({ ...user('x'), n: 3 }).param).toBe('n')
    expect(refused(user([{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }])).param).toBe('messages[0].content[0]')
    expect(refused(user([{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }])).message).toContain('data: URLs')
    expect(refused(user([{ type: 'file', file: { file_id: 'file-1' } }])).message).toContain('PDF')
    expect(refused({ messages: [{ role: 'assistant', content: null, tool_calls: [call('t', 'f', '{not json')] }] }).param).toBe(
      'messages[0].tool_calls[0].function.arguments',
    )
    expect(refused({ messages: [{ role: 'tool', content: 'x' }] }).param).toBe('messages[0].tool_call_id')
    expect(refused({ messages: [{ role: 'function', name: 'f', content: 'x' }] }).param).toBe('messages[0].role')
    expect(refused({ ...user('x'), tools: [{ type: 'code_interpreter' }] }).param).toBe('tools[0]')
    expect(refused({ ...user('x'), tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'sometimes' }).param).toBe('tool_choice')
    expect(refused({ messages: [] }).param).toBe('messages')
  })

  test('the legacy functions and function_call, and log probabilities, are refused naming the field, not dropped', () => {
    const messages = [{ role: 'user', content: 'x' }]
    const fn = { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }
    expect(refused({ messages, functions: [fn] })).toMatchObject({ param: 'functions', message: expect.stringContaining('"tools"') })
    expect(refused({ messages, function_call: 'auto' })).toMatchObject({ param: 'function_call', message: expect.stringContaining('"tool_choice"') })
    expect(refused({ messages: [...messages, { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } }] }).param).toBe('messages[1].function_call')
    expect(refused({ messages, logprobs: true }).param).toBe('logprobs')
    expect(refused({ messages, logprobs: true, top_logprobs: 2 }).param).toBe('logprobs')
    expect(refused({ messages, top_logprobs: 2 }).param).toBe('top_logprobs')
    // What asks for nothing passes.
    expect(ok({ messages, logprobs: false, top_logprobs: 0, functions: null, function_call: null }).messages).toHaveLength(1)
    expect(ok({ messages, logprobs: null, top_logprobs: null }).messages).toHaveLength(1)
  })
})

describe('toAnthropicRequest, what Anthropic would refuse is made acceptable', () => {
  const user = (content: unknown) => [{ role: 'user', content }]

  test('texts of whitespace only are dropped like empty ones (Anthropic refuses them)', () => {
    const request = ok({
      messages: [
        { role: 'system', content: ' \n' },
        { role: 'developer', content: [{ type: 'text', text: '\t' }, { type: 'text', text: 'Be brief.' }] },
        { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'text', text: '\n\n' }] },
        { role: 'assistant', content: '  ', tool_calls: [call('t1')] },
        { role: 'tool', tool_call_id: 't1', content: '\n' },
        { role: 'user', content: ' ' },
      ],
    })
    expect(request.system).toEqual([{ type: 'text', text: 'Be brief.' }])
    expect(request.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'look' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'x' } }] },
      // A tool result with nothing in it is sent without content, as the API allows.
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1' }] },
    ])
    expect(refused({ messages: user('   ') }).param).toBe('messages')
  })

  test('stop sequences of whitespace only are left out (Anthropic refuses them); the others are kept', () => {
    expect(ok({ messages: user('x'), stop: ['\n', 'END', ' \t'] }).stop_sequences).toEqual(['END'])
    expect(ok({ messages: user('x'), stop: '\n\n' }).stop_sequences).toBeUndefined()
  })

  test('temperature above 1 (OpenAI allows 2) is sent as 1, the most Anthropic takes', () => {
    expect(ok({ messages: user('x'), temperature: 1.7 }).temperature).toBe(1)
    expect(ok({ messages: user('x'), temperature: 0.3 }).temperature).toBe(0.3)
  })

  test('temperature and top_p: the one at its neutral value 1 is left out, and top_p where recent models refuse both', () => {
    const both = (temperature: number, top_p: number) => {
      const { temperature: t, top_p: p } = ok({ messages: user('x'), temperature, top_p })
      return { t, p }
    }
    expect(both(0.2, 1)).toEqual({ t: 0.2, p: undefined })
    expect(both(1, 0.9)).toEqual({ t: undefined, p: 0.9 })
    // Above 1 is not neutral: it is the client's own choice, sent as Claude's most random, 1, alone.
    expect(both(1.5, 0.5)).toEqual({ t: 1, p: undefined })
    expect(both(2, 1)).toEqual({ t: 1, p: undefined })
    // Both set to something that matters: Claude 4.5 and later take one, temperature; older models both.
    expect(both(0.2, 0.9)).toEqual({ t: 0.2, p: undefined })
    const on = (model: string) => {
      const result = toAnthropicRequest({ model, messages: user('x'), temperature: 0.2, top_p: 0.9 }, options)
      return result.ok ? [result.value.temperature, result.value.top_p] : result.message
    }
    expect(on('claude-sonnet-4-5-20250929')).toEqual([0.2, undefined])
    expect(on('claude-haiku-4-5')).toEqual([0.2, undefined])
    expect(on('claude-opus-4-1-20250805')).toEqual([0.2, 0.9])
    expect(on('claude-3-7-sonnet-20250219')).toEqual([0.2, 0.9])
    expect(toAnthropicRequest({ model: 'claude-3-7-sonnet-20250219', messages: user('x'), temperature: 1.5, top_p: 0.5 }, options)).toMatchObject({ value: { temperature: 1, top_p: 0.5 } })
    expect(ok({ messages: user('x'), top_p: 1 }).top_p).toBe(1)
  })

  test('image/jpg data URLs are sent as image/jpeg; a PDF sent as image_url becomes a document', () => {
    const request = ok({
      messages: user([
        { type: 'image_url', image_url: { url: 'data:image/jpg;base64,/9j/4AAQ' } },
        { type: 'image_url', image_url: { url: 'data:application/pdf;base64,JVBERi0=' } },
      ]),
    })
    expect(request.messages[0]?.content).toEqual([
      { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/4AAQ' } },
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
    ])
  })

  test('a user that is an email or a phone number, or too long, goes as its SHA-256 (Anthropic refuses it)', () => {
    const hex = (text: string) => new Bun.CryptoHasher('sha256').update(text).digest('hex')
    expect(ok({ messages: user('x'), user: 'ada@example.com' }).metadata).toEqual({ user_id: hex('ada@example.com') })
    expect(ok({ messages: user('x'), user: '+1 (555) 010-9999' }).metadata).toEqual({ user_id: hex('+1 (555) 010-9999') })
    expect(ok({ messages: user('x'), user: 'u'.repeat(300) }).metadata).toEqual({ user_id: hex('u'.repeat(300)) })
    // An opaque id is sent as it is; OpenAI's newer safety_identifier is the same thing.
    expect(ok({ messages: user('x'), user: 'usr_42' }).metadata).toEqual({ user_id: 'usr_42' })
    expect(ok({ messages: user('x'), safety_identifier: 'sid-9', user: 'usr_42' }).metadata).toEqual({ user_id: 'sid-9' })
  })

  test('function parameters without a type are an object schema, as OpenAI reads them', () => {
    const tools = [
      { type: 'function', function: { name: 'a', parameters: {} } },
      { type: 'function', function: { name: 'b', parameters: { properties: { q: { type: 'string' } }, required: ['q'] } } },
    ]
    expect(ok({ messages: user('x'), tools }).tools?.map((t) => t.input_schema)).toEqual([
      { type: 'object' },
      { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    ])
  })
})

describe('toAnthropicRequest, response_format', () => {
  const messages = [{ role: 'user', content: 'The weather in Paris, as JSON.' }]
  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }

  const OLD = 'claude-sonnet-4-20250514'

  test('json_schema: the schema is asked for through a tool Claude must call, named after it', () => {
    const request = ok({ model: OLD, messages, response_format: { type: 'json_schema', json_schema: { name: 'weather', description: 'The forecast.', schema, strict: true } } })
    expect(request.tools).toEqual([{ name: 'weather', description: 'Give your whole answer through this tool. The forecast.', input_schema: schema }])
    expect(request.tool_choice).toEqual({ type: 'tool', name: 'weather' })
    // A name Anthropic would refuse for a tool is replaced.
    expect(ok({ messages, response_format: { type: 'json_schema', json_schema: { name: 'my schema!', schema } } }).tool_choice).toEqual({ type: 'tool', name: 'json_answer' })
    // Claude 4.5 and later too, for a schema that is not strict and nothing else in the way.
    expect(ok({ model: 'claude-sonnet-4-5', messages, response_format: { type: 'json_schema', json_schema: { name: 'weather', schema } } }).tool_choice).toEqual({ type: 'tool', name: 'weather' })
  })

  test('the translation names the answer tool only when the answer comes back through one', () => {
    const translate = (body: Record<string, unknown>) => toAnthropicRequest({ model: OLD, ...body }, options)
    const viaTool = translate({ messages, response_format: { type: 'json_schema', json_schema: { name: 'weather', schema } } })
    expect(viaTool.ok && viaTool.answerTool).toBe('weather')
    const object = translate({ messages, response_format: { type: 'json_object' } })
    expect(object.ok && object.answerTool).toBe('json_answer')
    // The client's own forced tool is not an answer tool, nor is a structured-outputs format.
    const forced = translate({ messages, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'f' } } })
    expect(forced.ok && forced.answerTool).toBeUndefined()
    const structured = translate({ model: 'claude-sonnet-4-5', messages, response_format: { type: 'json_schema', json_schema: { name: 'w', schema, strict: true } } })
    expect(structured.ok && structured.answerTool).toBeUndefined()
    const plain = translate({ messages })
    expect(plain.ok && plain.answerTool).toBeUndefined()
  })

  test("json_schema as structured outputs (Claude 4.5 and later, and versionless names): strict, next to the client's tools, or while thinking", () => {
    const structured = { format: { type: 'json_schema' as const, schema } }
    for (const model of ['claude-sonnet-4-5', 'claude-opus-4-6', 'claude-haiku-4-5-20251001', 'claude-x']) {
      const strict = ok({ model, messages, response_format: { type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } } })
      expect(strict.output_config).toEqual(structured)
      expect(strict.tools).toBeUndefined()
      expect(strict.tool_choice).toBeUndefined()
    }
    const tools = [{ type: 'function', function: { name: 'f' } }]
    const withTools = ok({ model: 'claude-sonnet-4-5', messages, tools, response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } })
    expect(withTools.output_config).toEqual(structured)
    expect(withTools.tools?.map((t) => t.name)).toEqual(['f'])
    // Thinking and a structured answer together: no forced tool in the way.
    const thinking = ok({ model: 'claude-opus-4-6', messages, reasoning_effort: 'high', response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } })
    expect(thinking.thinking).toEqual({ type: 'adaptive' })
    expect(thinking.output_config).toEqual({ ...structured, effort: 'high' })
    expect(thinking.tool_choice).toBeUndefined()
    const budget = ok({ model: 'claude-sonnet-4-5', messages, reasoning_effort: 'low', response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } })
    expect(budget.thinking).toEqual({ type: 'enabled', budget_tokens: 1024 })
    expect(budget.output_config).toEqual(structured)
    // Before Claude 4.5: the answer tool, which thinking cannot take.
    expect(ok({ model: 'claude-opus-4-1', messages, response_format: { type: 'json_schema', json_schema: { name: 'w', schema, strict: true } } }).output_config).toBeUndefined()
    expect(refused({ model: 'claude-opus-4-1', messages, reasoning_effort: 'high', response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } }).param).toBe('reasoning_effort')
  })

  test('json_object: a tool that takes any object', () => {
    const request = ok({ messages, response_format: { type: 'json_object' } })
    expect(request.tools).toMatchObject([{ name: 'json_answer', input_schema: { type: 'object', additionalProperties: true } }])
    expect(request.tool_choice).toEqual({ type: 'tool', name: 'json_answer' })
  })

  test("structured outputs: the bounds Anthropic does not hold move into the field's description; the client's schema stays as it was", () => {
    const bounded = {
      type: 'object',
      properties: {
        days: { type: 'integer', minimum: 1, maximum: 16, description: 'Days ahead.' },
        city: { type: 'string', minLength: 2, pattern: '^[A-Z]' },
        tags: { type: 'array', items: { type: 'string', maxLength: 10 }, minItems: 2, maxItems: 5 },
        note: { type: 'array', items: { type: 'string' }, minItems: 1 },
      },
      required: ['days', 'city', 'tags', 'note'],
      additionalProperties: false,
    }
    const copy = structuredClone(bounded)
    const request = ok({ model: 'claude-sonnet-4-5', messages, response_format: { type: 'json_schema', json_schema: { name: 'f', schema: bounded, strict: true } } })
    expect(request.output_config?.format?.schema).toEqual({
      type: 'object',
      properties: {
        days: { type: 'integer', description: 'Days ahead. {minimum: 1, maximum: 16}' },
        city: { type: 'string', pattern: '^[A-Z]', description: '{minLength: 2}' },
        tags: { type: 'array', items: { type: 'string', description: '{maxLength: 10}' }, description: '{minItems: 2, maxItems: 5}' },
        note: { type: 'array', items: { type: 'string' }, minItems: 1 },
      },
      required: ['days', 'city', 'tags', 'note'],
      additionalProperties: false,
    })
    expect(bounded).toEqual(copy)
  })

  test('with tools of its own: json_schema is refused before Claude 4.5, json_object is left to the prompt', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }]
    expect(refused({ model: OLD, messages, tools, response_format: { type: 'json_schema', json_schema: { name: 'w', schema } } }).param).toBe('response_format')
    const request = ok({ messages, tools, tool_choice: 'auto', response_format: { type: 'json_object' } })
    expect(request.tools?.map((t) => t.name)).toEqual(['f'])
    expect(request.tool_choice).toEqual({ type: 'auto' })
  })

  test('a json_schema that is not an object is refused with the field named', () => {
    expect(refused({ messages, response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'array' } } } }).param).toBe('response_format.json_schema.schema')
    expect(refused({ messages, response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'array' }, strict: true } } }).param).toBe('response_format.json_schema.schema')
  })
})

describe('toAnthropicRequest, ids and prefill', () => {
  test('tool ids Anthropic would refuse are mapped the same way on the call and its result', () => {
    const request = ok({
      messages: [
        { role: 'assistant', content: null, tool_calls: [call('functions.lookup:0')] },
        { role: 'tool', tool_call_id: 'functions.lookup:0', content: 'r' },
      ],
    })
    expect(request.messages[0]?.content[0]?.id).toBe('functions_lookup_0')
    expect(request.messages[1]?.content[0]?.tool_use_id).toBe('functions_lookup_0')
  })

  test('a final assistant prefill loses its trailing whitespace (and goes if nothing is left)', () => {
    const prefill = ok({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'The answer is ' }] })
    expect(prefill.messages[1]?.content).toEqual([{ type: 'text', text: 'The answer is' }])
    const blank = ok({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: '  \n' }] })
    expect(blank.messages).toHaveLength(1)
  })
})

describe('reasoning_effort as thinking', () => {
  const messages = [{ role: 'user', content: 'think' }]
  const as = (model: string, body: Record<string, unknown>) => {
    const result = toAnthropicRequest({ model, messages, ...body }, options)
    if (!result.ok) throw new Error(`refused: ${result.message}`)
    return result.value
  }

  test('Claude 4.6 and later (and names without a version) think adaptively at an effort', () => {
    for (const model of ['claude-opus-4-6', 'claude-sonnet-4-6', 'claude-opus-4-7', 'claude-fable-5', 'claude-x']) {
      const request = as(model, { reasoning_effort: 'medium' })
      expect(request.thinking).toEqual({ type: 'adaptive' })
      expect(request.output_config).toEqual({ effort: 'medium' })
      expect(request.max_tokens).toBe(4096)
    }
    expect(as('claude-opus-4-7', { reasoning_effort: 'minimal' }).output_config).toEqual({ effort: 'low' })
    expect(as('claude-opus-4-7', { reasoning_effort: 'xhigh' }).output_config).toEqual({ effort: 'xhigh' })
  })

  test('Claude 3.7 to 4.5 take a thinking budget inside max_tokens', () => {
    const high = as('claude-sonnet-4-5-20250929', { reasoning_effort: 'high' })
    expect(high.thinking).toEqual({ type: 'enabled', budget_tokens: 4096 })
    expect(high.output_config).toBeUndefined()
    // The default max_tokens (4096) would leave no room: it is raised past the budget.
    expect(high.max_tokens).toBe(4096 + 4096)
    expect(as('claude-3-7-sonnet-20250219', { reasoning_effort: 'low' }).thinking).toEqual({ type: 'enabled', budget_tokens: 1024 })
    expect(as('claude-sonnet-4-20250514', { reasoning_effort: 'medium' }).thinking).toEqual({ type: 'enabled', budget_tokens: 2048 })
    // The client's own max_tokens stays; the budget fits inside it.
    const tight = as('claude-opus-4-1-20250805', { reasoning_effort: 'high', max_tokens: 3000 })
    expect(tight.max_tokens).toBe(3000)
    expect(tight.thinking).toEqual({ type: 'enabled', budget_tokens: 2999 })
    const roomy = as('claude-opus-4-1-20250805', { reasoning_effort: 'high', max_completion_tokens: 20000 })
    expect([roomy.max_tokens, roomy.thinking]).toEqual([20000, { type: 'enabled', budget_tokens: 4096 }])
  })

  test('a max_tokens too small for the least budget is refused, naming it', () => {
    const result = toAnthropicRequest({ model: 'claude-sonnet-4-5', messages, reasoning_effort: 'low', max_tokens: 800 }, options)
    expect(result).toMatchObject({ ok: false, param: 'max_tokens' })
    if (!result.ok) expect(result.message).toContain('needs max_tokens above 1024')
    // A client that sent max_completion_tokens is told about that field, not one it never sent.
    const newer = toAnthropicRequest({ model: 'claude-sonnet-4-5', messages, reasoning_effort: 'low', max_completion_tokens: 800 }, options)
    expect(newer).toMatchObject({ ok: false, param: 'max_completion_tokens' })
    if (!newer.ok) expect(newer.message).toContain('needs max_completion_tokens above 1024')
  })

  test('none, models before 3.7 and no reasoning_effort get no thinking', () => {
    expect(as('claude-opus-4-7', { reasoning_effort: 'none' }).thinking).toBeUndefined()
    expect(as('claude-3-5-sonnet-20241022', { reasoning_effort: 'high' }).thinking).toBeUndefined()
    expect(as('claude-3-5-sonnet-20241022', { reasoning_effort: 'high' }).max_tokens).toBe(4096)
    expect(as('claude-opus-4-7', {}).thinking).toBeUndefined()
    expect(as('claude-opus-4-7', { reasoning_effort: null }).output_config).toBeUndefined()
  })

  test('a value OpenAI does not define is refused', () => {
    const result = toAnthropicRequest({ model: 'claude-opus-4-7', messages, reasoning_effort: 'extreme' }, options)
    expect(result).toMatchObject({ ok: false, param: 'reasoning_effort' })
    if (!result.ok) expect(result.message).toContain('"xhigh"')
  })

  test('while Claude thinks, sampling it refuses is left out', () => {
    const request = as('claude-opus-4-6', { reasoning_effort: 'low', temperature: 0.2, top_p: 0.5, top_k: 40 })
    expect([request.temperature, request.top_p, request.top_k]).toEqual([undefined, undefined, undefined])
    const kept = as('claude-opus-4-6', { reasoning_effort: 'low', temperature: 1 })
    expect(kept.temperature).toBe(1)
    expect(as('claude-opus-4-6', { reasoning_effort: 'low', top_p: 0.97 }).top_p).toBe(0.97)
    // Without thinking, sampling goes as before.
    expect(as('claude-opus-4-6', { temperature: 0.2, top_k: 40 })).toMatchObject({ temperature: 0.2, top_k: 40 })
  })

  test('a forced tool call cannot go with thinking: refused, naming what to do', () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }]
    for (const body of [
      { tools, tool_choice: 'required' },
      { tools, tool_choice: { type: 'function', function: { name: 'lookup' } } },
      { response_format: { type: 'json_object' } },
    ]) {
      const result = toAnthropicRequest({ model: 'claude-opus-4-7', messages, reasoning_effort: 'high', ...body }, options)
      expect(result).toMatchObject({ ok: false, param: 'reasoning_effort' })
      if (!result.ok) expect(result.message).toContain('tool_choice "auto"')
    }
    expect(as('claude-opus-4-7', { tools, tool_choice: 'auto', reasoning_effort: 'high' }).thinking).toEqual({ type: 'adaptive' })
  })

  const signed = { type: 'thinking', thinking: 'Weather first.', signature: 'sig-1' }
  const loop = (assistant: Record<string, unknown>) => [
    { role: 'user', content: 'weather?' },
    { role: 'assistant', content: null, tool_calls: [call('t1')], ...assistant },
    { role: 'tool', tool_call_id: 't1', content: 'sunny' },
  ]

  test('thinking_blocks sent back go first in their assistant turn, signed', () => {
    const result = toAnthropicRequest({ model: 'claude-opus-4-7', reasoning_effort: 'high', messages: loop({ thinking_blocks: [signed, { type: 'redacted_thinking', data: 'enc' }, { type: 'thinking', thinking: 'no signature' }] }) }, options)
    if (!result.ok) throw new Error(result.message)
    expect(result.value.thinking).toEqual({ type: 'adaptive' })
    expect(result.value.messages[1]?.content).toEqual([
      signed,
      { type: 'redacted_thinking', data: 'enc' },
      { type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'x' } },
    ])
  })

  test('a tool loop whose thinking the client dropped goes without thinking (Anthropic would refuse it)', () => {
    const result = toAnthropicRequest({ model: 'claude-opus-4-7', reasoning_effort: 'high', messages: loop({}) }, options)
    if (!result.ok) throw new Error(result.message)
    expect(result.value.thinking).toBeUndefined()
    expect(result.value.output_config).toBeUndefined()
  })

  test('without thinking, replayed thinking blocks are left out, and a turn of nothing else with them', () => {
    const result = toAnthropicRequest({
      model: 'claude-opus-4-7',
      messages: [...loop({ thinking_blocks: [signed] }), { role: 'assistant', content: '', thinking_blocks: [signed] }, { role: 'user', content: 'and tomorrow?' }],
    }, options)
    if (!result.ok) throw new Error(result.message)
    expect(result.value.messages.map((m) => [m.role, m.content.map((b) => b.type)])).toEqual([
      ['user', ['text']],
      ['assistant', ['tool_use']],
      ['user', ['tool_result', 'text']],
    ])
  })
})
