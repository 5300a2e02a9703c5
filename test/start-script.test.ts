/**
 * `bun run start`, the command the README and DESIGN.md give, as a user runs it: it boots the
 * gateway with the allocator setting of src/lib/allocator.ts unless the environment already
 * chose one, and the boot log line says which is in force.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ALLOCATOR_ENV } from '../src/lib/allocator.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { processEnv, upstreamConfig } from './support/gateway.ts'
import { closedPort } from './support/http.ts'

const ROOT = resolve(import.meta.dir, '..')

let upstream: MockUpstream
let dir: string
const pids: number[] = []

beforeAll(async () => {
  upstream = await startMockUpstream()
  dir = mkdtempSync(join(tmpdir(), 'sluice-start-'))
})
afterAll(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** Runs `bun run start` until its boot line; returns that line, after stopping the gateway. */
async function bootLine(extraEnv: Record<string, string>): Promise<Record<string, unknown>> {
  const configPath = join(dir, 'sluice.config.json')
  writeFileSync(configPath, JSON.stringify(upstreamConfig(upstream.url)))
  const port = await closedPort()
  const env = processEnv(port, configPath, { SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'info', ...extraEnv })
  if (!('MIMALLOC_PURGE_DELAY' in extraEnv)) delete env.MIMALLOC_PURGE_DELAY
  const proc = Bun.spawn(['bun', 'run', 'start'], { cwd: ROOT, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  pids.push(proc.pid)
  const reader = proc.stdout.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + 20_000
  let line: Record<string, unknown> | undefined
  while (line === undefined) {
    if (Date.now() > deadline) throw new Error(`no boot line within 20 s; stdout so far: ${text.slice(0, 500)}`)
    const { value, done } = await reader.read()
    if (done) throw new Error(`bun run start exited before its boot line: ${text.slice(0, 500)} ${await new Response(proc.stderr).text()}`)
    text += decoder.decode(value, { stream: true })
    for (const raw of text.split('\n')) {
      if (!raw.includes('sluice listening')) continue
      line = JSON.parse(raw) as Record<string, unknown>
    }
  }
  // The gateway answers: the line was not printed by something else.
  expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
  const pid = Number(line.pid)
  pids.push(pid)
  process.kill(pid, 'SIGTERM')
  expect(await proc.exited).toBe(0)
  return line
}

describe('bun run start', () => {
  test('runs the gateway with MIMALLOC_PURGE_DELAY=-1 when the environment sets none', async () => {
    expect(ALLOCATOR_ENV.MIMALLOC_PURGE_DELAY).toBe('-1')
    const line = await bootLine({})
    expect(line.allocator_purge_delay).toBe('-1')
  }, 30_000)

  test("keeps the operator's own MIMALLOC_PURGE_DELAY", async () => {
    const line = await bootLine({ MIMALLOC_PURGE_DELAY: '250' })
    expect(line.allocator_purge_delay).toBe('250')
  }, 30_000)
})
