/**
 * Graceful shutdown of the real process: `bun run src/main.ts` receives SIGTERM while a
 * stream is in flight. The stream must finish, new connections must be refused, and the
 * process must exit 0. A signal that reaches it twice at once (Ctrl-C, or a service manager
 * signalling every process, through `bun run start` as well) is one stop: the grace holds.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { processEnv, upstreamConfig } from './support/gateway.ts'
import { closedPort, streamedText, type ChunkLike } from './support/http.ts'

const MAIN = resolve(import.meta.dir, '../src/main.ts')

let upstream: MockUpstream
let dir: string
const procs: Subprocess<'ignore', 'pipe', 'pipe'>[] = []

beforeAll(async () => {
  // 20 pieces 100 ms apart: the stream is still running well after SIGTERM is sent.
  upstream = await startMockUpstream({ chunkDelayMs: 100 })
  dir = mkdtempSync(join(tmpdir(), 'sluice-shutdown-'))
})
afterAll(async () => {
  for (const proc of procs) if (proc.exitCode === null) proc.kill('SIGKILL')
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** Whether a new TCP connection to the port is accepted right now. */
function accepts(port: number): Promise<boolean> {
  return Bun.connect({ hostname: '127.0.0.1', port, socket: { data() {} } }).then(
    (socket) => {
      socket.end()
      return true
    },
    () => false,
  )
}

test('SIGTERM: the in-flight stream completes, new connections are refused, the process exits 0', async () => {
  const configPath = join(dir, 'sluice.config.json')
  writeFileSync(configPath, JSON.stringify({ ...upstreamConfig(upstream.url), server: { shutdown_grace_ms: 20_000 } }))
  const port = await closedPort()
  const child = Bun.spawn(['bun', 'run', MAIN], {
    cwd: dir,
    env: processEnv(port, configPath, { LOG_LEVEL: 'warn' }),
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  procs.push(child)
  const base = `http://127.0.0.1:${port}`

  // Up and serving.
  const bootDeadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited early with ${child.exitCode}: ${await new Response(child.stderr).text()}`)
    if (await fetch(`${base}/health`).then((r) => r.status === 200, () => false)) break
    if (Date.now() > bootDeadline) throw new Error('the gateway did not answer /health')
    await Bun.sleep(50)
  }

  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }], max_tokens: 20, stream: true }),
  })
  expect(res.status).toBe(200)
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  while (!text.includes('"content":"This"')) {
    const { value, done } = await reader.read()
    if (done) throw new Error('the stream ended before SIGTERM was sent')
    text += decoder.decode(value, { stream: true })
  }

  child.kill('SIGTERM')

  // Read the rest of the stream while checking that new connections are refused.
  let streamEnded = false
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
    streamEnded = true
  })()

  let refusedWhileStreaming = false
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline && !streamEnded) {
    if (!(await accepts(port))) {
      refusedWhileStreaming = !streamEnded && child.exitCode === null
      break
    }
    await Bun.sleep(20)
  }
  await rest

  // The stream that was in flight at SIGTERM finished whole.
  const parsed = parseSse(text)
  expect(parsed.done).toBe(true)
  expect(streamedText(parsed.events as ChunkLike[]).split(' ').length).toBe(20)
  expect(refusedWhileStreaming).toBe(true)

  const code = await child.exited
  const stderr = await new Response(child.stderr).text()
  expect({ code, stderr }).toEqual({ code: 0, stderr: expect.any(String) })
  expect(await accepts(port)).toBe(false)
}, 40_000)

test('a signal that arrives twice at once, as through bun run, is one stop: the in-flight stream still completes', async () => {
  const configPath = join(dir, 'twice.config.json')
  writeFileSync(configPath, JSON.stringify({ ...upstreamConfig(upstream.url), server: { shutdown_grace_ms: 20_000 } }))
  const port = await closedPort()
  const child = Bun.spawn(['bun', 'run', MAIN], { cwd: dir, env: processEnv(port, configPath), stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  procs.push(child)
  let stdout = ''
  const decoder = new TextDecoder()
  const reading = (async () => {
    for await (const chunk of child.stdout) stdout += decoder.decode(chunk, { stream: true })
  })()
  const base = `http://127.0.0.1:${port}`
  const bootDeadline = Date.now() + 15_000
  while (!(await fetch(`${base}/health`).then((r) => r.status === 200, () => false))) {
    if (child.exitCode !== null || Date.now() > bootDeadline) throw new Error(`the gateway did not start: ${await new Response(child.stderr).text()}`)
    await Bun.sleep(50)
  }
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }], max_tokens: 20, stream: true }),
  })
  expect(res.status).toBe(200)
  const body = res.text()

  // Ctrl-C on `bun run start`: the terminal signals the gateway, and bun run passes the signal on to it as well.
  child.kill('SIGINT')
  while (!stdout.includes('"shutting down"')) {
    if (child.exitCode !== null) break
    await Bun.sleep(5)
  }
  child.kill('SIGINT')

  const parsed = parseSse(await body)
  expect(parsed.done).toBe(true)
  expect(streamedText(parsed.events as ChunkLike[]).split(' ').length).toBe(20)
  expect(await child.exited).toBe(0)
  await reading
  expect(stdout).not.toContain('shutting down now')
}, 40_000)
