import { afterAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { redisUrlForTests } from '../../test/support/services.ts'
import { Stack, startGateway } from './services.ts'

const ADMIN_KEY = `bench-admin-${crypto.randomUUID()}`
const redisUrl = await redisUrlForTests('benchmarks/suite/services.test.ts')

/** The environment a process was started with, from /proc (Linux). */
function environOf(pid: number): Map<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((e) => e !== '')
  return new Map(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
}

describe.skipIf(redisUrl === null)('suite gateways take their settings from the suite, not from its shell', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-services-'))
  const stack = new Stack(tmp, () => {})
  const saved = process.env.REDIS_URL
  afterAll(async () => {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
    await stack.stopAll()
    rmSync(tmp, { recursive: true, force: true })
  })

  test('a configuration without Redis gets no REDIS_URL even when the shell exports one', async () => {
    // As on a machine where the operator exported REDIS_URL (the suite's own fallback without redis-server).
    const shellRedis = new URL(redisUrl!)
    shellRedis.pathname = '/5'
    process.env.REDIS_URL = shellRedis.toString()
    const bare = await startGateway(stack, { name: 'bare', plugins: [], redisUrl: null }, 'http://127.0.0.1:9', ADMIN_KEY)
    expect(environOf(bare.pid).has('REDIS_URL')).toBe(false)
    const quota = await startGateway(stack, { name: 'quota', plugins: [], redisUrl: redisUrl! }, 'http://127.0.0.1:9', ADMIN_KEY)
    expect(environOf(quota.pid).get('REDIS_URL')).toBe(redisUrl!)
  }, 60_000)
})
