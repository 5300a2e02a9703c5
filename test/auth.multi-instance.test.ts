/**
 * Two gateway processes on one Postgres and one Redis: a key revoked through one is refused
 * by the other within a second, though both had it warm in their caches; a rotated key's
 * grace period holds on both. Real processes (`bun run src/main.ts`), real Postgres and
 * Redis; the mock upstream is the only fake.
 *
 * Needs Postgres and Redis: skipped with a printed line without them, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import OpenAI, { APIError } from 'openai'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY, UPSTREAM_SECRET, type CreatedKey } from './support/auth.ts'
import { closedPort } from './support/http.ts'
import { createTestPostgresDatabase, postgresUrlForTests, redisUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const SUITE = 'test/auth.multi-instance.test.ts'
const postgresUrl = await postgresUrlForTests(SUITE)
const redisUrl = await redisUrlForTests(SUITE)
const ROOT = resolve(import.meta.dir, '..')

/** A gateway child process and what it printed. */
interface Instance {
  name: string
  url: string
  proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>
  output: string[]
}

async function drain(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder()
  for await (const chunk of stream) into.push(decoder.decode(chunk))
}

async function spawnGateway(name: string, env: Record<string, string>): Promise<Instance> {
  const port = await closedPort()
  const proc = Bun.spawn([process.execPath, 'run', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const output: string[] = []
  void drain(proc.stdout, output)
  void drain(proc.stderr, output)
  const instance = { name, url: `http://127.0.0.1:${port}`, proc, output }
  const deadline = Date.now() + 20_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway ${name} exited with ${proc.exitCode}:\n${output.join('')}`)
    try {
      if ((await fetch(`${instance.url}/health`)).ok) return instance
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway ${name} did not answer /health within 20 s:\n${output.join('')}`)
    await Bun.sleep(50)
  }
}

async function stop(instance: Instance | undefined): Promise<void> {
  if (!instance || instance.proc.exitCode !== null) return
  instance.proc.kill('SIGTERM')
  const exited = await Promise.race([instance.proc.exited.then(() => true), Bun.sleep(5000).then(() => false)])
  if (!exited) {
    instance.proc.kill('SIGKILL')
    await instance.proc.exited
  }
}

describe.skipIf(postgresUrl === null || redisUrl === null)('two instances on one Postgres and one Redis', () => {
  let upstream: MockUpstream
  let database: TestPostgresDatabase
  let dir: string
  let a: Instance | undefined
  let b: Instance | undefined

  const admin = async <T = Record<string, unknown>>(instance: Instance, method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(instance.url + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${instance.name}: ${method} ${path} → ${res.status}: ${text}`)
    return JSON.parse(text) as T
  }
  const client = (instance: Instance, key: string) => new OpenAI({ apiKey: key, baseURL: `${instance.url}/v1`, maxRetries: 0, organization: null, project: null })
  /** 'ok', or the error code of the refusal. */
  const attempt = async (instance: Instance, key: string): Promise<string> => {
    try {
      await client(instance, key).chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })
      return 'ok'
    } catch (error) {
      if (error instanceof APIError) return String(error.code)
      throw error
    }
  }
  /** Poll `instance` every 50 ms until `key` is refused with `code`; returns the ms it took, or throws after `withinMs`. */
  const refusedWithin = async (instance: Instance, key: string, code: string, withinMs: number): Promise<number> => {
    const started = performance.now()
    for (;;) {
      const result = await attempt(instance, key)
      const elapsed = performance.now() - started
      if (result === code) return elapsed
      if (result !== 'ok') throw new Error(`${instance.name} refused with ${result}, expected ${code}`)
      if (elapsed > withinMs) throw new Error(`${instance.name} still accepted the key ${Math.round(elapsed)} ms later (limit ${withinMs} ms)`)
      await Bun.sleep(50)
    }
  }
  const newUserKey = async (): Promise<CreatedKey> => {
    const user = await admin<{ id: string }>(a!, 'POST', '/admin/users', {})
    return admin<CreatedKey>(a!, 'POST', '/admin/keys', { user_id: user.id })
  }

  beforeAll(async () => {
    upstream = await startMockUpstream({ apiKeys: [UPSTREAM_SECRET] })
    database = await createTestPostgresDatabase(postgresUrl ?? '', 'auth_multi')
    dir = mkdtempSync(join(tmpdir(), 'sluice-multi-'))
    const configPath = join(dir, 'sluice.config.json')
    writeFileSync(
      configPath,
      JSON.stringify({
        environment: 'dev',
        providers: [{ id: 'up', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 'k1', secret: '${UPSTREAM_KEY}' }] }],
        models: [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] }],
        plugins: ['auth'],
      }),
    )
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl ?? '',
      SLUICE_ADMIN_KEY: ADMIN_KEY,
      SLUICE_CONFIG: configPath,
      UPSTREAM_KEY: UPSTREAM_SECRET,
    }
    // One after the other: the first runs the migrations.
    a = await spawnGateway('A', env)
    b = await spawnGateway('B', env)
  }, 60_000)

  afterAll(async () => {
    await Promise.all([stop(a), stop(b)])
    await upstream?.stop()
    await database?.drop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  }, 30_000)

  test('a key made through A works on both', async () => {
    const key = await newUserKey()
    expect(await attempt(a!, key.key)).toBe('ok')
    expect(await attempt(b!, key.key)).toBe('ok')
  })

  test('revoked through A: A refuses at once, B within 1 second, though both had it cached', async () => {
    const key = await newUserKey()
    for (let i = 0; i < 5; i++) {
      expect(await attempt(a!, key.key)).toBe('ok')
      expect(await attempt(b!, key.key)).toBe('ok')
    }
    await admin(a!, 'POST', `/admin/keys/${key.id}/revoke`, { reason: 'multi-instance test' })
    expect(await attempt(a!, key.key)).toBe('key_revoked')
    const ms = await refusedWithin(b!, key.key, 'key_revoked', 1000)
    expect(ms).toBeLessThanOrEqual(1000)
  })

  test('a user disabled through B is refused by A within 1 second', async () => {
    const key = await newUserKey()
    expect(await attempt(a!, key.key)).toBe('ok')
    expect(await attempt(b!, key.key)).toBe('ok')
    await admin(b!, 'PATCH', `/admin/users/${key.user_id}`, { disabled: true })
    await refusedWithin(a!, key.key, 'invalid_user_for_key', 1000)
  })

  test('rotated through A with grace_seconds 2: the old key works on B during the grace period, and is refused after it', async () => {
    const key = await newUserKey()
    expect(await attempt(a!, key.key)).toBe('ok')
    expect(await attempt(b!, key.key)).toBe('ok')
    const rotated = await admin<CreatedKey & { previous: { grace_until: string } }>(a!, 'POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 2 })
    const graceUntil = Date.parse(rotated.previous.grace_until)
    expect(graceUntil).toBeGreaterThan(Date.now())

    // During the grace period, old and new keys both work on B, before and after B heard of the rotation.
    expect(await attempt(b!, key.key)).toBe('ok')
    expect(await attempt(b!, rotated.key)).toBe('ok')
    await Bun.sleep(500)
    expect(Date.now()).toBeLessThan(graceUntil - 200)
    expect(await attempt(b!, key.key)).toBe('ok')
    expect(await attempt(a!, key.key)).toBe('ok')

    // After it, the old key is refused on B (and A); the new one keeps working.
    await Bun.sleep(Math.max(0, graceUntil - Date.now()) + 50)
    await refusedWithin(b!, key.key, 'key_revoked', 1000)
    expect(await attempt(a!, key.key)).toBe('key_revoked')
    expect(await attempt(b!, rotated.key)).toBe('ok')
  })

  test('neither process wrote a plaintext key or the admin key to its output', () => {
    const output = [...a!.output, ...b!.output].join('')
    expect(output).not.toContain(ADMIN_KEY)
    expect(output).not.toContain(UPSTREAM_SECRET)
  })
})
