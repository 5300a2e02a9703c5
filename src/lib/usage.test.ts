import { describe, expect, test } from 'bun:test'
import { findUsage } from './usage.ts'

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

  test('works on a view into a larger buffer', () => {
    const big = new Uint8Array(100)
    const inner = bytes({ usage: { total_tokens: 7 } })
    big.set(inner, 10)
    expect(findUsage(big.subarray(10, 10 + inner.length))).toEqual({ total_tokens: 7 })
  })
})
