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
})

describe('eventData', () => {
  test('joins data lines, skips comments and other fields', () => {
    expect(eventData('data: {"a":1}')).toBe('{"a":1}')
    expect(eventData(': keep-alive')).toBeNull()
    expect(eventData('event: message\ndata: x\ndata:y')).toBe('x\ny')
  })
})
