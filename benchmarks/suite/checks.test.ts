import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ServerProcess } from '../fixtures/processes.ts'
import { Redis } from 'ioredis'
import { redisUrlForTests, uniqueTestName } from '../../test/support/services.ts'
import { checkBalanceSpreads, checkLogging, checkQuotaInRedis } from './checks.ts'
import { GENEROUS, Stack, provisionKey, startGateway, startMock } from './services.ts'

const redisUrl = await redisUrlForTests('benchmarks/suite/checks.test.ts')
const ADMIN_KEY = `bench-admin-${crypto.randomUUID()}`
/** The quota keys of this file, removed at the end. */
const TAG = uniqueTestName('bench-checks')

describe.skipIf(redisUrl === null)('the suite checks that each row runs what its label says', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-checks-'))
  const stack = new Stack(tmp, () => {})
  let mock: ServerProcess
  let quota: ServerProcess
  let plain: ServerProcess
  // The test Redis, db 5 (the benchmarks' own); keys are found by the random key id, so others' keys do not matter.
  const db5 = (() => {
    const u = new URL(redisUrl ?? 'redis://127.0.0.1:6379')
    u.pathname = '/5'
    return u.toString()
  })()

  beforeAll(async () => {
    mock = await startMock(stack)
    quota = await startGateway(stack, { name: 'quota', plugins: ['auth', { use: 'quota', options: { hash_tag: TAG } }, 'balance', 'logging'], redisUrl: db5 }, mock.origin, ADMIN_KEY)
    plain = await startGateway(stack, { name: 'plain', plugins: ['auth'], redisUrl: null }, mock.origin, ADMIN_KEY)
  }, 60_000)
  afterAll(async () => {
    await stack.stopAll()
    const redis = new Redis(db5)
    const keys = await redis.keys(`{${TAG}}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
    rmSync(tmp, { recursive: true, force: true })
  })

  test('a key without limits is caught: quota admits it without Redis', async () => {
    // The single runner's old key: the row said "full stack" and left out the admission round trip.
    const bare = await provisionKey(quota.origin, ADMIN_KEY, 'no-limits', {})
    await expect(checkQuotaInRedis('quota row', `${quota.origin}/v1/chat/completions`, bare.key, bare.id, db5)).rejects.toThrow('without Redis')
    const generous = await provisionKey(quota.origin, ADMIN_KEY, 'generous', GENEROUS)
    expect(await checkQuotaInRedis('quota row', `${quota.origin}/v1/chat/completions`, generous.key, generous.id, db5)).toContain('rpm, tpm')
  })

  test('balance spreading over the upstream keys is checked, and its absence caught', async () => {
    const key = await provisionKey(quota.origin, ADMIN_KEY, 'balance', GENEROUS)
    expect(await checkBalanceSpreads('balance row', `${quota.origin}/v1/chat/completions`, key.key, mock.origin)).toContain('4 keys')
    const plainKey = await provisionKey(plain.origin, ADMIN_KEY, 'plain', GENEROUS)
    await expect(checkBalanceSpreads('no balance', `${plain.origin}/v1/chat/completions`, plainKey.key, mock.origin)).rejects.toThrow('one upstream key')
  })

  test('request-log rows are checked for the key', async () => {
    const key = await provisionKey(quota.origin, ADMIN_KEY, 'logged', GENEROUS)
    const res = await fetch(`${quota.origin}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key.key}` }, body: '{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}' })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(await checkLogging('logging row', quota.origin, ADMIN_KEY, key.id)).toContain('rows for the key')
  })
})
