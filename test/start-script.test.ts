/**
 * `bun run start`, the command the README and DESIGN.md give, as a user runs it: it boots the
 * gateway with the memory profile SLUICE_MEMORY names (src/lib/memory.ts), keeping any of
 * the profile's variables the environment already sets, and the boot log line says what is in
 * force. A profile that needs variables the process lacks is applied by replacing the process
 * (execve), so the gateway keeps the pid `bun run start` got.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { MEMORY_PROFILES, MEMORY_VARIABLES, memoryEnv, memoryProfile } from '../src/lib/memory.ts'
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

/**
 * Runs `bun run start` until its boot line; returns that line, after stopping the gateway, with
 * the gateway's parent: `bun run start` itself when src/start.ts replaced its own process.
 */
async function bootLine(extraEnv: Record<string, string>): Promise<Record<string, unknown> & { parentPid: number; runnerPid: number }> {
  const configPath = join(dir, 'sluice.config.json')
  writeFileSync(configPath, JSON.stringify(upstreamConfig(upstream.url)))
  const port = await closedPort()
  const env = processEnv(port, configPath, { SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'info', ...extraEnv })
  for (const k of [...MEMORY_VARIABLES, 'SLUICE_MEMORY']) if (!(k in extraEnv)) delete env[k]
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
  // Field 4 of /proc/<pid>/stat, after the parenthesised command name.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const parentPid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  process.kill(pid, 'SIGTERM')
  expect(await proc.exited).toBe(0)
  return { ...line, parentPid, runnerPid: proc.pid }
}

describe('bun run start', () => {
  test('runs the gateway with MIMALLOC_PURGE_DELAY=-1 when the environment sets none', async () => {
    expect(MEMORY_PROFILES.fast.MIMALLOC_PURGE_DELAY).toBe('-1')
    const line = await bootLine({})
    expect(line.allocator_purge_delay).toBe('-1')
  }, 30_000)

  test("keeps the operator's own MIMALLOC_PURGE_DELAY", async () => {
    const line = await bootLine({ MIMALLOC_PURGE_DELAY: '250' })
    expect(line.allocator_purge_delay).toBe('250')
  }, 30_000)

  test('SLUICE_MEMORY=lean: the process replaces itself with the profile in its environment, keeping its pid', async () => {
    const line = await bootLine({ SLUICE_MEMORY: 'lean' })
    expect(line.memory_profile).toBe('lean')
    expect(line.allocator_purge_delay).toBe(MEMORY_PROFILES.lean.MIMALLOC_PURGE_DELAY)
    expect(line.heap_growth_max_increase).toBe(MEMORY_PROFILES.lean.BUN_JSC_heapGrowthMaxIncrease)
    // execve, not a child: the gateway is the process `bun run start` ran, with nothing in between.
    expect(line.parentPid).toBe(line.runnerPid)
  }, 30_000)

  test("SLUICE_MEMORY=lean keeps the operator's own value of a profile variable", async () => {
    const line = await bootLine({ SLUICE_MEMORY: 'lean', BUN_JSC_heapGrowthMaxIncrease: '0.8' })
    expect(line.heap_growth_max_increase).toBe('0.8')
    expect(line.allocator_purge_delay).toBe(MEMORY_PROFILES.lean.MIMALLOC_PURGE_DELAY)
  }, 30_000)

  test('the default profile is fast and leaves the heap growth to Bun', async () => {
    const line = await bootLine({})
    expect(line.memory_profile).toBe('fast')
    expect(line.heap_growth_max_increase).toBe('Bun default')
    expect(line.parentPid).toBe(line.runnerPid)
  }, 30_000)

  test('src/main.ts started directly with SLUICE_MEMORY=lean but without its variables says so in its log', async () => {
    const configPath = join(dir, 'sluice.config.json')
    writeFileSync(configPath, JSON.stringify(upstreamConfig(upstream.url)))
    const port = await closedPort()
    const env = processEnv(port, configPath, { SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'info', SLUICE_MEMORY: 'lean' })
    for (const k of MEMORY_VARIABLES) delete env[k]
    const proc = Bun.spawn([process.execPath, 'run', 'src/main.ts'], { cwd: ROOT, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
    pids.push(proc.pid)
    // Warnings go to stderr, the boot line to stdout.
    const readUntil = async (stream: ReadableStream<Uint8Array>, needle: string): Promise<string> => {
      const reader = stream.getReader()
      const decoder = new TextDecoder()
      let text = ''
      const deadline = Date.now() + 20_000
      while (!text.includes(needle)) {
        if (Date.now() > deadline) throw new Error(`no "${needle}" within 20 s; so far: ${text.slice(0, 800)}`)
        const { value, done } = await reader.read()
        if (done) throw new Error(`the gateway closed its output before "${needle}": ${text.slice(0, 800)}`)
        text += decoder.decode(value, { stream: true })
      }
      reader.releaseLock()
      return text.split('\n').find((l) => l.includes(needle))!
    }
    const [bootText, warningText] = await Promise.all([readUntil(proc.stdout, 'sluice listening'), readUntil(proc.stderr, 'is not in force')])
    const warning = JSON.parse(warningText) as Record<string, unknown>
    expect(warning.msg).toBe('SLUICE_MEMORY=lean is not in force: MIMALLOC_PURGE_DELAY and BUN_JSC_heapGrowthMaxIncrease must be in the environment the process starts with (bun run start sets them)')
    expect(warning.expected).toEqual({ ...MEMORY_PROFILES.lean })
    const boot = JSON.parse(bootText) as Record<string, unknown>
    expect(boot.memory_profile).toBe('lean')
    expect(boot.heap_growth_max_increase).toBe('Bun default')
    proc.kill('SIGTERM')
    expect(await proc.exited).toBe(0)
  }, 30_000)

  test('an unknown SLUICE_MEMORY stops the start with the accepted values, before anything boots', async () => {
    const configPath = join(dir, 'sluice.config.json')
    writeFileSync(configPath, JSON.stringify(upstreamConfig(upstream.url)))
    const env = processEnv(await closedPort(), configPath, { SLUICE_MEMORY: 'tiny' })
    const proc = Bun.spawn(['bun', 'run', 'start'], { cwd: ROOT, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
    pids.push(proc.pid)
    expect(await proc.exited).toBe(2)
    const stderr = await new Response(proc.stderr).text()
    expect(stderr).toContain('SLUICE_MEMORY must be one of fast, lean (got "tiny")')
    expect(await new Response(proc.stdout).text()).not.toContain('sluice listening')
  }, 30_000)
})

describe('memory profiles', () => {
  test('SLUICE_MEMORY picks the profile; unset or blank is fast; anything else is refused', () => {
    expect(memoryProfile({})).toBe('fast')
    expect(memoryProfile({ SLUICE_MEMORY: ' ' })).toBe('fast')
    expect(memoryProfile({ SLUICE_MEMORY: 'lean' })).toBe('lean')
    expect(() => memoryProfile({ SLUICE_MEMORY: 'LEAN' })).toThrow('SLUICE_MEMORY must be one of fast, lean (got "LEAN")')
  })

  test("a profile's variables, under the environment's own values", () => {
    expect(memoryEnv({})).toEqual({ MIMALLOC_PURGE_DELAY: '-1' })
    expect(memoryEnv({ SLUICE_MEMORY: 'lean' })).toEqual({ ...MEMORY_PROFILES.lean })
    expect(memoryEnv({ SLUICE_MEMORY: 'lean', MIMALLOC_PURGE_DELAY: '500' })).toEqual({ ...MEMORY_PROFILES.lean, MIMALLOC_PURGE_DELAY: '500' })
    // An explicit profile argument wins over SLUICE_MEMORY (the benchmarks pick one per gateway).
    expect(memoryEnv({ SLUICE_MEMORY: 'lean' }, 'fast')).toEqual({ MIMALLOC_PURGE_DELAY: '-1' })
    for (const vars of Object.values(MEMORY_PROFILES)) for (const k of Object.keys(vars)) expect(MEMORY_VARIABLES as readonly string[]).toContain(k)
  })
})
