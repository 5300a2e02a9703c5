import { describe, expect, test } from 'bun:test'
import { brokenCallsOf, finishReason, retryAfterOf, toChatCompletion, toEmbeddingList, toErrorResponse, usageOf } from './response.ts'
import { UPSTREAM_STATUS_HEADER } from '../shared/openai-format.ts'

describe('finishReason', () => {
  test('maps Gemini reasons; a candidate that called functions finished with tool_calls', () => {
    expect(finishReason('STOP', false)).toBe('stop')
    expect(finishReason('STOP', true)).toBe('tool_calls')
    expect(finishReason('MAX_TOKENS', false)).toBe('length')
    for (const reason of ['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII']) expect(finishReason(reason, false)).toBe('content_filter')
    expect(finishReason('OTHER', false)).toBe('stop')
    expect(finishReason(undefined, false)).toBe('stop')
  })
})

describe('usageOf', () => {
  test('prompt includes cached content; thinking counts as completion and reasoning tokens', () => {
    expect(usageOf({ promptTokenCount: 100, candidatesTokenCount: 10, thoughtsTokenCount: 30, cachedContentTokenCount: 60, totalTokenCount: 140 })).toEqual({
      prompt_tokens: 100,
      completion_tokens: 40,
      total_tokens: 140,
      prompt_tokens_details: { cached_tokens: 60 },
      completion_tokens_details: { reasoning_tokens: 30 },
    })
    expect(usageOf(undefined)).toBeUndefined()
  })
})

describe('toChatCompletion', () => {
  test('text parts join (thought summaries left out); function calls become tool calls with ids', () => {
    const completion = toChatCompletion(
      {
        responseId: 'r1',
        modelVersion: 'gemini-x-001',
        candidates: [
          {
            index: 0,
            finishReason: 'STOP',
            content: {
              role: 'model',
              parts: [
                { text: 'thinking about it', thought: true },
                { text: 'Sure. ' },
                { functionCall: { name: 'f', args: { a: 1 } }, thoughtSignature: 'c2ln' },
                { functionCall: { id: 'given-id', name: 'g' } },
              ],
            },
          },
        ],
        usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 6 },
      },
      'fallback',
    )
    expect(completion.id).toBe('chatcmpl-r1')
    expect(completion.model).toBe('gemini-x-001')
    const choice = completion.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    expect(choice.message.content).toBe('Sure. ')
    expect(choice.message.tool_calls?.[0]).toMatchObject({
      type: 'function',
      function: { name: 'f', arguments: '{"a":1}' },
      extra_content: { google: { thought_signature: 'c2ln' } },
    })
    expect(choice.message.tool_calls?.[0]?.id).toMatch(/^call_[0-9a-f]{24}$/)
    expect(choice.message.tool_calls?.[1]).toEqual({ id: 'given-id', type: 'function', function: { name: 'g', arguments: '{}' } })
    expect(completion.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 })
  })

  test('thought summaries go to reasoning_content, joined in order, never into content; a signature-only thought adds nothing', () => {
    const parts = [
      { text: 'First, the question. ', thought: true },
      { text: 'Then the answer.', thought: true },
      { thought: true, thoughtSignature: 'c2ln' },
      { text: 'It is 4.' },
    ]
    const completion = toChatCompletion({ candidates: [{ index: 0, finishReason: 'STOP', content: { role: 'model', parts } }] }, 'gemini-3-pro-preview')
    expect(completion.choices[0]?.message).toEqual({
      role: 'assistant',
      content: 'It is 4.',
      refusal: null,
      reasoning_content: 'First, the question. Then the answer.',
    })
    // Without thoughts the message has no reasoning_content at all.
    const plain = toChatCompletion({ candidates: [{ finishReason: 'STOP', content: { parts: [{ text: 'hi' }, { thought: true, thoughtSignature: 'c2ln' }] } }] }, 'm')
    expect(plain.choices[0]?.message).toEqual({ role: 'assistant', content: 'hi', refusal: null })
  })

  test('brokenCallsOf: every candidate ended on a broken function call with nothing in it; anything else is an answer', () => {
    const broken = (parts: unknown[], finishReason = 'MALFORMED_FUNCTION_CALL') => ({ content: { role: 'model', parts }, finishReason, finishMessage: 'Malformed function call: x()' })
    expect(brokenCallsOf({ candidates: [broken([])] })).toContain('finishReason MALFORMED_FUNCTION_CALL')
    expect(brokenCallsOf({ candidates: [broken([])] })).toContain('(Malformed function call: x())')
    expect(brokenCallsOf({ candidates: [broken([], 'UNEXPECTED_TOOL_CALL')] })).toContain('UNEXPECTED_TOOL_CALL')
    // Reasoning alone is no answer.
    expect(brokenCallsOf({ candidates: [broken([{ text: 'hmm', thought: true }])] })).toBeDefined()
    // Text that came before the broken call is given as it is; so is a candidate beside it that answered.
    expect(brokenCallsOf({ candidates: [broken([{ text: 'Here is' }])] })).toBeUndefined()
    expect(brokenCallsOf({ candidates: [broken([]), { content: { parts: [{ text: 'ok' }] }, finishReason: 'STOP' }] })).toBeUndefined()
    expect(brokenCallsOf({ candidates: [{ content: { parts: [{ text: 'ok' }] }, finishReason: 'STOP' }] })).toBeUndefined()
    expect(brokenCallsOf({ candidates: [] })).toBeUndefined()
  })

  test('a blocked prompt (no candidates) is one empty choice finished by content_filter', () => {
    const completion = toChatCompletion({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 3 } }, 'gemini-y')
    expect(completion.model).toBe('gemini-y')
    expect(completion.choices).toEqual([{ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' }])
  })
})

describe('toEmbeddingList', () => {
  test('unit vectors as they are, or base64 of little-endian float32 as OpenAI sends it', () => {
    const response = { embeddings: [{ values: [0.6, -0.8] }, { values: [1] }] }
    expect(toEmbeddingList(response, 'emb', false)).toEqual({
      object: 'list',
      model: 'emb',
      data: [
        { object: 'embedding', index: 0, embedding: [0.6, -0.8] },
        { object: 'embedding', index: 1, embedding: [1] },
      ],
    })
    const encoded = toEmbeddingList(response, 'emb', true) as { data: Array<{ embedding: string }> }
    const bytes = Buffer.from(encoded.data[0]!.embedding, 'base64')
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4))).toEqual([Math.fround(0.6), Math.fround(-0.8)])
  })

  test('a vector Gemini cut to outputDimensionality (shorter than 1) comes back at unit length; zeros stay zeros', () => {
    const list = toEmbeddingList({ embeddings: [{ values: [0.3, -0.4] }, { values: [0, 0] }] }, 'emb', false) as { data: Array<{ embedding: number[] }> }
    expect(list.data[0]!.embedding[0]).toBeCloseTo(0.6, 12)
    expect(list.data[0]!.embedding[1]).toBeCloseTo(-0.8, 12)
    expect(list.data[1]!.embedding).toEqual([0, 0])
  })
})

const errorOf = async (res: Response) => (await res.json()) as { error: { message: string; type: string } }

describe('errors', () => {
  test('retryAfterOf reads google.rpc.RetryInfo, rounding up', () => {
    expect(retryAfterOf([{ '@type': 'type.googleapis.com/google.rpc.QuotaFailure' }, { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '36.2s' }])).toBe('37')
    expect(retryAfterOf([{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: 'soon' }])).toBeUndefined()
    expect(retryAfterOf(undefined)).toBeUndefined()
  })

  test('keeps the status and message in OpenAI shape; a rejected API key becomes 401', async () => {
    const quota = toErrorResponse(
      429,
      JSON.stringify({ error: { code: 429, message: 'quota', status: 'RESOURCE_EXHAUSTED', details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '5s' }] } }),
      new Headers(),
    )
    expect(quota.status).toBe(429)
    expect(quota.headers.get('retry-after')).toBe('5')
    // Google's status restates the HTTP status: no code (the gateway's own says more).
    expect(await quota.json()).toEqual({ error: { message: 'quota', type: 'rate_limit_error', param: null, code: null } })

    const key = toErrorResponse(
      400,
      JSON.stringify({ error: { code: 400, message: 'API key not valid.', status: 'INVALID_ARGUMENT', details: [{ reason: 'API_KEY_INVALID' }] } }),
      new Headers(),
    )
    expect(key.status).toBe(401)
    expect(key.headers.get(UPSTREAM_STATUS_HEADER)).toBe('400')
    expect((await errorOf(key)).error.type).toBe('authentication_error')

    // The JSON-array form (streamGenerateContent without alt=sse) wraps the error in a list.
    const listed = toErrorResponse(404, JSON.stringify([{ error: { code: 404, message: 'no such model', status: 'NOT_FOUND' } }]), new Headers())
    expect(await listed.json()).toMatchObject({ error: { message: 'no such model', type: 'not_found_error' } })
    expect((await errorOf(toErrorResponse(500, 'oops', new Headers()))).error.message).toBe('oops')
  })
})
