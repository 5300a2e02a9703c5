import { describe, expect, test } from 'bun:test'
import { trimHttpWhitespace } from './http-token.ts'

describe('trimHttpWhitespace', () => {
  test('drops the spaces, tabs, CRs and LFs around a value, as fetch does, and nothing else', async () => {
    expect(trimHttpWhitespace(' \t sk-abc\r\n')).toBe('sk-abc')
    expect(trimHttpWhitespace('a b\tc')).toBe('a b\tc')
    // Other white space is part of the value fetch sends.
    expect(trimHttpWhitespace('\u00a0sk-abc\u00a0')).toBe('\u00a0sk-abc\u00a0')
    expect(trimHttpWhitespace(' \r\n')).toBe('')
    const sent = await new Promise<string | null>((resolve) => {
      const server = Bun.serve({
        hostname: '127.0.0.1',
        port: 0,
        fetch(request) {
          resolve(request.headers.get('x-v'))
          return new Response('')
        },
      })
      void fetch(server.url, { headers: { 'x-v': ' \t sk-abc\r\n' } }).finally(() => server.stop(true))
    })
    expect(sent).toBe(trimHttpWhitespace(' \t sk-abc\r\n'))
  })
})
