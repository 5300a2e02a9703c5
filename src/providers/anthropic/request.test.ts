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
    expect(refused({ messages: [{ role: 'system', content: 'only a system prompt' }] }).param).toBe('messages')
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
      logprobs: true,
      response_format: { type: 'json_object' },
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
    expect(refused({ ...user('x'), response_format: { type: 'json_schema', json_schema: { schema: {} } } }).param).toBe('response_format')
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
