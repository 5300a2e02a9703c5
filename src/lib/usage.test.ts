import { describe, expect, test } from 'bun:test'
import { Value } from '@sinclair/typebox/value'
import { PricingSchema } from '../config/schema.ts'
import { findServiceTier, findUsage, parseUsage, priceOf, roughPromptTokens, tierPricing } from './usage.ts'

const bytes = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v))

describe('findUsage', () => {
  test('reads the usage object of an OpenAI-format answer without parsing the rest', () => {
    const usage = { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14, prompt_tokens_details: { cached_tokens: 2 } }
    expect(findUsage(bytes({ id: 'x', choices: [{ message: { content: 'hi' } }], usage }))).toEqual(usage)
    expect(findUsage(bytes({ usage, id: 'first' }))).toEqual(usage)
  })

  test('whitespace, and "usage" inside message text, do not fool it', () => {
    const text = `{"choices":[{"message":{"content":"the \\"usage\\": {\\"total_tokens\\": 999} field"}}],\n  "usage" :  {"prompt_tokens": 1, "total_tokens": 3, "note": "a } brace"}\n}`
    expect(findUsage(bytes(text))).toEqual({ prompt_tokens: 1, total_tokens: 3, note: 'a } brace' })
    expect(findUsage(bytes({ choices: [{ message: { content: 'the "usage": {"total_tokens": 999}' } }] }))).toBeUndefined()
  })

  test('none, null usage, or not JSON: undefined', () => {
    expect(findUsage(bytes({ id: 'x' }))).toBeUndefined()
    expect(findUsage(bytes({ usage: null }))).toBeUndefined()
    expect(findUsage(bytes('{"usage": {"total_tokens": 3'))).toBeUndefined()
    expect(findUsage(bytes('not json at all'))).toBeUndefined()
  })

  test("the answer's own usage is preferred to one nested in an object after it (a proxy's metadata.usage)", () => {
    const own = { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 }
    const text = `{"id":"x","usage":${JSON.stringify(own)},"choices":[{"index":0,"message":{"content":"hi"}}],"metadata":{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}`
    expect(findUsage(bytes(text))).toEqual(own)
    // A nested one is taken when the answer states none of its own.
    expect(findUsage(bytes({ choices: [], x_groq: { usage: { total_tokens: 4 } } }))).toEqual({ total_tokens: 4 })
    // An array after the usage (an answer's own fields) does not hide that it is the answer's.
    expect(findUsage(bytes({ usage: own, choices: [{ index: 0 }], tags: [[1], { a: [2] }] }))).toEqual(own)
  })

  test('a string value "usage" after the usage key is passed over, not taken for the end of the search', () => {
    const own = { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 }
    expect(findUsage(bytes({ choices: [], usage: own, service_tier: 'usage' }))).toEqual(own)
    expect(findUsage(bytes({ choices: [], usage: own, note: ['usage', { k: 'usage' }] }))).toEqual(own)
  })

  test('works on a view into a larger buffer', () => {
    const big = new Uint8Array(100)
    const inner = bytes({ usage: { total_tokens: 7 } })
    big.set(inner, 10)
    expect(findUsage(big.subarray(10, 10 + inner.length))).toEqual({ total_tokens: 7 })
  })
})

describe('roughPromptTokens', () => {
  // Bodies without escapes or numbers: the estimate reads the JSON length exactly, from string lengths.
  const bodies: Record<string, unknown>[] = [
    { model: 'm', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }] },
    { model: 'm', messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }] },
    { model: 'm', messages: [] },
    { model: 'm', input: ['one', 'two', 'three'] },
    { model: 'm', messages: [{ role: 'user', content: 'x', name: undefined }] },
  ]
  test('4 characters a token of the prompt part as JSON text', () => {
    for (const body of bodies) {
      const source = body.messages ?? body.input
      expect(roughPromptTokens(body)).toBe(Math.ceil(JSON.stringify(source).length / 4))
    }
  })
  test('an image counts 765 tokens whatever its URL: a link and a 750 KB base64 data URL alike, not their text', () => {
    const withImage = (url: string) => ({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url } }] }] })
    const link = roughPromptTokens(withImage('https://example.com/a.png'))
    expect(roughPromptTokens(withImage(`data:image/png;base64,${'A'.repeat(1_000_000)}`))).toBe(link)
    // The text part and the JSON around it as characters, the image as 765 tokens.
    const around = JSON.stringify([{ role: 'user', content: [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: '' }] }]).length - 2
    expect(link).toBe(Math.ceil((around + 765 * 4) / 4))
  })
  test('an audio or file part counts its type and not its payload, as the exact counter (no published rule)', () => {
    const withPart = (part: Record<string, unknown>) => ({ model: 'm', messages: [{ role: 'user', content: [part] }] })
    const data = 'A'.repeat(1_000_000)
    const audio = roughPromptTokens(withPart({ type: 'input_audio', input_audio: { data, format: 'wav' } }))
    const file = roughPromptTokens(withPart({ type: 'file', file: { filename: 'a.pdf', file_data: `data:application/pdf;base64,${data}` } }))
    expect(audio).toBe(Math.ceil(JSON.stringify([{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }]).length / 4))
    expect(file).toBe(Math.ceil(JSON.stringify([{ role: 'user', content: [{ type: 'file', file: {} }] }]).length / 4))
  })
  test('token ids count one token each: one tokenized text or several, whatever their digits', () => {
    expect(roughPromptTokens({ prompt: [100_000, 200_000, 3] })).toBe(3)
    expect(roughPromptTokens({ input: [[100_000, 2], [3], [44_444, 5, 6]] })).toBe(6)
    // Strings and messages are no token ids.
    expect(roughPromptTokens({ input: ['abcdefgh'] })).toBe(Math.ceil(JSON.stringify(['abcdefgh']).length / 4))
  })
  test('a string prompt counts its characters; no prompt counts 0; deep nesting still counts', () => {
    expect(roughPromptTokens({ prompt: 'abcdefgh' })).toBe(2)
    expect(roughPromptTokens({ model: 'm' })).toBe(0)
    let deep: unknown = 'leaf'
    for (let i = 0; i < 100; i++) deep = [deep]
    expect(roughPromptTokens({ input: deep })).toBe(Math.ceil(JSON.stringify(deep).length / 4))
  })
})

describe('priceOf', () => {
  const sonnet = { input: 3, output: 15, cached_input: 0.3 }

  test('cache writes (part of the prompt) cost 1.25 x input by default, cache_write_input when set', () => {
    // Anthropic's bill: 100 input at 3, 10,000 written at 3.75, 100 output at 15.
    expect(priceOf(10_100, 100, 0, sonnet, 10_000)).toBeCloseTo(0.0393, 10)
    expect(priceOf(10_100, 100, 0, { ...sonnet, cache_write_input: 6 }, 10_000)).toBeCloseTo((100 * 3 + 10_000 * 6 + 100 * 15) / 1e6, 10)
    // Reads and writes in one prompt: each at its own price, the rest at input.
    expect(priceOf(1_300, 0, 1_000, sonnet, 200)).toBeCloseTo((100 * 3 + 1_000 * 0.3 + 200 * 3.75) / 1e6, 10)
    expect(priceOf(10_100, 100, 0, sonnet)).toBeCloseTo((10_100 * 3 + 100 * 15) / 1e6, 10)
  })

  test('parseUsage derives the prompt from the total when a server states only the total and the completion', () => {
    expect(parseUsage({ completion_tokens: 5, total_tokens: 16 }, undefined)).toMatchObject({ promptTokens: 11, completionTokens: 5, totalTokens: 16 })
    expect(parseUsage({ total_tokens: 16 }, undefined)).toMatchObject({ promptTokens: 16, completionTokens: 0, totalTokens: 16 })
    // A stated prompt is taken as it is, even 0.
    expect(parseUsage({ prompt_tokens: 0, completion_tokens: 5, total_tokens: 16 }, undefined)).toMatchObject({ promptTokens: 0, completionTokens: 5 })
  })

  test('audio tokens (parts of prompt_tokens and completion_tokens, as gpt-4o-audio and gpt-realtime report them) cost audio_input and audio_output when set', () => {
    const audio = { input: 2.5, output: 10, cached_input: 1.25, audio_input: 40, audio_output: 80 }
    expect(Value.Check(PricingSchema, audio)).toBe(true)
    const raw = {
      prompt_tokens: 1_100,
      completion_tokens: 600,
      total_tokens: 1_700,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 1_000 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 500 },
    }
    // OpenAI's bill: 100 text in at 2.5, 1000 audio in at 40, 100 text out at 10, 500 audio out at 80.
    expect(parseUsage(raw, audio)?.costUsd).toBeCloseTo((100 * 2.5 + 1_000 * 40 + 100 * 10 + 500 * 80) / 1e6, 12)
    // Without audio prices, audio costs what text does, as before.
    expect(parseUsage(raw, { input: 2.5, output: 10 })?.costUsd).toBeCloseTo((1_100 * 2.5 + 600 * 10) / 1e6, 12)
    // Cache hits are priced as such first; the audio is then at most what is left of the prompt.
    const cached = { ...raw, prompt_tokens_details: { cached_tokens: 1_000, audio_tokens: 1_000 } }
    expect(parseUsage(cached, audio)?.costUsd).toBeCloseTo((1_000 * 1.25 + 100 * 40 + 100 * 10 + 500 * 80) / 1e6, 12)
  })

  test('parseUsage prices the cache_creation_input_tokens an OpenAI-format usage carries', () => {
    const usage = parseUsage({ prompt_tokens: 10_100, completion_tokens: 100, total_tokens: 10_200, cache_creation_input_tokens: 10_000 }, sonnet)
    expect(usage).toMatchObject({ promptTokens: 10_100, cachedTokens: 0, totalTokens: 10_200 })
    expect(usage?.costUsd).toBeCloseTo(0.0393, 10)
  })
})

describe('service tiers', () => {
  const tiered = { input: 1.25, output: 10, cached_input: 0.125, service_tiers: { flex: { input: 0.625, output: 5, cached_input: 0.0625 }, priority: { input: 2.5, output: 20 } } }

  test('the pricing takes prices per tier; a tier name is lower-case letters, digits, _ and -, and a tier holds no tiers of its own', () => {
    expect(Value.Check(PricingSchema, tiered)).toBe(true)
    expect(Value.Check(PricingSchema, { input: 1, output: 1, service_tiers: { Flex: { input: 1, output: 1 } } })).toBe(false)
    expect(Value.Check(PricingSchema, { input: 1, output: 1, service_tiers: { flex: { input: 1 } } })).toBe(false)
    expect(Value.Check(PricingSchema, { input: 1, output: 1, service_tiers: { flex: { input: 1, output: 1, service_tiers: {} } } })).toBe(false)
  })

  test('tierPricing: the prices of the tier the answer names, where the pricing has them; else the pricing as it is', () => {
    expect(tierPricing(tiered, 'flex')).toEqual(tiered.service_tiers.flex)
    expect(tierPricing(tiered, 'priority')).toEqual(tiered.service_tiers.priority)
    for (const tier of ['default', 'auto', 'scale', undefined, null, 7, '__proto__', 'constructor', 'toString']) expect(tierPricing(tiered, tier)).toBe(tiered)
    expect(tierPricing({ input: 1, output: 2 }, 'flex')).toEqual({ input: 1, output: 2 })
    expect(tierPricing(undefined, 'flex')).toBeUndefined()
    // A tier's own defaults: its cached input costs its input.
    expect(priceOf(1_000, 0, 1_000, tierPricing(tiered, 'priority'))).toBeCloseTo((1_000 * 2.5) / 1e6, 12)
  })

  test("findServiceTier: the answer's service_tier, wherever it stands, not text that reads like it", () => {
    const answer = { id: 'x', choices: [{ index: 0, message: { content: 'hi' } }], usage: { prompt_tokens: 1, total_tokens: 2 } }
    expect(findServiceTier(bytes({ ...answer, service_tier: 'flex', system_fingerprint: null }))).toBe('flex')
    expect(findServiceTier(bytes({ service_tier: 'priority', ...answer }))).toBe('priority')
    expect(findServiceTier(bytes(`{"usage":{"total_tokens":2},\n  "service_tier" :  "default" }`))).toBe('default')
    expect(findServiceTier(bytes(answer))).toBeUndefined()
    expect(findServiceTier(bytes({ ...answer, service_tier: null }))).toBeUndefined()
    // Text in a message is escaped, so never the key; a value "service_tier" is no key either.
    const said = { choices: [{ message: { content: 'set "service_tier": "flex" to save' } }], note: 'service_tier' }
    expect(findServiceTier(bytes(said))).toBeUndefined()
    expect(findServiceTier(bytes({ ...said, service_tier: 'priority' }))).toBe('priority')
    expect(findServiceTier(bytes('{"service_tier":"fl'))).toBeUndefined()
  })
})
