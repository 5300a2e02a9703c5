import { afterAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { redisUrlForTests } from '../../test/support/services.ts'
import { hasWrk } from '../http/wrk.ts'
import { runMatrix } from './http.ts'
import { parseOptions } from './options.ts'
import { ROOT, Stack, startMock } from './services.ts'

const redisUrl = await redisUrlForTests('benchmarks/suite/http.test.ts')

describe.skipIf(redisUrl === null || !hasWrk())('the matrix with only the refusal scenarios', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-matrix-'))
  const stack = new Stack(tmp, () => {})
  const db5 = (() => {
    const u = new URL(redisUrl ?? 'redis://127.0.0.1:6379')
    u.pathname = '/5'
    return u.toString()
  })()
  afterAll(async () => {
    await stack.stopAll()
    // The bench key's buckets (hash tag "sluice") in db 5, the benchmarks' own.
    const redis = new Redis(db5)
    const keys = await redis.keys('{sluice}:*')
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
    rmSync(tmp, { recursive: true, force: true })
  })

  test('--scenario unauth verifies the full stack and measures it', async () => {
    // It failed its own verification: no request had charged the key before its charge was checked.
    const o = parseOptions(['--scenario', 'unauth', '--quick', '--duration', '1', '--warmup', '1', '--rate', '50', '--connections', '2', '--redis', db5, '--out', tmp], ROOT)
    const mock = await startMock(stack)
    const result = await runMatrix(o, stack, { mock, redisUrl: db5, redisPid: null, adminKey: `bench-admin-${crypto.randomUUID()}` })
    expect(result.verified.full!.join('\n')).toContain("quota is live: the key's token budget was charged")
    expect(result.samples.map((s) => `${s.scenario}/${s.mode}/${s.target}`)).toEqual(['unauth/concurrency/full', 'unauth/rate/full'])
    expect(result.samples.every((s) => s.wrong === 0 && s.errors === 0)).toBe(true)
  }, 60_000)
})
