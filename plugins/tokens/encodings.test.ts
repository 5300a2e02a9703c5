import { describe, expect, test } from 'bun:test'
import MODEL_TO_ENCODING from 'tiktoken/model_to_encoding.json' with { type: 'json' }
import { ModelRegistry } from '../../src/models.ts'
import { knownEncoding } from './encodings.ts'
import { resolveEncoding } from './index.ts'

describe('the built-in model table', () => {
  test("agrees with tiktoken's own table on every o200k_base and cl100k_base model it lists", () => {
    const table = MODEL_TO_ENCODING as Record<string, string>
    const listed = Object.entries(table).filter(([, e]) => e === 'o200k_base' || e === 'cl100k_base')
    expect(listed.length).toBeGreaterThan(60)
    for (const [model, encoding] of listed) expect({ model, encoding: knownEncoding(model) }).toEqual({ model, encoding: encoding as never })
  })

  test('families: dated, -mini and -nano variants, chatgpt-4o, provider prefixes, fine-tunes', () => {
    const o200k = ['gpt-4o-2099-01-01', 'gpt-4o-mini-2099-01-01', 'chatgpt-4o-latest', 'gpt-4.1-nano-2099-01-01', 'gpt-4.5-preview', 'gpt-5-mini-2099-01-01', 'gpt-5.1', 'o1-pro', 'o3-deep-research', 'o4-mini-high', 'openai/gpt-4o', 'ft:gpt-4o-mini-2024-07-18:acme::abc123', 'GPT-4O']
    for (const model of o200k) expect({ model, encoding: knownEncoding(model) }).toEqual({ model, encoding: 'o200k_base' })
    const cl100k = ['gpt-4-0125-preview', 'gpt-4-turbo-2099-01-01', 'gpt-3.5-turbo-0125', 'gpt-35-turbo-16k', 'text-embedding-3-small', 'text-embedding-3-large', 'text-embedding-ada-002']
    for (const model of cl100k) expect({ model, encoding: knownEncoding(model) }).toEqual({ model, encoding: 'cl100k_base' })
  })

  test('names that only look alike are unknown', () => {
    for (const model of ['llama-3', 'o10', 'gpt-40', 'mock-gpt', 'claude-sonnet-4', 'gpt-4ox']) expect({ model, encoding: knownEncoding(model) }).toEqual({ model, encoding: undefined })
  })
})

describe('resolveEncoding: config, client name, upstream name, default', () => {
  const provider = { id: 'up', type: 'openai-compatible' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: '' }] }
  const models = new ModelRegistry(
    [provider],
    [
      { name: 'gpt-4o', targets: [{ provider: 'up', model: 'llama-3' }] },
      { name: 'fast', targets: [{ provider: 'up', model: 'gpt-4-0613' }] },
      { name: 'local', encoding: 'cl100k_base', targets: [{ provider: 'up', model: 'qwen-2' }] },
      { name: 'gpt-4o-as-cl100k', encoding: 'cl100k_base', targets: [{ provider: 'up', model: 'gpt-4o' }] },
      { name: 'mystery', targets: [{ provider: 'up', model: 'mystery-1' }] },
      { name: 'typo', encoding: 'o300k', targets: [{ provider: 'up', model: 'typo-1' }] },
    ],
  )
  const of = (model: string) => resolveEncoding(models, model, 'o200k_base')

  test("a group's configured encoding wins over the table", () => {
    expect(of('gpt-4o-as-cl100k')).toEqual({ encoding: 'cl100k_base' })
    expect(of('local')).toEqual({ encoding: 'cl100k_base' })
  })
  test('the client model name, then the upstream model name', () => {
    expect(of('gpt-4o')).toEqual({ encoding: 'o200k_base' })
    expect(of('fast')).toEqual({ encoding: 'cl100k_base' })
  })
  test("an upstream name (as settlement passes it): the table, then the configured group that targets it", () => {
    expect(of('gpt-4-0613')).toEqual({ encoding: 'cl100k_base' })
    expect(of('qwen-2')).toEqual({ encoding: 'cl100k_base' })
  })
  test('unknown models get the default; an encoding this build lacks is reported', () => {
    expect(of('mystery')).toEqual({ encoding: 'o200k_base' })
    expect(resolveEncoding(models, 'nothing', 'cl100k_base')).toEqual({ encoding: 'cl100k_base' })
    expect(of('typo')).toEqual({ encoding: 'o200k_base', unknown: 'o300k' })
  })
})
