/**
 * Redis for tests that need one of their own (killed and restarted, or a cluster): free
 * ports, `redis-server` children, and cleanup of the keys a test wrote to a shared Redis.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'bun:test'
import { Redis } from 'ioredis'
import { isCi } from './services.ts'

/** A TCP port nothing listens on right now (the OS picks it; a tiny race is accepted). */
export function freePort(): number {
  const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}

/**
 * Whether `redis-server` and `redis-cli` are installed. When not: with CI set, registers a
 * failing test saying so (the project rule: CI runs every suite); otherwise prints one line.
 */
export function redisBinariesForTests(suite: string): boolean {
  const missing = ['redis-server', 'redis-cli'].filter((bin) => Bun.which(bin) === null)
  if (missing.length === 0) return true
  const message = `${suite}: ${missing.join(' and ')} not found on PATH`
  if (isCi()) {
    console.error(`[fail] ${message}, and CI is set, so this is a failure. Install redis-server (apt-get install redis-server).`)
    test('redis-server is installed (required when CI is set)', () => {
      throw new Error(message)
    })
  } else {
    console.warn(`[skip] ${message}; these tests are skipped. With CI set this is a failure.`)
  }
  return false
}

/** A `redis-server` child process on 127.0.0.1. Its `dir` outlives `kill` (for `restart`); remove it with {@link cleanupDir}. */
export interface RedisProcess {
  readonly port: number
  readonly url: string
  readonly dir: string
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>
  /** Start it again on the same port (after `kill`). */
  restart(): Promise<void>
  /** SIGSTOP: connections stay open, nothing answers (a hung server). */
  pause(): void
  /** SIGCONT after `pause`. */
  resume(): void
}

/**
 * Start `redis-server` on `port` (a free one by default), no persistence, working directory
 * a fresh temp dir; resolves once it answers PING.
 */
export async function startRedisServer(options: { port?: number; args?: string[]; dir?: string } = {}): Promise<RedisProcess> {
  const port = options.port ?? freePort()
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sluice-redis-'))
  let proc: ReturnType<typeof Bun.spawn> | undefined
  const start = async () => {
    proc = Bun.spawn(
      ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, ...(options.args ?? [])],
      { cwd: dir, stdout: 'ignore', stderr: 'pipe' },
    )
    await waitForPing(port, 10_000, proc)
  }
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async kill() {
      if (!proc) return
      const p = proc
      proc = undefined
      p.kill('SIGKILL')
      await p.exited
    },
    async restart() {
      if (proc) throw new Error('redis-server is still running')
      await start()
    },
    pause() {
      proc?.kill('SIGSTOP')
    },
    resume() {
      proc?.kill('SIGCONT')
    },
  }
}

/** Remove a temp dir made for redis processes. */
export function cleanupDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** Resolves once something on `port` answers PING; throws after `ms` or if `proc` exits first. */
export async function waitForPing(port: number, ms: number, proc?: ReturnType<typeof Bun.spawn>): Promise<void> {
  const deadline = Date.now() + ms
  let last = ''
  while (Date.now() < deadline) {
    if (proc?.exitCode !== null && proc?.exitCode !== undefined) {
      const err = proc.stderr instanceof ReadableStream ? await new Response(proc.stderr).text() : ''
      throw new Error(`redis-server on port ${port} exited with ${proc.exitCode}: ${err}`)
    }
    const result = await Bun.$`redis-cli -h 127.0.0.1 -p ${port} ping`.nothrow().quiet()
    last = result.stdout.toString().trim() || result.stderr.toString().trim()
    if (last === 'PONG') return
    await Bun.sleep(50)
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${ms} ms (last: ${last})`)
}

/** Delete every key of a hash tag (`{tag}*`) in a shared Redis; returns how many went. */
export async function deleteTaggedKeys(redisUrl: string, tag: string): Promise<number> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await client.connect()
    let cursor = '0'
    let deleted = 0
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `{${tag}}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length) deleted += await client.del(...keys)
    } while (cursor !== '0')
    return deleted
  } finally {
    client.disconnect()
  }
}
