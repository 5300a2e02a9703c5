import { describe, expect, test } from 'bun:test'
import { SKIP_THOUGHT_SIGNATURE, checksThoughtSignatures, guessMimeType, modelPath, toGeminiEmbedRequest, toGeminiRequest, type GeminiRequest } from './request.ts'

function ok(body: Record<string, unknown>, options = {}): GeminiRequest {
  const result = toGeminiRequest(body, options)
  if (!result.ok) throw new Error(`refused: ${result.message}`)
  return result.value
}

function refused(body: Record<string, unknown>): { message: string; param: string | null } {
  const result = toGeminiRequest(body)
  if (result.ok) throw new Error('expected a refusal')
  return result
}

const call = (id: string, name: string, args = '{}', extra?: unknown) => ({ id, type: 'function', function: { name, arguments: args }, ...(extra ? { extra_content: extra } : {}) })

describe('toGeminiRequest', () => {
  test('parallel tool results merge into one user turn of functionResponses, named from the calls', () => {
    const request = ok({
      messages: [
        { role: 'user', content: 'both please' },
        { role: 'assistant', content: 'On it.', tool_calls: [call('c1', 'weather', '{"city":"Oslo"}'), call('c2', 'time')] },
        { role: 'tool', tool_call_id: 'c2', content: '12:00' },
        { role: 'tool', tool_call_id: 'c1', content: '{"temp": 3}' },
      ],
    })
    expect(request.contents).toEqual([
      { role: 'user', parts: [{ text: 'both please' }] },
      // The client's ids go along (Gemini pairs a result with its call by id where there is one).
      { role: 'model', parts: [{ text: 'On it.' }, { functionCall: { id: 'c1', name: 'weather', args: { city: 'Oslo' } } }, { functionCall: { id: 'c2', name: 'time', args: {} } }] },
      {
        role: 'user',
        parts: [
          // In the order of the calls; plain text results are wrapped, JSON objects are sent as the response itself.
          { functionResponse: { id: 'c1', name: 'weather', response: { temp: 3 } } },
          { functionResponse: { id: 'c2', name: 'time', response: { content: '12:00' } } },
        ],
      },
    ])
  })

  test("a tool call's id (Gemini's own, as the client got it) goes back on its functionCall and the functionResponse that answers it; one the gateway made does not", () => {
    const made = 'call_0123456789abcdef01234567'
    const request = ok({
      messages: [
        { role: 'user', content: 'both please' },
        { role: 'assistant', content: null, tool_calls: [call('function-call-123', 'weather', '{"city":"Oslo"}'), call(made, 'time')] },
        { role: 'tool', tool_call_id: made, content: '12:00' },
        { role: 'tool', tool_call_id: 'function-call-123', content: '{"temp": 3}' },
      ],
    })
    expect(request.contents.slice(1)).toEqual([
      { role: 'model', parts: [{ functionCall: { id: 'function-call-123', name: 'weather', args: { city: 'Oslo' } } }, { functionCall: { name: 'time', args: {} } }] },
      {
        role: 'user',
        parts: [
          { functionResponse: { id: 'function-call-123', name: 'weather', response: { temp: 3 } } },
          { functionResponse: { name: 'time', response: { content: '12:00' } } },
        ],
      },
    ])
    // A result whose call is not in the history goes by its name, without an id Gemini never gave.
    const orphan = ok({ messages: [{ role: 'user', content: 'q' }, { role: 'tool', tool_call_id: 'function-call-9', name: 'f', content: 'x' }] })
    expect(orphan.contents[0]?.parts[1]).toEqual({ functionResponse: { name: 'f', response: { content: 'x' } } })
  })

  test('results of two calls of one function answered out of order go in call order; an unknown call keeps its place after them', () => {
    const request = ok({
      messages: [
        { role: 'user', content: 'q' },
        { role: 'assistant', tool_calls: [call('a', 'f', '{"n":1}'), call('b', 'f', '{"n":2}'), call('c', 'f', '{"n":3}')] },
        { role: 'tool', tool_call_id: 'c', content: 'three' },
        { role: 'tool', tool_call_id: 'x', name: 'f', content: 'unknown' },
        { role: 'tool', tool_call_id: 'a', content: 'one' },
        { role: 'tool', tool_call_id: 'b', content: 'two' },
      ],
    })
    expect(request.contents[2]?.parts.map((part) => (part.functionResponse as { response: { content: string } }).response.content)).toEqual(['one', 'two', 'three', 'unknown'])
  })

  test('a thought signature in extra_content goes back on its functionCall part', () => {
    const request = ok({
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', content: null, tool_calls: [call('c1', 'f', '{}', { google: { thought_signature: 'c2ln' } })] },
        { role: 'tool', tool_call_id: 'c1', content: 'done' },
      ],
    })
    expect(request.contents[1]?.parts[0]).toEqual({ functionCall: { id: 'c1', name: 'f', args: {} }, thoughtSignature: 'c2ln' })
  })

  test('a replayed step whose calls lost their thought signature gets the skip value on its first call (Gemini 3 and later)', () => {
    const history = (model: string) => ({
      model,
      messages: [
        { role: 'user', content: 'go' },
        // As LangChain and most OpenAI clients send it back: no extra_content.
        { role: 'assistant', content: 'Checking.', tool_calls: [call('c1', 'f'), call('c2', 'g')] },
        { role: 'tool', tool_call_id: 'c1', content: 'a' },
        { role: 'tool', tool_call_id: 'c2', content: 'b' },
        { role: 'assistant', content: null, tool_calls: [call('c3', 'f', '{}', { google: { thought_signature: 'real' } }), call('c4', 'g')] },
        { role: 'tool', tool_call_id: 'c3', content: 'a' },
        { role: 'tool', tool_call_id: 'c4', content: 'b' },
      ],
    })
    const parts = (model: string) => ok(history(model)).contents.filter((c) => c.role === 'model').map((c) => c.parts)
    expect(parts('gemini-3-pro-preview')).toEqual([
      [{ text: 'Checking.' }, { functionCall: { id: 'c1', name: 'f', args: {} }, thoughtSignature: SKIP_THOUGHT_SIGNATURE }, { functionCall: { id: 'c2', name: 'g', args: {} } }],
      // A real signature is kept, and the step needs no other.
      [{ functionCall: { id: 'c3', name: 'f', args: {} }, thoughtSignature: 'real' }, { functionCall: { id: 'c4', name: 'g', args: {} } }],
    ])
    // Older models never check, and get the history as it was.
    expect(parts('gemini-2.5-flash')[0]).toEqual([{ text: 'Checking.' }, { functionCall: { id: 'c1', name: 'f', args: {} } }, { functionCall: { id: 'c2', name: 'g', args: {} } }])
  })

  test('checksThoughtSignatures: every model but Gemini 1.x and 2.x, aliases included', () => {
    for (const model of ['gemini-3-pro-preview', 'gemini-3.1-flash', 'gemini-flash-latest', 'models/gemini-3-flash']) expect(checksThoughtSignatures(model)).toBe(true)
    for (const model of ['gemini-2.5-pro', 'gemini-2.0-flash-001', 'gemini-1.5-flash', 'models/gemini-2.5-flash']) expect(checksThoughtSignatures(model)).toBe(false)
  })

  test('a JPEG data URL written as image/jpg goes as image/jpeg, the only name Gemini takes', () => {
    const request = ok({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'data:image/jpg;base64,/9j/4AAQ' } },
            { type: 'file', file: { file_data: 'data:image/JPG;base64,/9j/4AAQ' } },
          ],
        },
      ],
    })
    expect(request.contents[0]?.parts).toEqual([
      { inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQ' } },
      { inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQ' } },
    ])
  })

  test('an image of a type Gemini does not take (GIF, BMP, SVG), inline, as a file or linked, is refused naming the part and the types it takes', () => {
    const image = (url: string) => ({ messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url } }] }] })
    for (const url of ['data:image/gif;base64,R0lGODlhAQABAAAAACw=', 'data:image/GIF;base64,R0lGOD', 'data:image/bmp;base64,Qk0=', 'data:image/svg+xml;base64,PHN2Zz4=', 'https://example.com/cat.gif']) {
      const refusal = refused(image(url))
      expect(refusal.param).toBe('messages[0].content[1]')
      for (const type of ['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif']) expect(refusal.message).toContain(type)
    }
    expect(refused(image('data:image/gif;base64,R0lGOD')).message).toContain('image/gif')
    const file = refused({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:image/gif;base64,R0lGOD' } }] }] })
    expect(file).toMatchObject({ param: 'messages[0].content[0]', message: expect.stringContaining('image/webp') })
    // What it takes goes on as before, and a file that is no image (a PDF) is not an image's business.
    for (const type of ['png', 'jpeg', 'webp', 'heic', 'heif']) expect(ok(image(`data:image/${type};base64,AAAA`)).contents[0]?.parts[1]).toEqual({ inlineData: { mimeType: `image/${type}`, data: 'AAAA' } })
    expect(ok({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBE' } }] }] }).contents[0]?.parts).toEqual([{ inlineData: { mimeType: 'application/pdf', data: 'JVBE' } }])
  })

  test('tools: the JSON Schema is sent as parametersJsonSchema; a function without parameters has none', () => {
    const schema = { type: 'object', properties: { q: { type: ['string', 'null'] } }, additionalProperties: false, $schema: 'x' }
    const request = ok({
      messages: [{ role: 'user', content: 'x' }],
      tools: [
        { type: 'function', function: { name: 'search', description: 'Search', parameters: schema } },
        { type: 'function', function: { name: 'ping', parameters: { type: 'object', properties: {} } } },
        { type: 'function', function: { name: 'now' } },
      ],
    })
    expect(request.tools).toEqual([
      { functionDeclarations: [{ name: 'search', description: 'Search', parametersJsonSchema: schema }, { name: 'ping' }, { name: 'now' }] },
    ])
    expect(request.toolConfig).toBeUndefined()
  })

  test('generationConfig from the sampling fields; response_format to a JSON mime type and schema', () => {
    const request = ok({
      model: 'gemini-2.0-flash',
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 5,
      temperature: 1.5,
      top_p: 0.5,
      top_k: 3,
      seed: 7,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      stop: ['a', 'b'],
      n: 2,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
      logprobs: false,
      user: 'ignored',
    })
    expect(request.generationConfig).toEqual({
      maxOutputTokens: 5,
      temperature: 1.5,
      topP: 0.5,
      topK: 3,
      seed: 7,
      presencePenalty: 0.1,
      frequencyPenalty: 0.2,
      stopSequences: ['a', 'b'],
      candidateCount: 2,
      responseMimeType: 'application/json',
      responseJsonSchema: { type: 'object' },
    })
    expect(ok({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }).generationConfig).toEqual({ responseMimeType: 'application/json' })
    expect(ok({ messages: [{ role: 'user', content: 'x' }] }).generationConfig).toBeUndefined()
  })

  test('penalties go to the models that take them (before Gemini 2.5), not to 2.5 and later nor an alias, which refuse them', () => {
    const penalties = (model: string) => ok({ model, messages: [{ role: 'user', content: 'x' }], presence_penalty: 0.5, frequency_penalty: 0.2 }).generationConfig
    expect(penalties('gemini-2.0-flash')).toEqual({ presencePenalty: 0.5, frequencyPenalty: 0.2 })
    expect(penalties('gemini-1.5-pro-002')).toEqual({ presencePenalty: 0.5, frequencyPenalty: 0.2 })
    for (const model of ['gemini-2.5-flash', 'gemini-3-pro-preview', 'gemini-flash-latest']) expect(penalties(model)).toBeUndefined()
  })

  test('reasoning_effort: Gemini 3 and later get a thinkingLevel the model takes, "none" its least, "xhigh" only from Gemini 4', () => {
    const level = (model: string, reasoning_effort: string) =>
      ok({ model, reasoning_effort, messages: [{ role: 'user', content: 'x' }] }).generationConfig?.thinkingConfig
    const efforts = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh']
    // Flash takes all four levels; Gemini 3 Pro only low and high; Gemini 3.1 Pro low, medium and high.
    const expected: Record<string, string[]> = {
      'gemini-3-flash-preview': ['minimal', 'minimal', 'low', 'medium', 'high', 'high'],
      'gemini-3-pro-preview': ['low', 'low', 'low', 'high', 'high', 'high'],
      'models/gemini-3-pro-preview': ['low', 'low', 'low', 'high', 'high', 'high'],
      'gemini-3.1-pro-preview': ['low', 'low', 'low', 'medium', 'high', 'high'],
    }
    for (const [model, levels] of Object.entries(expected)) {
      efforts.forEach((effort, i) => {
        const thinkingLevel = levels[i]
        expect([model, effort, level(model, effort)]).toEqual([model, effort, effort === 'none' ? { thinkingLevel } : { thinkingLevel, includeThoughts: true }])
      })
    }
    expect(level('gemini-4-pro', 'xhigh')).toEqual({ thinkingLevel: 'xhigh', includeThoughts: true })
    expect(level('gemini-4-pro', 'none')).toEqual({ thinkingLevel: 'low' })
    expect(level('gemini-4-flash', 'none')).toEqual({ thinkingLevel: 'minimal' })
    // An alias without a version is taken for the newest generation, but not trusted with "xhigh".
    expect(level('gemini-flash-latest', 'medium')).toEqual({ thinkingLevel: 'medium', includeThoughts: true })
    expect(level('gemini-flash-latest', 'xhigh')).toEqual({ thinkingLevel: 'high', includeThoughts: true })
    expect(level('gemini-pro-latest', 'minimal')).toEqual({ thinkingLevel: 'low', includeThoughts: true })
    expect(level('gemini-pro-latest', 'medium')).toEqual({ thinkingLevel: 'medium', includeThoughts: true })
  })

  test('reasoning_effort: Gemini 2.5 gets a thinkingBudget ("none" turns thinking off); Gemini 2.0 and older get no thinkingConfig', () => {
    const config = (model: string, reasoning_effort: string) =>
      ok({ model, reasoning_effort, temperature: 0.5, messages: [{ role: 'user', content: 'x' }] }).generationConfig
    const budgets: Array<[string, number]> = [
      ['none', 0],
      ['minimal', 1024],
      ['low', 1024],
      ['medium', 8192],
      ['high', 24576],
      ['xhigh', 24576],
    ]
    for (const [effort, thinkingBudget] of budgets) {
      // The other fields stay; a 2.5 model never gets a thinkingLevel beside its budget.
      expect(config('gemini-2.5-flash', effort)).toEqual({
        temperature: 0.5,
        thinkingConfig: effort === 'none' ? { thinkingBudget } : { thinkingBudget, includeThoughts: true },
      })
    }
    expect(config('models/gemini-2.5-pro', 'high')?.thinkingConfig).toEqual({ thinkingBudget: 24576, includeThoughts: true })
    // 2.5 Pro cannot stop thinking (Google refuses a budget of 0): none is its least budget.
    expect(config('gemini-2.5-pro', 'none')?.thinkingConfig).toEqual({ thinkingBudget: 128 })
    for (const model of ['gemini-2.0-flash', 'gemini-1.5-pro']) expect(config(model, 'high')).toEqual({ temperature: 0.5 })
    // Unset (or null) sends no thinkingConfig at all: the model's default.
    expect(ok({ model: 'gemini-3-pro-preview', messages: [{ role: 'user', content: 'x' }] }).generationConfig).toBeUndefined()
    expect(ok({ model: 'gemini-2.5-flash', reasoning_effort: null, messages: [{ role: 'user', content: 'x' }] }).generationConfig).toBeUndefined()
  })

  test('a reasoning_effort OpenAI does not define is refused, whatever the model', () => {
    for (const model of ['gemini-3-pro-preview', 'gemini-2.5-flash', 'gemini-2.0-flash']) {
      const refusal = refused({ model, reasoning_effort: 'max', messages: [{ role: 'user', content: 'x' }] })
      expect(refusal.param).toBe('reasoning_effort')
      expect(refusal.message).toContain('reasoning_effort')
    }
    expect(refused({ reasoning_effort: 3, messages: [{ role: 'user', content: 'x' }] }).param).toBe('reasoning_effort')
  })

  test('audio and PDF parts go inline; safety settings from the provider options', () => {
    const request = ok(
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'input_audio', input_audio: { data: 'AAAA', format: 'mp3' } },
              { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } },
            ],
          },
        ],
      },
      { safetySettings: [{ category: 'HARM_CATEGORY_HARASSMENT', threshold: 'BLOCK_NONE' }] },
    )
    expect(request.contents[0]?.parts).toEqual([
      { inlineData: { mimeType: 'audio/mp3', data: 'AAAA' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
    ])
    expect(request.safetySettings).toEqual([{ category: 'HARM_CATEGORY_HARASSMENT', threshold: 'BLOCK_NONE' }])
  })

  test('JSON beside tools: Gemini before 3 gets json_object left to the prompt and refuses json_schema; Gemini 3 and aliases get both', () => {
    const messages = [{ role: 'user', content: 'x' }]
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string' } } } } }]
    const schema = { type: 'json_schema', json_schema: { name: 'w', schema: { type: 'object' } } }
    expect(ok({ model: 'gemini-2.5-flash', messages, tools, response_format: { type: 'json_object' } }).generationConfig).toBeUndefined()
    expect(refused({ model: 'gemini-2.5-flash', messages, tools, response_format: schema }).param).toBe('response_format')
    expect(ok({ model: 'gemini-2.5-flash', messages, response_format: { type: 'json_object' } }).generationConfig).toEqual({ responseMimeType: 'application/json' })
    for (const model of ['gemini-3-flash-preview', 'gemini-flash-latest']) {
      expect(ok({ model, messages, tools, response_format: schema }).generationConfig).toEqual({ responseMimeType: 'application/json', responseJsonSchema: { type: 'object' } })
    }
  })

  test('system messages alone go as the user turn, without a systemInstruction', () => {
    const request = ok({ messages: [{ role: 'system', content: 'only system' }, { role: 'developer', content: [{ type: 'text', text: 'and this' }] }] })
    expect(request.contents).toEqual([{ role: 'user', parts: [{ text: 'only system' }, { text: 'and this' }] }])
    expect(request.systemInstruction).toBeUndefined()
  })

  test('what Gemini cannot take is refused with the field named', () => {
    const user = (content: unknown) => ({ messages: [{ role: 'user', content }] })
    expect(refused(user([{ type: 'image_url', image_url: { url: 'https://x.test/img' } }])).message).toContain('.png')
    expect(refused(user([{ type: 'file', file: { file_id: 'f' } }])).param).toBe('messages[0].content[0]')
    expect(refused(user([{ type: 'input_audio', input_audio: { data: 'x', format: 'flac' } }])).param).toBe('messages[0].content[0]')
    expect(refused({ messages: [{ role: 'tool', tool_call_id: 'nope', content: 'x' }] }).message).toContain('nope')
    expect(refused({ messages: [{ role: 'system', content: '' }, { role: 'user', content: '' }] }).param).toBe('messages')
    expect(refused({ ...user('x'), response_format: { type: 'json_schema', json_schema: {} } }).param).toBe('response_format')
    expect(refused({ messages: [{ role: 'assistant', content: null, tool_calls: [call('c', 'f', '[1]')] }] }).param).toBe('messages[0].tool_calls[0].function.arguments')
  })

  test('the legacy functions and function_call, and log probabilities, are refused naming the field, not dropped', () => {
    const messages = [{ role: 'user', content: 'x' }]
    const fn = { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }
    expect(refused({ messages, functions: [fn] })).toMatchObject({ param: 'functions', message: expect.stringContaining('"tools"') })
    expect(refused({ messages, function_call: { name: 'get_weather' } })).toMatchObject({ param: 'function_call', message: expect.stringContaining('"tool_choice"') })
    expect(refused({ messages: [...messages, { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } }] }).param).toBe('messages[1].function_call')
    expect(refused({ messages, logprobs: true, top_logprobs: 2 }).param).toBe('logprobs')
    expect(refused({ messages, top_logprobs: 5 }).param).toBe('top_logprobs')
    // What asks for nothing passes.
    expect(ok({ messages, logprobs: false, top_logprobs: 0 }).contents).toHaveLength(1)
    expect(ok({ messages, logprobs: null, functions: null, function_call: null }).contents).toHaveLength(1)
  })

  test('a tool message may name its function itself when the call is not in the history', () => {
    const request = ok({ messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }, { role: 'tool', tool_call_id: 'gone', name: 'f', content: 'r' }] })
    expect(request.contents[2]).toEqual({ role: 'user', parts: [{ functionResponse: { name: 'f', response: { content: 'r' } } }] })
  })
})

describe('helpers', () => {
  test('guessMimeType reads the path extension, ignoring the query', () => {
    expect(guessMimeType('https://x.test/a/b.PNG?x=1')).toBe('image/png')
    expect(guessMimeType('https://x.test/a.jpeg#f')).toBe('image/jpeg')
    expect(guessMimeType('https://x.test/a.webp')).toBe('image/webp')
    expect(guessMimeType('https://x.test/download?file=a.png')).toBeUndefined()
    expect(guessMimeType('not a url')).toBeUndefined()
  })

  test('modelPath adds models/ unless the name has its own collection', () => {
    expect(modelPath('gemini-2.5-flash')).toBe('models/gemini-2.5-flash')
    expect(modelPath('tunedModels/my-model')).toBe('tunedModels/my-model')
  })

  test('toGeminiEmbedRequest: one request per input string; token arrays are refused', () => {
    const result = toGeminiEmbedRequest({ input: 'hello', dimensions: 3 }, 'emb')
    expect(result).toEqual({ ok: true, value: { requests: [{ model: 'models/emb', content: { parts: [{ text: 'hello' }] }, outputDimensionality: 3 }] } })
    expect(toGeminiEmbedRequest({ input: [1, 2, 3] }, 'emb').ok).toBe(false)
    expect(toGeminiEmbedRequest({ input: [] }, 'emb').ok).toBe(false)
  })
})
