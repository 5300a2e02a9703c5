import { describe, expect, test } from 'bun:test'
import { REASONING_EFFORTS, modelGeneration, parseDataUrl, reasoningEffortOf } from './openai-format.ts'

describe('modelGeneration', () => {
  test('major * 100 + minor from the first number after the family, whatever the naming scheme', () => {
    const cases: Array<[string, string, number]> = [
      ['claude-3-7-sonnet-20250219', 'claude', 307],
      ['claude-sonnet-4-5-20250929', 'claude', 405],
      ['claude-opus-4-1-20250805', 'claude', 401],
      ['claude-opus-4-6', 'claude', 406],
      ['claude-3-5-haiku-latest', 'claude', 305],
      ['us.anthropic.claude-sonnet-4-5-20250929-v1:0', 'claude', 405],
      ['anthropic.claude-3-7-sonnet-20250219-v1:0', 'claude', 307],
      ['gemini-2.5-flash', 'gemini', 205],
      ['models/gemini-2.5-pro', 'gemini', 205],
      ['gemini-3-pro-preview', 'gemini', 300],
      ['gemini-3.1-pro', 'gemini', 301],
      ['gemini-1.5-pro-002', 'gemini', 105],
    ]
    for (const [model, family, generation] of cases) expect({ model, generation: modelGeneration(model, family) }).toEqual({ model, generation })
  })

  test('a date stamp is not a minor version, and a name without a version has none', () => {
    expect(modelGeneration('claude-sonnet-4-20250514', 'claude')).toBe(400)
    expect(modelGeneration('claude-latest', 'claude')).toBeUndefined()
    expect(modelGeneration('gemini-flash-latest', 'gemini')).toBeUndefined()
    expect(modelGeneration('gemini-exp-1206', 'gemini')).toBeUndefined()
    expect(modelGeneration('gpt-4o', 'claude')).toBeUndefined()
  })
})

describe('reasoningEffortOf', () => {
  test('OpenAI values pass, null and absent are unset, anything else is refused naming the field', () => {
    expect(REASONING_EFFORTS).toEqual(['none', 'minimal', 'low', 'medium', 'high', 'xhigh'])
    for (const effort of REASONING_EFFORTS) expect(reasoningEffortOf({ reasoning_effort: effort })).toBe(effort)
    expect(reasoningEffortOf({})).toBeUndefined()
    expect(reasoningEffortOf({ reasoning_effort: null })).toBeUndefined()
    for (const bad of ['max', 'HIGH', 3]) expect(reasoningEffortOf({ reasoning_effort: bad })).toMatchObject({ ok: false, param: 'reasoning_effort' })
  })
})

describe('parseDataUrl', () => {
  test('a base64 data URL splits into its type (lower case, JPEG aliases as image/jpeg) and its data; anything else is null', () => {
    expect(parseDataUrl('data:image/png;base64,iVBORw0KGgo=')).toEqual({ mimeType: 'image/png', data: 'iVBORw0KGgo=' })
    expect(parseDataUrl('data:Image/JPG;name=a.jpg;base64,/9j/4AAQ')).toEqual({ mimeType: 'image/jpeg', data: '/9j/4AAQ' })
    expect(parseDataUrl('data:application/pdf;base64,JVBE,Rg==')).toEqual({ mimeType: 'application/pdf', data: 'JVBE,Rg==' })
    for (const url of ['data:image/png,plain', 'data:;base64,AAAA', 'data:image/png;BASE64,AAAA', 'https://x/a.png', 'data:image/png;base64', `data:image/png${';'.repeat(1_000_000)}x,AAAA`]) {
      expect(parseDataUrl(url)).toBeNull()
    }
  })
})
