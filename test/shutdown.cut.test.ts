/**
 * What a shutdown does to requests that outlive its grace period, on the real process
 * (`bun run src/main.ts`, SQLite file, the logging plugin): a stream the gateway writes ends with a
 * `not_ready` error event instead of a reset, the request is still logged (its usage counted) before
 * the plugins close, an answer given during the grace closes its connection, and a second SIGTERM
 * ends the grace at once.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { processEnv, upstreamConfig } from './support/gateway.ts'
import { closedPort } from './support/http.ts'

const MAIN = resolve(import.meta.dir, '../src/main.ts')

let upstream: MockUpstream
let dir: string
const procs: Subprocess<'ignore', 'pipe', 'pipe'>[] = []

beforeAll(async () => {
  // 16 words, one chunk each, 250 ms apart: a stream of 4 s, long past a grace of 1 s.
  upstream = await startMockUpstream({ chunkDelayMs: 250 })
  dir = mkdtempSync(join(tmpdir(), 'sluice-shutdown-cut-'))
})
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
})

async function boot(name: string, graceMs: number): Promise<{ child: Subprocess<'ignore', 'pipe', 'pipe'>; base: string; dbPath: string }> {
  const configPath = join(dir, `${name}.json`)
  const config = upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { writer_thread: false } }] })
  // The mock waits 600 ms before it answers this one: a JSON answer that comes within the grace.
  config.models!.push({ name: 'slow', targets: [{ provider: 'up', model: 'mock-slow-600' }] })
  // And this one 5 s: still waiting for its headers when a grace of 1 s ends.
  config.models!.push({ name: 'slower', targets: [{ provider: 'up', model: 'mock-slow-5000' }] })
  writeFileSync(configPath, JSON.stringify({ ...config, server: { shutdown_grace_ms: graceMs } }))
  const port = await closedPort()
  const dbPath = join(dir, `${name}.db`)
  const child = Bun.spawn(['bun', 'run', MAIN], {
    cwd: dir,
    env: processEnv(port, configPath, { LOG_LEVEL: 'warn', DATABASE_URL: `sqlite://${dbPath}` }),
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  procs.push(child)
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited early with ${child.exitCode}: ${await new Response(child.stderr).text()}`)
    if (await fetch(`${base}/health`).then((r) => r.status === 200, () => false)) break
    if (Date.now() > deadline) throw new Error('the gateway did not answer /health')
    await Bun.sleep(50)
  }
  return { child, base, dbPath }
}

const chat = (base: string, model: string, stream: boolean) =>
  fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hello' }] }),
  })

/** The rest of a stream as text, and whether it ended cleanly (not with a reset). */
async function readAll(body: ReadableStream<Uint8Array>): Promise<{ text: string; broken: boolean }> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  for (;;) {
    try {
      const { value, done } = await reader.read()
      if (done) return { text, broken: false }
      text += decoder.decode(value, { stream: true })
    } catch {
      return { text, broken: true }
    }
  }
}

function logged(dbPath: string, id: string): { status: number; error_code: string | null; completion_tokens: number | null } | null {
  const db = new Database(dbPath, { readonly: true })
  try {
    return db.query('SELECT status, error_code, completion_tokens FROM request_logs WHERE id = ?').get(id) as never
  } finally {
    db.close()
  }
}

describe('shutdown past the grace period', () => {
  test('a stream still running ends with a not_ready event, is logged with its usage, and an answer within the grace closes its connection', async () => {
    const { child, base, dbPath } = await boot('cut', 1000)
    const stream = await chat(base, 'mock-gpt', true)
    expect(stream.status).toBe(200)
    const streamId = stream.headers.get('x-request-id')!
    const pendingJson = chat(base, 'slow', false)
    await Bun.sleep(200)
    const sentAt = performance.now()
    child.kill('SIGTERM')

    // The JSON answer came during the grace: the gateway tells its client to open no more requests on the connection.
    const json = await pendingJson
    expect(json.status).toBe(200)
    expect(json.headers.get('connection')).toBe('close')
    await json.arrayBuffer()

    const { text, broken } = await readAll(stream.body!)
    expect(broken).toBe(false)
    const last = text.trimEnd().split('\n\n').at(-1)!
    const error = (JSON.parse(last.slice('data: '.length)) as { error: { code: string; message: string } }).error
    expect(error.code).toBe('not_ready')
    expect(error.message).toContain('shutting down')
    // Cut at the end of the grace, not at the end of the 4 s stream.
    expect(performance.now() - sentAt).toBeLessThan(3000)

    expect(await child.exited).toBe(0)
    const row = logged(dbPath, streamId)
    expect(row).toMatchObject({ status: 200, error_code: 'not_ready' })
    expect(row!.completion_tokens).toBeGreaterThan(0)
  }, 30_000)

  test('a model call still waiting for its upstream at the end of the grace is answered 503 not_ready and logged so, not cut as if its client had left', async () => {
    const { child, base, dbPath } = await boot('waiting', 1000)
    const pending = chat(base, 'slower', false)
    await Bun.sleep(200)
    child.kill('SIGTERM')
    const res = await pending
    expect(res.status).toBe(503)
    expect(res.headers.get('connection')).toBe('close')
    const id = res.headers.get('x-request-id')!
    expect(id).toStartWith('req_')
    const error = ((await res.json()) as { error: { code: string; message: string } }).error
    expect(error.code).toBe('not_ready')
    expect(error.message).toContain('shutting down')
    expect(await child.exited).toBe(0)
    expect(logged(dbPath, id)).toMatchObject({ status: 503, error_code: 'not_ready' })
  }, 30_000)

  test('a second SIGTERM, a second or more after the first, ends the grace at once', async () => {
    const { child, base, dbPath } = await boot('hurry', 20_000)
    const stream = await chat(base, 'mock-gpt', true)
    const streamId = stream.headers.get('x-request-id')!
    await Bun.sleep(200)
    const sentAt = performance.now()
    child.kill('SIGTERM')
    // Past the second in which a signal is taken for the first one passed on again (src/main.ts).
    await Bun.sleep(1200)
    child.kill('SIGTERM')
    const { text, broken } = await readAll(stream.body!)
    expect(broken).toBe(false)
    expect(text).toContain('"code":"not_ready"')
    expect(await child.exited).toBe(0)
    // Far short of the 20 s grace and of the 4 s stream.
    expect(performance.now() - sentAt).toBeLessThan(3500)
    expect(logged(dbPath, streamId)).toMatchObject({ error_code: 'not_ready' })
  }, 30_000)
})
