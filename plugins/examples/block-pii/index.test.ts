import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { resolve } from 'node:path'
import { ConfigError } from '../../../src/config/load.ts'
import { startMockUpstream, type MockUpstream } from '../../../test/fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from '../../../test/support/gateway.ts'
import { expectError, postJson } from '../../../test/support/http.ts'
import { blockPii } from './index.ts'

const VISA = '4111 1111 1111 1111' // a test card number: passes Luhn
const ORDER = '4111111111111112' // 16 digits that fail Luhn: an order number, not a card
const LUHN_13 = '4222222222222' // 13 digits that pass Luhn (an old 13-digit Visa test number): too short for a card today

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(() => upstream.stop())
beforeEach(() => upstream.reset())

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'mock-gpt', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content }], max_tokens: 2, ...extra })

describe('block-pii in block mode (the default)', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway(upstreamConfig(upstream.url, { plugins: [blockPii] }))
  })
  afterAll(() => gw.close())

  test('an email address is refused with 400 invalid_request naming the param; the upstream sees nothing', async () => {
    const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat('Mail me at jane.doe@example.com please')), 'invalid_request')
    expect(error.param).toBe('messages[1].content')
    expect(error.message).toContain('email')
    expect(error.message).not.toContain('jane.doe@example.com')
    expect(upstream.stats.requests).toBe(0)
  })

  test('a Luhn-valid card number is refused', async () => {
    const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat(`my card is ${VISA}, charge it`)), 'invalid_request')
    expect(error.param).toBe('messages[1].content')
    expect(error.message).toContain('card')
    expect(upstream.stats.requests).toBe(0)
  })

  test('text parts, legacy prompts and embedding inputs are checked too, each named by its place', async () => {
    const parts = {
      model: 'mock-gpt',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'text', text: 'I am bob@example.org' }] }],
    }
    expect((await expectError(await postJson(`${gw.url}/v1/chat/completions`, parts), 'invalid_request')).param).toBe('messages[0].content[1].text')
    const prompt = { model: 'mock-gpt', prompt: ['fine', `card ${VISA}`] }
    expect((await expectError(await postJson(`${gw.url}/v1/completions`, prompt), 'invalid_request')).param).toBe('prompt[1]')
    const input = { model: 'mock-gpt', input: 'reach me: x@y.io' }
    expect((await expectError(await postJson(`${gw.url}/v1/embeddings`, input), 'invalid_request')).param).toBe('input')
    expect(upstream.stats.requests).toBe(0)
  })

  test('a long number that fails Luhn goes through untouched', async () => {
    const body = chat(`Where is order ${ORDER}?`)
    const res = await postJson(`${gw.url}/v1/chat/completions`, body)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(upstream.stats.requests).toBe(1)
    expect(upstream.stats.lastBody).toEqual(body)
  })

  test('bare digit runs are not phone numbers: arithmetic, order numbers and ISBNs go through untouched', async () => {
    for (const content of ['What is 123456789 * 2?', 'Where is order 4111111111111?', 'ISBN 9780306406157', 'ISBN 978-0-306-40615-7', 'That is 1 234 567 890 in all']) {
      const body = chat(content)
      const res = await postJson(`${gw.url}/v1/chat/completions`, body)
      expect({ content, status: res.status }).toEqual({ content, status: 200 })
      await res.arrayBuffer()
      expect(upstream.stats.lastBody).toEqual(body)
    }
    expect(upstream.stats.requests).toBe(5)
  })

  test('phone numbers in the shapes people write them are refused', async () => {
    for (const phone of ['+1 415 555 0100', '+14155550100', '+44 (0)20 7946 0958', '(415) 555-0100', '415-555-0100', '415.555.0100', '020 7946 0958']) {
      const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat(`call me on ${phone} tomorrow`)), 'invalid_request')
      expect({ phone, message: error.message }).toEqual({ phone, message: expect.stringContaining('(phone)') })
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('a 13-digit number that passes Luhn is not a card (no issuer uses that length any more)', async () => {
    const body = chat(`Where is order ${LUHN_13}?`)
    const res = await postJson(`${gw.url}/v1/chat/completions`, body)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(upstream.stats.lastBody).toEqual(body)
  })

  test('card numbers of each common issuer and length are refused, bare or grouped, also with a CVV after them', async () => {
    for (const card of [VISA, '4111111111111111', '5555-5555-5555-4444', '378282246310005', '6011111111111117', '3566002020360505', `${VISA} 123`]) {
      const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat(`pay with ${card} please`)), 'invalid_request')
      expect({ card, message: error.message }).toEqual({ card, message: expect.stringContaining('(card)') })
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('a clean request goes through untouched', async () => {
    const body = chat('What is the capital of France?')
    const res = await postJson(`${gw.url}/v1/chat/completions`, body)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(upstream.stats.lastBody).toEqual(body)
  })
})

describe('block-pii in redact mode', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway(upstreamConfig(upstream.url, { plugins: [blockPii({ action: 'redact', detect: ['email', 'card'], replacement: '[REDACTED]' })] }))
  })
  afterAll(() => gw.close())

  test('the upstream receives [REDACTED] in place of the email and the card; the rest is intact', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat(`I am jane@example.com, card ${VISA}, order ${ORDER}.`, { temperature: 0.5 }))
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(upstream.stats.lastBody).toEqual(chat(`I am [REDACTED], card [REDACTED], order ${ORDER}.`, { temperature: 0.5 }))
  })

  test('only phone-shaped numbers are redacted as phones; a card is not mistaken for one', async () => {
    const phoneOnly = await startGateway(upstreamConfig(upstream.url, { plugins: [blockPii({ action: 'redact', detect: ['phone'], replacement: '[PHONE]' })] }))
    try {
      const text = `Call (415) 555-0100 or +1 415 555 0100 about order 4111111111111, card ${VISA}, 123456789 * 2.`
      const res = await postJson(`${phoneOnly.url}/v1/chat/completions`, chat(text))
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      expect((upstream.stats.lastBody as { messages: Array<{ content: string }> }).messages[1]?.content).toBe(
        `Call [PHONE] or [PHONE] about order 4111111111111, card ${VISA}, 123456789 * 2.`,
      )
    } finally {
      await phoneOnly.close()
    }
  })

  test('a card followed by its CVV is redacted, the CVV and a 13-digit Luhn-valid number left as they are', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat(`card ${VISA} 123, ref ${LUHN_13}`))
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect((upstream.stats.lastBody as { messages: Array<{ content: string }> }).messages[1]?.content).toBe(`card [REDACTED] 123, ref ${LUHN_13}`)
  })

  test('embedding inputs are redacted element by element', async () => {
    const res = await postJson(`${gw.url}/v1/embeddings`, { model: 'mock-gpt', input: ['a@b.co', 'plain'] })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect((upstream.stats.lastBody as { input: string[] }).input).toEqual(['[REDACTED]', 'plain'])
  })
})

describe('block-pii configuration', () => {
  test('listed in JSON form as {"use": path, "options"}', async () => {
    const gw = await startGateway(
      upstreamConfig(upstream.url, { plugins: [{ use: resolve(import.meta.dir, 'index.ts'), options: { action: 'redact', replacement: '<pii>' } }] }),
    )
    try {
      const res = await postJson(`${gw.url}/v1/chat/completions`, chat('to: a@b.co'))
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      expect((upstream.stats.lastBody as { messages: Array<{ content: string }> }).messages[1]?.content).toBe('to: <pii>')
    } finally {
      await gw.close()
    }
  })

  test('bad options stop the boot, naming the plugin and the option', async () => {
    const error = await startGateway(upstreamConfig(upstream.url, { plugins: [blockPii({ action: 'shred' as 'block', detect: ['email'], replacement: 'x' })] })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([expect.stringContaining('/plugins/0: plugin "block-pii" option /action')])
  })
})
