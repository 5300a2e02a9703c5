/**
 * A Postgres server of a test's own, on its own port and data directory, that the test can
 * stop and start (an outage the shared server must not suffer). Built with the installed
 * server binaries (`/usr/lib/postgresql/<version>/bin`, or `initdb` on the PATH). Postgres
 * refuses to run as root: as root, the binaries run as the `postgres` user through `runuser`.
 *
 * Follows the services rule of ./services.ts: when it cannot be started, `null` is returned
 * with a printed line (CI set: a failing test is registered instead).
 */
import { $ } from 'bun'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'bun:test'
import { isCi } from './services.ts'
import { closedPort } from './http.ts'

export interface PostgresInstance {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string
  readonly port: number
  /** Stop the server (fast shutdown: open connections are cut), waiting until it is down. */
  stop(): Promise<void>
  /** Start it again on the same port and data. */
  start(): Promise<void>
  /** Stop it and remove its data directory. */
  destroy(): Promise<void>
}

function binDir(): string | null {
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
    if (versions[0]) return join(root, versions[0], 'bin')
  }
  const which = Bun.which('initdb')
  return which ? which.slice(0, which.lastIndexOf('/')) : null
}

/** Start a fresh Postgres for one test file; `null` (after saying why) when this machine cannot. */
export async function startPostgresInstance(suite: string): Promise<PostgresInstance | null> {
  const bin = binDir()
  const asRoot = process.getuid?.() === 0
  let failure: string | null = null
  if (!bin) failure = 'no Postgres server binaries (initdb) are installed'
  else if (asRoot && !(await $`id -u postgres`.quiet().nothrow()).stdout.toString().trim()) failure = 'running as root and there is no postgres user to run the server as'
  if (failure === null) {
    try {
      return await boot(bin!, asRoot)
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error)
    }
  }
  const message = `${suite}: could not start a private Postgres server (${failure})`
  if (isCi()) {
    console.error(`[fail] ${message}, and CI is set, so this is a failure.`)
    test('a private Postgres server can be started (required when CI is set)', () => {
      throw new Error(message)
    })
  } else {
    console.warn(`[skip] ${message}; its tests are skipped. With CI set this is a failure.`)
  }
  return null
}

async function boot(bin: string, asRoot: boolean): Promise<PostgresInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'))
  const data = join(dir, 'data')
  const run = (args: string[]) => (asRoot ? $`runuser -u postgres -- ${args}` : $`${args}`).quiet().nothrow()
  if (asRoot) {
    const uid = Number((await $`id -u postgres`.quiet()).stdout.toString().trim())
    const gid = Number((await $`id -g postgres`.quiet()).stdout.toString().trim())
    chownSync(dir, uid, gid)
  }
  const init = await run([join(bin, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString().trim()}`)
  const port = await closedPort()
  // fsync off: a test server's data need not survive a power cut, and it starts and stops faster.
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50`
  const start = async () => {
    const r = await run([join(bin, 'pg_ctl'), '-D', data, '-o', opts, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start'])
    if (r.exitCode !== 0) throw new Error(`pg_ctl start failed: ${r.stderr.toString().trim() || r.stdout.toString().trim()}`)
  }
  const stop = async () => {
    const r = await run([join(bin, 'pg_ctl'), '-D', data, '-m', 'fast', '-w', '-t', '30', 'stop'])
    if (r.exitCode !== 0) throw new Error(`pg_ctl stop failed: ${r.stderr.toString().trim() || r.stdout.toString().trim()}`)
  }
  await start()
  let destroyed = false
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async destroy() {
      if (destroyed) return
      destroyed = true
      await run([join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop'])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
