import { afterAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { redisUrlForTests, uniqueTestName } from '../../test/support/services.ts'
import { main } from './run.ts'

const redisUrl = await redisUrlForTests('benchmarks/http/run.test.ts')

describe.skipIf(redisUrl === null)('single-configuration runner: what its gateway row runs', () => {
  const out = mkdtempSync(join(tmpdir(), 'sluice-bench-run-'))
  const db5 = (() => {
    const u = new URL(redisUrl ?? 'redis://127.0.0.1:6379')
    u.pathname = '/5'
    return u.toString()
  })()
  const tag = uniqueTestName('bench-run')
  const saved = process.env.REDIS_URL
  const redis = new Redis(db5)
  afterAll(async () => {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
    const keys = await redis.keys(`{${tag}}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
    rmSync(out, { recursive: true, force: true })
  })

  /** One second at the fixed rate, the gateway alone; returns the results file. */
  async function run(label: string, extra: string[]): Promise<{ meta: { settings: Record<string, unknown>; notes: string[] } }> {
    const plugins = JSON.stringify(['auth', { use: 'quota', options: { hash_tag: tag } }])
    const code = await main(['--targets', 'gateway', '--mode', 'rate', '--scenario', 'chat', '--duration', '1', '--rounds', '1', '--warmup', '1', '--rate', '100', '--plugins', plugins, '--out', out, '--label', label, ...extra])
    expect(code).toBe(0)
    const file = readdirSync(out).find((f) => f.endsWith(`-${label}.json`))!
    return JSON.parse(readFileSync(join(out, file), 'utf8'))
  }

  test("a REDIS_URL exported in the shell is not the gateway's: the file says quota ran in process, and it did", async () => {
    process.env.REDIS_URL = db5
    const result = await run('shell-redis', [])
    // It used to take the shell's Redis, and the results file said nothing of it.
    expect(await redis.keys(`{${tag}}:*`)).toEqual([])
    expect(result.meta.settings.quota_store).toBe('in-process')
    expect(result.meta.notes.join('\n')).toContain('quota ran on the in-process store')
  }, 60_000)

  test('--env REDIS_URL puts quota on Redis, checked before the load and said in the file', async () => {
    delete process.env.REDIS_URL
    const result = await run('env-redis', ['--env', `REDIS_URL=${db5}`])
    expect(result.meta.settings.quota_store).toBe('redis')
    expect((await redis.keys(`{${tag}}:key:*`)).length).toBeGreaterThan(0)
  }, 60_000)

  test('balance over --keys is checked to spread before the load', async () => {
    const code = await main(['--targets', 'gateway', '--mode', 'rate', '--scenario', 'chat', '--duration', '1', '--rounds', '1', '--warmup', '1', '--rate', '100', '--plugins', '["balance"]', '--keys', '4', '--out', out, '--label', 'balance'])
    expect(code).toBe(0)
    const file = readdirSync(out).find((f) => f.endsWith('-balance.json'))!
    const result = JSON.parse(readFileSync(join(out, file), 'utf8')) as { checks?: string[] }
    expect(result.checks?.join('\n')).toContain('went out with 4 keys')
  }, 60_000)
})
