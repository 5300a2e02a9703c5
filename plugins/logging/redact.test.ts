import { describe, expect, test } from 'bun:test'
import { MASKED, redactBody } from './redact.ts'

describe('redactBody', () => {
  test('message contents, prompts and inputs become their length; parameters stay', () => {
    const body = {
      model: 'gpt-4o',
      max_tokens: 100,
      max_completion_tokens: 50,
      temperature: 0.2,
      stream: true,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: [{ type: 'text', text: 'my card is 4111 1111 1111 1111' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"q":"secret plan"}' } }] },
      ],
    }
    expect(redactBody(body)).toEqual({
      model: 'gpt-4o',
      max_tokens: 100,
      max_completion_tokens: 50,
      temperature: 0.2,
      stream: true,
      messages: [
        { role: 'system', content: '[14 chars]' },
        { role: 'user', content: [{ type: 'text', text: '[30 chars]' }, { type: 'image_url', image_url: { url: '[26 chars]' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '[19 chars]' } }] },
      ],
    })
  })

  test('legacy prompts and embedding inputs, as text or token ids', () => {
    expect(redactBody({ model: 'm', prompt: 'hello' })).toEqual({ model: 'm', prompt: '[5 chars]' })
    expect(redactBody({ model: 'm', input: ['a', 'bcd'] })).toEqual({ model: 'm', input: ['[1 chars]', '[3 chars]'] })
    expect(redactBody({ model: 'm', input: [1, 2, 3] })).toEqual({ model: 'm', input: '[3 tokens]' })
  })

  test('keys are masked wherever they appear, by value and by field name', () => {
    const out = JSON.stringify(
      redactBody({
        model: 'm',
        user: 'sk-dev-abcdefghijklmnopqrstuvwxyz0123456789',
        metadata: { api_key: 'anything', note: 'Bearer abc.def', password: 'hunter2', nested: { token: 'x1' } },
        tools: [{ type: 'function', function: { name: 'f', description: 'uses sk-proj-ABCDEFGHIJKLMNOP inside' } }],
      }),
    )
    for (const secret of ['sk-dev-abcdefghij', 'anything', 'Bearer abc', 'hunter2', 'x1', 'sk-proj-ABCDEFGH']) expect(out).not.toContain(secret)
    expect(out.split(MASKED).length - 1).toBe(6)
  })

  test('camelCase field names of secrets are masked too; names that only contain the word are not', () => {
    const secrets = ['clientSecret', 'accessToken', 'authToken', 'secretKey', 'privateKey', 'sessionToken', 'apiKey', 'APIKey', 'openAIKey', 'awsSecretAccessKey', 'refreshToken', 'xApiKey', 'clientSECRET']
    const body = { model: 'm', metadata: Object.fromEntries(secrets.map((name, i) => [name, `value-${i}`])) }
    expect(redactBody(body)).toEqual({ model: 'm', metadata: Object.fromEntries(secrets.map((name) => [name, MASKED])) })
    // A word inside another word is no boundary, and a plural count is no secret.
    const kept = { monkey: 'banana', keyboard: 'qwerty', maxTokens: 'five', tokenizer: 'cl100k', secretary: 'Ann', authorName: 'Bo' }
    expect(redactBody(kept)).toEqual(kept)
  })

  test('bounded: deep nesting, long arrays and long strings are cut', () => {
    let deep: unknown = 'bottom'
    for (let i = 0; i < 20; i++) deep = { d: deep }
    const out = JSON.stringify(redactBody({ model: 'm', deep, list: Array.from({ length: 100 }, (_, i) => i), long: 'x'.repeat(5000) }))
    expect(out).toContain('[nested]')
    expect(out).toContain('[+36 more]')
    expect(out).toContain('[5000 chars]')
    expect(out.length).toBeLessThan(2000)
  })
})
