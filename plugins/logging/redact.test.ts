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

  test('a long string or field name is never searched: a value over 200 characters is its length, a name over 200 is masked', () => {
    // SECRET_VALUE over a 200 KB value took 13 s of the event loop; nothing of the value is shown either way.
    const long = 'a'.repeat(200_000)
    expect(redactBody({ model: 'm', x_note: long })).toEqual({ model: 'm', x_note: '[200000 chars]' })
    expect(redactBody({ model: 'm', x_note: `${'x'.repeat(300)} sk-live-0123456789abcdef` })).toEqual({ model: 'm', x_note: '[325 chars]' })
    expect(redactBody({ model: 'm', [long]: 1, [`${long}b`]: 2 })).toEqual({ model: 'm', [MASKED]: 1, [`${MASKED} 2`]: 2 })
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
        metadata: { owner: 'sk-dev-abcdefghijklmnopqrstuvwxyz0123456789', api_key: 'anything', note: 'Bearer abc.def', password: 'hunter2', nested: { token: 'x1' } },
        tools: [{ type: 'function', function: { name: 'f', description: 'uses sk-proj-ABCDEFGHIJKLMNOP inside' } }],
      }),
    )
    for (const secret of ['sk-dev-abcdefghij', 'anything', 'Bearer abc', 'hunter2', 'x1', 'sk-proj-ABCDEFGH']) expect(out).not.toContain(secret)
    // The description is a developer's text: its length, which hides the key in it too.
    expect(out.split(MASKED).length - 1).toBe(5)
  })

  test("a model's reasoning and thinking, descriptions, stop sequences, a message author's name and the end user become their length", () => {
    const body = {
      model: 'gpt-4o',
      user: 'alice@example.com',
      stop: 'PRIVATE STOP',
      reasoning_effort: 'high',
      reasoning: { effort: 'high', max_tokens: 2000 },
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [
        { role: 'user', content: 'thanks', name: 'Alice Smith' },
        {
          role: 'assistant',
          content: 'ok',
          reasoning_content: 'PRIVATE REASONING 4111111111111111',
          reasoning: 'PRIVATE REASONING again',
          thinking_blocks: [
            { type: 'thinking', thinking: 'PRIVATE THOUGHT', signature: 'sig-abc' },
            { type: 'redacted_thinking', data: 'ENCRYPTED THOUGHT' },
          ],
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{}' } }],
        },
      ],
      tools: [{ type: 'function', function: { name: 'lookup', description: 'Looks up CUSTOMER 12345', parameters: { type: 'object', properties: { q: { type: 'string', description: 'the SSN 123-45-6789' } }, required: ['q'] } } }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', description: 'PRIVATE FORMAT NOTE', schema: { type: 'object' } } },
    }
    expect(redactBody(body)).toEqual({
      model: 'gpt-4o',
      user: '[17 chars]',
      stop: '[12 chars]',
      reasoning_effort: 'high',
      reasoning: { effort: 'high', max_tokens: 2000 },
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [
        { role: 'user', content: '[6 chars]', name: '[11 chars]' },
        {
          role: 'assistant',
          content: '[2 chars]',
          reasoning_content: '[34 chars]',
          reasoning: '[23 chars]',
          thinking_blocks: [
            { type: 'thinking', thinking: '[15 chars]', signature: '[7 chars]' },
            { type: 'redacted_thinking', data: '[17 chars]' },
          ],
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '[2 chars]' } }],
        },
      ],
      tools: [{ type: 'function', function: { name: 'lookup', description: '[23 chars]', parameters: { type: 'object', properties: { q: { type: 'string', description: '[19 chars]' } }, required: ['q'] } } }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', description: '[19 chars]', schema: { type: 'object' } } },
    })
    expect(redactBody({ model: 'm', stop: ['one', 'three'] })).toEqual({ model: 'm', stop: ['[3 chars]', '[5 chars]'] })
  })

  test('tokens of well-known shapes and bearer credentials in any case are masked, in values and in field names', () => {
    const secrets = {
      lower_bearer: 'bearer abcdefghijklmnop1234',
      upper_bearer: 'BEARER abcdefghijklmnop1234',
      github: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789',
      github_fine: 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
      gitlab: 'glpat-abcdefghij0123456789',
      google: 'AIzaSyA-abcdefghijklmnopqrstuvwxyz01234',
      slack: 'xoxb-123456789012-abcdefghijkl',
      slack_user: 'xoxp-123456789012-abcdefghijkl',
      aws: 'AKIAIOSFODNN7EXAMPLE',
      stripe: 'sk_live_abcdefghijklmnop',
      anthropic: 'sk-ant-api03-abcdefghijklmnop',
      glued: 'key=sk-proj-abcdefghijklmnop;',
      huggingface: 'hf_abcdefghijklmnopqrstuvwxyz0123456',
      jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig',
      pem: '-----BEGIN RSA PRIVATE KEY-----',
      dsn: 'postgres://app:hunter2@db.internal:5432/app',
    }
    const out = redactBody({ model: 'm', metadata: secrets }) as { metadata: Record<string, unknown> }
    expect(out.metadata).toEqual(Object.fromEntries(Object.keys(secrets).map((k) => [k, MASKED])))

    const keyed = redactBody({ model: 'm', metadata: { 'sk-live-abcdefghijklmnop': 'as key', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789': 'another', plain: 'kept' } })
    expect(keyed).toEqual({ model: 'm', metadata: { [MASKED]: 'as key', [`${MASKED} 2`]: 'another', plain: 'kept' } })

    // Words that merely contain the shapes are not secrets.
    const kept = { task: 'task-management-system', desk: 'risk-assessment-tool', link: 'https://example.com/a:b@c', aws: 'AKIA', ask: 'ask-me-anything-at-all' }
    expect((redactBody({ model: 'm', metadata: kept }) as { metadata: unknown }).metadata).toEqual(kept)
  })

  test('fields named like a password, pw, secret, token, api_key or authorization have their value masked', () => {
    const named = { password: 'hunter2', pw: 'hunter2', pwd: 'hunter2', user_pw: 'hunter2', passphrase: 'open sesame', secret: 's', token: 't', api_key: 'k', authorization: 'a', 'x-api-key': 'k' }
    expect(redactBody({ model: 'm', metadata: named })).toEqual({ model: 'm', metadata: Object.fromEntries(Object.keys(named).map((k) => [k, MASKED])) })
  })

  test("the tester's body: nothing of its text or secrets is left, only lengths and parameters", () => {
    const body = {
      model: 'gpt-4o',
      user: 'alice@example.com',
      metadata: { note: 'bearer abcdefghijklmnop1234', ghp: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789', google: 'AIzaSyA-abcdefghijklmnopqrstuvwxyz01234', 'sk-live-abcdefghijklmnop': 'as key', pw: 'hunter2' },
      messages: [
        { role: 'system', content: 'SECRET SYSTEM PROMPT' },
        { role: 'user', content: [{ type: 'text', text: 'my card 4111111111111111' }] },
        {
          role: 'assistant',
          content: 'ok',
          reasoning_content: "PRIVATE REASONING about the user's card 4111111111111111",
          thinking_blocks: [{ type: 'thinking', thinking: 'PRIVATE THOUGHT 4111111111111111', signature: 'sig' }],
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'tool result' },
        { role: 'user', content: 'thanks', name: 'Alice Smith' },
      ],
      tools: [{ type: 'function', function: { name: 'lookup', description: 'Looks up CUSTOMER ACCOUNT 12345 for jane@corp.com', parameters: { type: 'object', properties: { q: { type: 'string', description: 'the SSN 123-45-6789' } } } } }],
      stop: ['PRIVATE STOP'],
    }
    const out = JSON.stringify(redactBody(body))
    for (const leak of ['PRIVATE', 'SECRET', '4111', 'alice', 'Alice', 'jane', 'CUSTOMER', '123-45', 'hunter2', 'bearer', 'ghp_', 'AIza', 'sk-live', 'tool result', 'thanks']) expect(out).not.toContain(leak)
    for (const kept of ['"model":"gpt-4o"', '"role":"assistant"', '"name":"lookup"', '"tool_call_id":"c1"', '"type":"string"']) expect(out).toContain(kept)
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

  test('bounded in all: a body of many values within every depth and width bound (64 × 64 × 64 × 32 numbers) is cut after its first 5000 values', () => {
    // Each bound alone let 8 million values through: 1.6 s of the event loop and a 17 MB log line, for one request.
    const leaf = Array.from({ length: 32 }, () => 0)
    const wide = Array.from({ length: 64 }, () => Array.from({ length: 64 }, () => Array.from({ length: 64 }, () => leaf)))
    const out = JSON.stringify(redactBody({ model: 'm', metadata: { wide }, messages: [{ role: 'user', content: 'hi' }] }))
    expect(out.length).toBeLessThan(50_000)
    expect(out).toContain('[cut: over 5000 values]')
    // What comes first is shown as before.
    expect(out.startsWith('{"model":"m","metadata":{"wide":[[[[0,0,')).toBe(true)
  })
})
