import { describe, expect, test } from 'bun:test'
import type { Pricing } from '../../src/config/schema.ts'
import { ModelRegistry } from '../../src/models.ts'
import { tablePricing } from './index.ts'
import { BUILTIN_PRICES, builtinPricing } from './prices.ts'

describe('the built-in price table', () => {
  test('exact names', () => {
    expect(builtinPricing('gpt-4o')).toEqual({ input: 2.5, output: 10, cached_input: 1.25, service_tiers: { priority: { input: 4.25, output: 17, cached_input: 2.125 } } })
    expect(builtinPricing('gpt-4o-mini')).toEqual({ input: 0.15, output: 0.6, cached_input: 0.075, service_tiers: { priority: { input: 0.25, output: 1, cached_input: 0.125 } } })
    expect(builtinPricing('text-embedding-3-small')).toEqual({ input: 0.02, output: 0 })
    expect(builtinPricing('claude-sonnet-4')).toEqual({ input: 3, output: 15, cached_input: 0.3 })
    expect(builtinPricing('gemini-2.5-pro')).toEqual({ input: 1.25, output: 10, cached_input: 0.125 })
  })

  test('dated and aliased variants take their model’s price', () => {
    const cases: Array<[string, keyof typeof BUILTIN_PRICES]> = [
      ['gpt-4o-2024-08-06', 'gpt-4o'],
      ['gpt-4o-mini-2024-07-18', 'gpt-4o-mini'],
      ['gpt-4.1-nano-2025-04-14', 'gpt-4.1-nano'],
      ['gpt-4-0613', 'gpt-4'],
      ['gpt-4-turbo-2024-04-09', 'gpt-4-turbo'],
      ['gpt-4-turbo-preview', 'gpt-4-turbo'],
      ['gpt-3.5-turbo-0125', 'gpt-3.5-turbo'],
      ['o3-2025-04-16', 'o3'],
      ['o4-mini-2025-04-16', 'o4-mini'],
      ['claude-sonnet-4-20250514', 'claude-sonnet-4'],
      ['claude-sonnet-4-0', 'claude-sonnet-4'],
      ['claude-opus-4-1-20250805', 'claude-opus-4-1'],
      ['claude-opus-4-5-20251101', 'claude-opus-4-5'],
      ['claude-3-5-haiku-latest', 'claude-3-5-haiku'],
      ['claude-3-5-sonnet-20241022', 'claude-3-5-sonnet'],
      ['gemini-2.5-flash-preview-05-20', 'gemini-2.5-flash'],
      ['openai/gpt-4o-2024-11-20', 'gpt-4o'],
    ]
    for (const [model, base] of cases) expect({ model, price: builtinPricing(model) }).toEqual({ model, price: BUILTIN_PRICES[base] })
  })

  test('a dated snapshot OpenAI prices apart keeps its own price, not its model’s', () => {
    expect(builtinPricing('gpt-4o-2024-05-13')).toEqual({ input: 5, output: 15 })
    expect(builtinPricing('openai/gpt-4o-2024-05-13')).toEqual({ input: 5, output: 15 })
    expect(builtinPricing('gpt-3.5-turbo-1106')).toEqual({ input: 1, output: 2 })
    expect(builtinPricing('gpt-3.5-turbo-0613')).toEqual({ input: 1.5, output: 2 })
    expect(builtinPricing('gpt-3.5-turbo-0301')).toEqual({ input: 1.5, output: 2 })
  })

  test('snapshots and aliases named apart from their model, and older models still served, have their price', () => {
    const turbo = { input: 10, output: 30 }
    for (const model of ['gpt-4-0125-preview', 'gpt-4-1106-preview', 'gpt-4-vision-preview', 'gpt-4-1106-vision-preview']) expect({ model, price: builtinPricing(model) }).toEqual({ model, price: turbo })
    expect(builtinPricing('gpt-4-32k-0613')).toEqual({ input: 60, output: 120 })
    expect(builtinPricing('gpt-3.5-turbo-16k-0613')).toEqual({ input: 3, output: 4 })
    expect(builtinPricing('gpt-3.5-turbo-instruct')).toEqual({ input: 1.5, output: 2 })
    expect(builtinPricing('chatgpt-4o-latest')).toEqual({ input: 5, output: 15 })
    // gpt-5's standard prices; the chat models are served at no other tier.
    expect(builtinPricing('gpt-5-chat-latest')).toEqual({ input: 1.25, output: 10, cached_input: 0.125 })
    expect(builtinPricing('gpt-5.1-2025-11-13')).toEqual(BUILTIN_PRICES['gpt-5'])
    expect(builtinPricing('gpt-5.1-chat-latest')).toEqual({ input: 1.25, output: 10, cached_input: 0.125 })
    expect(builtinPricing('claude-3-opus-20240229')).toEqual({ input: 15, output: 75, cached_input: 1.5 })
    expect(builtinPricing('claude-3-haiku-20240307')).toEqual({ input: 0.25, output: 1.25, cached_input: 0.03 })
    // Vertex AI names a Claude snapshot with an @: vertex_ai/claude-sonnet-4@20250514.
    expect(builtinPricing('vertex_ai/claude-sonnet-4@20250514')).toEqual(BUILTIN_PRICES['claude-sonnet-4'])
    expect(builtinPricing('claude-opus-4-1@20250805')).toEqual(BUILTIN_PRICES['claude-opus-4-1'])
  })

  test('a sibling model never takes another’s price; fine-tunes and unknown models have none', () => {
    expect(builtinPricing('gpt-4o-mini')).not.toEqual(BUILTIN_PRICES['gpt-4o'])
    expect(builtinPricing('claude-opus-4-5')).not.toEqual(BUILTIN_PRICES['claude-opus-4'])
    expect(builtinPricing('gemini-2.5-flash-lite')).toEqual(BUILTIN_PRICES['gemini-2.5-flash-lite'])
    for (const model of ['gpt-4o-audio-preview', 'gpt-4o-realtime', 'ft:gpt-4o-mini-2024-07-18:acme::x', 'llama-3', 'mock-gpt']) {
      expect({ model, price: builtinPricing(model) }).toEqual({ model, price: undefined })
    }
  })
})

describe('service tier prices', () => {
  test("OpenAI's Flex tier (half the standard price) and Priority tier, for the models that offer them, dated variants too", () => {
    expect(builtinPricing('gpt-5')?.service_tiers).toEqual({ flex: { input: 0.625, output: 5, cached_input: 0.0625 }, priority: { input: 2.5, output: 20, cached_input: 0.25 } })
    expect(builtinPricing('gpt-5-2025-08-07')?.service_tiers?.flex).toEqual({ input: 0.625, output: 5, cached_input: 0.0625 })
    expect(builtinPricing('o4-mini')?.service_tiers?.flex).toEqual({ input: 0.55, output: 2.2, cached_input: 0.1375 })
    expect(builtinPricing('gpt-4o')?.service_tiers).toEqual({ priority: { input: 4.25, output: 17, cached_input: 2.125 } })
    // Flex is half of standard wherever it is offered.
    for (const [model, price] of Object.entries(BUILTIN_PRICES) as Array<[string, Pricing]>) {
      const flex = price.service_tiers?.flex
      if (flex) expect({ model, flex }).toEqual({ model, flex: { input: price.input / 2, output: price.output / 2, cached_input: price.cached_input! / 2 } })
    }
    // Models without a tier of their own have none, and no other vendor's model has tiers.
    expect(builtinPricing('gpt-5-chat-latest')?.service_tiers).toBeUndefined()
    expect(builtinPricing('claude-sonnet-4-5')?.service_tiers).toBeUndefined()
  })
})

describe('tablePricing: what is really called', () => {
  const provider = { id: 'up', type: 'openai-compatible' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: '' }] }
  const models = new ModelRegistry(
    [provider],
    [
      { name: 'cheap', targets: [{ provider: 'up', model: 'gpt-4o-mini-2024-07-18' }] },
      { name: 'gpt-4o', targets: [{ provider: 'up', model: 'mock-gpt' }] },
    ],
  )
  test('the upstream model first, then the group’s targets, then the client name', () => {
    expect(tablePricing(models, 'cheap', 'gpt-4.1')).toEqual(BUILTIN_PRICES['gpt-4.1'])
    expect(tablePricing(models, 'cheap', undefined)).toEqual(BUILTIN_PRICES['gpt-4o-mini'])
    expect(tablePricing(models, 'gpt-4o', 'mock-gpt')).toEqual(BUILTIN_PRICES['gpt-4o'])
    expect(tablePricing(models, 'unknown', 'mock-gpt')).toBeUndefined()
  })
})
