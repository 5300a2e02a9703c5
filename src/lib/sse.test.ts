import { describe, expect, test } from 'bun:test'
import { SseSplitter, eventData } from './sse.ts'

function splitAll(pieces: string[]): string[] {
  const splitter = new SseSplitter()
  const events: string[] = []
  for (const piece of pieces) events.push(...splitter.push(piece))
  const last = splitter.flush()
  if (last !== null) events.push(last)
  return events
}

describe('SseSplitter', () => {
  test('LF framing: whole events out, the partial rest kept', () => {
    const splitter = new SseSplitter()
    expect(splitter.push('data: a\n\ndata: b')).toEqual(['data: a'])
    expect(splitter.pending).toBe(true)
    expect(splitter.push('\n\n')).toEqual(['data: b'])
    expect(splitter.pending).toBe(false)
  })

  test('CRLF framing cut at every place gives the same events, with no stray blank line', () => {
    const text = 'event: x\r\ndata: one\r\ndata: two\r\n\r\ndata: three\r\n\r\n'
    const whole = splitAll([text])
    expect(whole).toEqual(['event: x\ndata: one\ndata: two', 'data: three'])
    for (let i = 1; i < text.length; i++) {
      for (let j = i + 1; j < text.length; j++) {
        expect(splitAll([text.slice(0, i), text.slice(i, j), text.slice(j)])).toEqual(whole)
      }
    }
  })

  test('a CR alone is a line break too, and a last event without its blank line is flushed', () => {
    expect(splitAll(['data: a\r\rdata: b\r'])).toEqual(['data: a', 'data: b\n'])
    expect(eventData('data: b\n')).toBe('b')
  })

  test.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('a 16 MB event (%s) read in 16 KB pieces gives the same events as the whole text', (_framing, nl) => {
    const big = `data: {"choices":[{"delta":{"content":"${'A'.repeat(16 * 1024 * 1024)}"}}]}`
    const text = `data: one${nl}${nl}${big}${nl}${nl}: keep-alive${nl}${nl}data: two${nl}data: three${nl}${nl}data: [DONE]${nl}${nl}`
    const expected = ['data: one', big, ': keep-alive', 'data: two\ndata: three', 'data: [DONE]']
    const pieces: string[] = []
    // 16 KB pieces, and pieces one character off, so that CR and LF fall into different pieces.
    for (const size of [16 * 1024, 16 * 1024 + 1]) {
      pieces.length = 0
      for (let i = 0; i < text.length; i += size) pieces.push(text.slice(i, i + size))
      expect(splitAll(pieces)).toEqual(expected)
    }
  })

  test('a blank line split over two pieces, and a CR held over a piece of nothing', () => {
    expect(splitAll(['data: a\n', '\ndata: b\n', '\n'])).toEqual(['data: a', 'data: b'])
    expect(splitAll(['data: a', '\r', '', '\n\r', '\ndata: b'])).toEqual(['data: a', 'data: b'])
    expect(splitAll(['da', 'ta: ', 'a\n\ndata', ': b\n\n'])).toEqual(['data: a', 'data: b'])
  })
})

describe('eventData', () => {
  test('joins data lines, skips comments and other fields', () => {
    expect(eventData('data: {"a":1}')).toBe('{"a":1}')
    expect(eventData(': keep-alive')).toBeNull()
    expect(eventData('event: message\ndata: x\ndata:y')).toBe('x\ny')
  })
})
