/**
 * In dev without SLUICE_ENCRYPTION_KEY on Postgres: the generated master key is kept in the data
 * dir (./data/encryption.key under the working directory), so provider secrets added through
 * the admin API still open after a restart. Real processes (`bun run src/main.ts`), a real
 * Postgres database, a mock upstream that checks the secret.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { devKeyPath, loadMasterKeys } from '../src/catalog.ts'
import { loadConfig } from '../src/config/load.ts'
import { createLogger } from '../src/lib/logger.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { processEnv } from './support/gateway.ts'
import { closedPort } from './support/http.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const MAIN = resolve(import.meta.dir, '../src/main.ts')
const ADMIN = 'sluice-admin-test-only-0123456789'
const SECRET = 'sk-provider-secret-dev-key-0123456789'

interface Running {
  proc: Subprocess<'ignore', 'pipe', 'pipe'>
  base: string
}

describe('where the dev key is kept', () => {
  test('beside a SQLite file; in ./data under the working directory for Postgres; nowhere for in-memory SQLite', () => {
    expect(devKeyPath('sqlite:///var/lib/sluice/gw.db')).toBe('/var/lib/sluice/encryption.key')
    expect(devKeyPath('sqlite://./data/sluice.db')).toBe(resolve('data/encryption.key'))
    expect(devKeyPath('postgres://u:p@db.internal:5432/sluice')).toBe(resolve('data/encryption.key'))
    expect(devKeyPath('sqlite::memory:')).toBeNull()
    expect(devKeyPath('sqlite://:memory:')).toBeNull()
  })

  test('loadMasterKeys makes the file once, reads it after, and logs its path only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-dev-key-unit-'))
    try {
      const config = await loadConfig({ env: { DATABASE_URL: `sqlite://${join(dir, 'db', 'gw.db')}` }, config: {} })
      const lines: string[] = []
      const logger = createLogger('info', (line) => lines.push(line))
      const first = loadMasterKeys(config, {}, logger)
      const second = loadMasterKeys(config, {}, logger)
      expect(first.current?.id).toBeString()
      expect(second.current?.id).toBe(first.current?.id ?? '')
      const keyFile = join(dir, 'db', 'encryption.key')
      expect(lines.map((l) => JSON.parse(l) as { msg: string; path: string })).toEqual([
        expect.objectContaining({ msg: 'generated a dev encryption key for secrets at rest', path: keyFile }),
        expect.objectContaining({ msg: 'using the dev encryption key for secrets at rest', path: keyFile }),
      ])
      expect(lines.join('\n')).not.toContain(readFileSync(keyFile, 'utf8').trim())

      const memory = await loadConfig({ env: { DATABASE_URL: 'sqlite::memory:' }, config: {} })
      expect(loadMasterKeys(memory, {}, logger).current).not.toBeNull()
      expect(lines).toHaveLength(2)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

const postgresUrl = await postgresUrlForTests('test/catalog.dev-key.test.ts')

describe.skipIf(postgresUrl === null)('dev on Postgres without SLUICE_ENCRYPTION_KEY', () => {
  let database: TestPostgresDatabase | undefined
  let mock: MockUpstream
  let dir: string
  let configPath: string
  const started: Running[] = []

  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl ?? '', 'devkey')
    mock = await startMockUpstream({ apiKeys: [SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-dev-key-'))
    configPath = join(dir, 'sluice.config.json')
    writeFileSync(configPath, JSON.stringify({ plugins: [] }))
  })
  afterAll(async () => {
    for (const { proc } of started) if (proc.exitCode === null) proc.kill('SIGKILL')
    await mock?.stop()
    await database?.drop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Starts the gateway in `dir` and waits until /health answers (fails with its stderr if it exits first). */
  async function start(): Promise<Running> {
    const port = await closedPort()
    const env = processEnv(port, configPath, { DATABASE_URL: database?.url ?? '', LOG_LEVEL: 'info' })
    delete env.SLUICE_ENCRYPTION_KEY
    delete env.SLUICE_ENCRYPTION_KEY_PREVIOUS
    delete env.SLUICE_ENV
    const proc = Bun.spawn(['bun', 'run', MAIN], { cwd: dir, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
    const running = { proc, base: `http://127.0.0.1:${port}` }
    started.push(running)
    const deadline = Date.now() + 15_000
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`the gateway exited with ${proc.exitCode}: ${await new Response(proc.stderr).text()}`)
      if (await fetch(`${running.base}/health`).then((r) => r.status === 200, () => false)) return running
      if (Date.now() > deadline) throw new Error('the gateway did not answer /health')
      await Bun.sleep(50)
    }
  }

  /** Stops it with SIGTERM; returns what it wrote to stdout. */
  async function stop({ proc }: Running): Promise<string> {
    proc.kill('SIGTERM')
    const [stdout] = await Promise.all([new Response(proc.stdout).text(), proc.exited])
    return stdout
  }

  const chat = (base: string): Promise<Response> =>
    fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'live-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })

  test('a provider added through the admin API still works after a restart', async () => {
    const first = await start()
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
    const provider = await fetch(`${first.base}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'live', type: 'openai-compatible', base_url: mock.url, keys: [{ id: 'k1', secret: SECRET }] }),
    })
    expect(provider.status).toBe(201)
    const model = await fetch(`${first.base}/admin/models`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'live-gpt', targets: [{ provider: 'live', model: 'mock-gpt' }] }),
    })
    expect(model.status).toBe(201)
    expect((await chat(first.base)).status).toBe(200)
    const firstLog = await stop(first)

    // A new process: it must open the secret the first one sealed.
    const second = await start()
    mock.reset()
    const res = await chat(second.base)
    expect(res.status).toBe(200)
    expect(mock.stats.lastHeaders?.get('authorization')).toBe(`Bearer ${SECRET}`)
    const secondLog = await stop(second)

    const keyFile = join(dir, 'data', 'encryption.key')
    const key = readFileSync(keyFile, 'utf8').trim()
    expect(Buffer.from(key, 'base64')).toHaveLength(32)
    expect(statSync(keyFile).mode & 0o777).toBe(0o600)
    // The log names the file, never the key in it.
    expect(firstLog).toContain(JSON.stringify(keyFile))
    expect(firstLog).toContain('generated a dev encryption key')
    expect(secondLog).toContain('using the dev encryption key')
    expect(firstLog + secondLog).not.toContain(key)
  })
})
