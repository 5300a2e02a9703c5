import { describe, expect, test } from 'bun:test'
import { finishReason, toChatCompletion, toErrorResponse, usageOf } from './response.ts'
import { UPSTREAM_STATUS_HEADER } from '../shared/openai-format.ts'

describe('finishReason', () => {
  test('maps every stop_reason', () => {
    expect(finishReason('end_turn')).toBe('stop')
    expect(finishReason('stop_sequence')).toBe('stop')
    expect(finishReason('pause_turn')).toBe('stop')
    expect(finishReason('max_tokens')).toBe('length')
    expect(finishReason('model_context_window_exceeded')).toBe('length')
    expect(finishReason('tool_use')).toBe('tool_calls')
    expect(finishReason('refusal')).toBe('content_filter')
    expect(finishReason(null)).toBe('stop')
  })
})

describe('usageOf', () => {
  test('prompt tokens are input + cache reads + cache writes; reads are cached_tokens, writes cache_creation_input_tokens', () => {
    expect(usageOf({ input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 100, cache_creation_input_tokens: 20 })).toEqual({
      prompt_tokens: 130,
      completion_tokens: 5,
      total_tokens: 135,
      prompt_tokens_details: { cached_tokens: 100 },
      cache_creation_input_tokens: 20,
    })
    expect(usageOf({ input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0 })).not.toHaveProperty('cache_creation_input_tokens')
    // No usage reported is no usage, not zeros: the gateway then counts for itself.
    expect(usageOf(undefined)).toBeUndefined()
  })
})

describe('toChatCompletion', () => {
  test('joins text blocks, turns tool_use into tool_calls, thinking into reasoning_content and thinking_blocks', () => {
    const completion = toChatCompletion(
      {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-x-2025',
        content: [
          { type: 'thinking', thinking: 'hmm', signature: 'sig' },
          { type: 'redacted_thinking', data: 'encrypted' },
          { type: 'thinking', thinking: ', weather.', signature: 'sig2' },
          { type: 'text', text: 'Let me ' },
          { type: 'text', text: 'check.' },
          { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris', days: 2 } },
        ],
        stop_reason: 'tool_use',
        usage: { input_tokens: 3, output_tokens: 4 },
      },
      'fallback',
    )
    expect(completion).toMatchObject({
      id: 'msg_1',
      object: 'chat.completion',
      model: 'claude-x-2025',
      choices: [
        {
          index: 0,
          logprobs: null,
          finish_reason: 'tool_calls',
          message: {
            role: 'assistant',
            content: 'Let me check.',
            refusal: null,
            tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":2}' } }],
            reasoning_content: 'hmm, weather.',
            thinking_blocks: [
              { type: 'thinking', thinking: 'hmm', signature: 'sig' },
              { type: 'redacted_thinking', data: 'encrypted' },
              { type: 'thinking', thinking: ', weather.', signature: 'sig2' },
            ],
          },
        },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    })
    expect(typeof completion.created).toBe('number')
  })

  test('only tool calls: content is null; nothing at all: content is an empty string', () => {
    const tools = toChatCompletion({ content: [{ type: 'tool_use', id: 't', name: 'f', input: {} }], stop_reason: 'tool_use' }, 'm')
    expect(tools.choices[0]?.message.content).toBeNull()
    expect(tools.choices[0]?.message.tool_calls?.[0]?.function.arguments).toBe('{}')
    expect(tools.model).toBe('m')
    const empty = toChatCompletion({ content: [], stop_reason: 'end_turn' }, 'm')
    expect(empty.choices[0]?.message).toEqual({ role: 'assistant', content: '', refusal: null })
  })
})

describe('toChatCompletion with a JSON answer (response_format)', () => {
  test('the answer tool\'s input is the content, as JSON text, and the finish is stop', () => {
    const completion = toChatCompletion(
      {
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris', temp: 21 } }],
        stop_reason: 'tool_use',
        usage: { input_tokens: 3, output_tokens: 4 },
      },
      'm',
      'weather',
    )
    expect(completion.choices[0]).toMatchObject({ finish_reason: 'stop', message: { role: 'assistant', content: '{"city":"Paris","temp":21}' } })
    expect(completion.choices[0]?.message.tool_calls).toBeUndefined()
  })

  test('an answer cut by max_tokens still finishes with length', () => {
    const completion = toChatCompletion({ content: [{ type: 'tool_use', id: 't', name: 'json_answer', input: {} }], stop_reason: 'max_tokens' }, 'm', 'json_answer')
    expect(completion.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: '{}' } })
  })
})

const errorOf = async (res: Response) => (await res.json()) as { error: { message: string; type: string } }

describe('toErrorResponse', () => {
  test('keeps the status and message, in OpenAI shape, with rate-limit headers', async () => {
    const headers = new Headers({ 'retry-after': '12', 'anthropic-ratelimit-tokens-remaining': '0', 'x-secret-internal': 'no' })
    const res = toErrorResponse(429, JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } }), headers)
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('12')
    expect(res.headers.get('anthropic-ratelimit-tokens-remaining')).toBe('0')
    expect(res.headers.get('x-secret-internal')).toBeNull()
    // Anthropic's type is no code: the gateway's own says more to OpenAI clients.
    expect(await res.json()).toEqual({ error: { message: 'slow down', type: 'rate_limit_error', param: null, code: null } })
  })

  test('529 overloaded is a 503 that says it was a 529; a body that is not JSON still gives a message', async () => {
    const overloaded = toErrorResponse(529, JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }), new Headers())
    expect(overloaded.status).toBe(503)
    expect(overloaded.headers.get(UPSTREAM_STATUS_HEADER)).toBe('529')
    expect(await overloaded.json()).toMatchObject({ error: { message: 'Overloaded', type: 'api_error', code: null } })
    const html = toErrorResponse(502, '<html>bad gateway</html>', new Headers())
    expect((await errorOf(html)).error.message).toBe('<html>bad gateway</html>')
    const empty = toErrorResponse(500, '', new Headers())
    expect((await errorOf(empty)).error.message).toBe('Anthropic answered HTTP 500.')
  })

  test('an organisation out of credit is a fault of the key (403), not of the request', async () => {
    // Anthropic answers this as a 400 invalid_request_error; the client's request is fine.
    const credit = 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.'
    const noCredit = toErrorResponse(400, JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: credit } }), new Headers())
    expect(noCredit.status).toBe(403)
    expect(await noCredit.json()).toMatchObject({ error: { message: credit, type: 'permission_error' } })
    const billing = toErrorResponse(402, JSON.stringify({ type: 'error', error: { type: 'billing_error', message: 'Payment required' } }), new Headers())
    expect(billing.status).toBe(403)
    // Any other 400 stays a 400.
    const bad = toErrorResponse(400, JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } }), new Headers())
    expect(bad.status).toBe(400)
  })
})
