import { describe, expect, test } from 'bun:test'
import { echo, maskKey, maskKeysUpTo } from './key-text.ts'

const KEY = `sk-dev-${'a1B2'.repeat(11)}`

describe('maskKeysUpTo', () => {
  test('masks every key in the characters kept, a key across the cut whole', () => {
    expect(maskKeysUpTo(`model ${KEY} and ${KEY}`, 500)).toBe(`model ${maskKey(KEY)} and ${maskKey(KEY)}`)
    // The cut falls inside the key: what is kept of it is its masked form, never its first characters.
    expect(maskKeysUpTo(`${'x'.repeat(10)} ${KEY}`, 30)).toBe(`${'x'.repeat(10)} ${maskKey(KEY)}`.slice(0, 30))
    expect(maskKeysUpTo(`${'x'.repeat(10)} ${KEY}`, 30)).not.toContain(KEY.slice(0, 20))
  })

  test('keys that masking brings into the kept characters are masked too, however many come before', () => {
    const text = `${`${KEY} `.repeat(40)}tail`
    const kept = maskKeysUpTo(text, 200)
    expect(kept).toBe(`${`${maskKey(KEY)} `.repeat(40)}tail`.slice(0, 200))
    expect(kept).not.toMatch(/[0-9A-Za-z]{20}/)
  })

  test('text without keys is cut as it is', () => {
    expect(maskKeysUpTo('sk-dev-model', 64)).toBe('sk-dev-model')
    expect(maskKeysUpTo('y'.repeat(100), 10)).toBe('y'.repeat(10))
  })
})

describe('echo', () => {
  test('a key, alone or within the value, is masked; anything long is cut', () => {
    expect(echo(KEY)).toBe(maskKey(KEY))
    expect(echo(`Bearer ${KEY}`)).toBe(`Bearer ${maskKey(KEY)}`)
    expect(echo(`${'z'.repeat(60)} ${KEY}`)).toBe(`${'z'.repeat(60)} ${maskKey(KEY)}`.slice(0, 64) + '…')
    expect(echo('w'.repeat(64))).toBe('w'.repeat(64))
    expect(echo('w'.repeat(65))).toBe(`${'w'.repeat(64)}…`)
  })
})
