/**
 * PORT and HOST as they come from env files and shells: a port is digits, 1 to 65535 (Number()
 * would read " " as 0, a random port, "0x4A9E" as 19102, "1e4" as 10000), and the file's
 * server.port is held to the same range; a blank variable is unset; the boot line prints a URL
 * that is one, an IPv6 host in brackets.
 */
import { describe, expect, test } from 'bun:test'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { bootProcess } from './support/boot-process.ts'
import { freePort } from './support/redis-procs.ts'

async function portOf(env: Record<string, string>, file: { port?: number } = {}): Promise<number | string[]> {
  try {
    return (await loadConfig({ env, config: { server: file } })).port
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
}

describe('PORT', () => {
  test('digits from 1 to 65535, white space around them dropped', async () => {
    expect(await portOf({ PORT: '19102' })).toBe(19102)
    expect(await portOf({ PORT: ' 8081\n' })).toBe(8081)
    expect(await portOf({ PORT: '65535' })).toBe(65535)
  })

  test('blank is unset: the file’s port, else 8080', async () => {
    expect(await portOf({ PORT: ' ' })).toBe(8080)
    expect(await portOf({ PORT: '' }, { port: 9000 })).toBe(9000)
  })

  test.each(['0x4A9E', '1e4', '0', '65536', '80.0', '-80', '+80', '8080 8081', 'eighty'])('%p is refused', async (value) => {
    expect(await portOf({ PORT: value })).toEqual([`PORT: ${JSON.stringify(value)} is not a port number (digits, 1 to 65535)`])
  })
})

describe('server.port', () => {
  test('the same rule as PORT: 1 to 65535, so 0 (a random port) is refused in the file too', async () => {
    expect(await portOf({}, { port: 9000 })).toBe(9000)
    expect(await portOf({}, { port: 1 })).toBe(1)
    expect(await portOf({}, { port: 65535 })).toBe(65535)
    for (const port of [0, 65536, -1]) {
      expect({ port, problems: await portOf({}, { port }) }).toEqual({ port, problems: [expect.stringMatching(/^\/server\/port: /)] })
    }
    // PORT overrides the file's, and is held to the same rule.
    expect(await portOf({ PORT: '8081' }, { port: 9000 })).toBe(8081)
  })
})

describe('HOST', () => {
  test('blank is unset: 0.0.0.0', async () => {
    expect((await loadConfig({ env: { HOST: '' }, config: {} })).host).toBe('0.0.0.0')
    expect((await loadConfig({ env: { HOST: ' ' }, config: { server: { host: '127.0.0.1' } } })).host).toBe('127.0.0.1')
  })

  test('an IPv6 host is bracketed in the boot line’s URL, and the URL answers', async () => {
    let status = 0
    const result = await bootProcess({
      env: { PORT: String(freePort()), HOST: '::1', DATABASE_URL: 'sqlite::memory:' },
      whileUp: async (url) => {
        status = (await fetch(`${url}/health`)).status
      },
    })
    expect(String(result.listening?.url)).toMatch(/^http:\/\/\[::1\]:\d+$/)
    expect(status).toBe(200)
  }, 30_000)
})
