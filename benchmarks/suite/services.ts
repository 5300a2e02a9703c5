/**
 * What the suite's servers need around them, all on 127.0.0.1 and all removed at the end: a
 * private redis-server (so other work on the machine's Redis neither disturbs nor is disturbed),
 * bench databases created and dropped on a Postgres server, the mock upstream, gateways in
 * given configurations with API keys made through the admin API, and the Portkey peer.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SQL } from 'bun'
import { Redis } from 'ioredis'
import { BENCH_MODEL } from '../fixtures/bodies.ts'
import { MOCK_UPSTREAM_CLI } from '../fixtures/mock-upstream.ts'
import { freePort, spawnServer, type ServerProcess } from '../fixtures/processes.ts'
import { DEFAULT_MEMORY_PROFILE, memoryEnv, type MemoryProfile } from '../../src/lib/memory.ts'
import { listensOn } from '../http/proc.ts'

export const ROOT = new URL('../../', import.meta.url).pathname
const GATEWAY_ENTRY = join(ROOT, 'src/main.ts')
const RAW_PROXY = join(ROOT, 'benchmarks/http/raw-proxy.ts')
const LOOPBACK_PRELOAD = join(ROOT, 'benchmarks/http/loopback.ts')

/** Upstream keys every gateway configuration gets (the mock accepts any): the balance plugin spreads over them. */
export const UPSTREAM_KEYS = Array.from({ length: 4 }, (_, i) => ({ id: `k${i + 1}`, secret: `sk-upstream-test-${i + 1}` }))

/** Everything started by the suite, stopped in reverse order by `stopAll`. */
export class Stack {
  private readonly stops: Array<{ name: string; stop: () => Promise<void> }> = []

  constructor(
    readonly tmp: string,
    readonly log: (message: string) => void,
  ) {}

  /** Registers something to stop or remove at the end (or at `releaseSince`). */
  own(name: string, stop: () => Promise<void>): void {
    this.stops.push({ name, stop })
  }

  /** A position to come back to: `releaseSince(mark)` stops what was started after it (a part's servers). */
  mark(): number {
    return this.stops.length
  }

  async releaseSince(mark: number): Promise<void> {
    while (this.stops.length > mark) {
      const entry = this.stops.pop()!
      await entry.stop().catch((error: unknown) => this.log(`could not stop ${entry.name}: ${String(error)}`))
    }
  }

  async stopAll(): Promise<void> {
    await this.releaseSince(0)
  }
}

/** Starts a throw-away redis-server on a free port (no persistence); null when redis-server is not installed. */
export async function startPrivateRedis(stack: Stack): Promise<{ url: string; pid: number } | null> {
  if (Bun.which('redis-server') === null) return null
  const port = freePort()
  const proc = Bun.spawn(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], {
    stdout: 'ignore',
    stderr: 'ignore',
  })
  stack.own('redis', async () => {
    proc.kill('SIGTERM')
    await Promise.race([proc.exited, Bun.sleep(3000)])
    if (proc.exitCode === null) proc.kill('SIGKILL')
  })
  const url = `redis://127.0.0.1:${port}`
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      if ((await client.ping()) === 'PONG') return { url, pid: proc.pid }
    } catch {
      // not up yet
    } finally {
      client.disconnect()
    }
    await Bun.sleep(100)
  }
  throw new Error(`redis-server on port ${port} did not answer PING within 10 s`)
}

/** Creates database `name` on the Postgres server of `serverUrl`; returns its URL. Dropped (forcibly) by the stack. */
export async function createBenchDatabase(stack: Stack, serverUrl: string, name: string): Promise<string> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`)
  const admin = new SQL(serverUrl)
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.close()
  }
  stack.own(`database ${name}`, async () => {
    const sql = new SQL(serverUrl)
    try {
      await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    } finally {
      await sql.close()
    }
  })
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** Whether the Postgres server answers at all (the scale and keys100k parts need it). */
export async function postgresReachable(serverUrl: string): Promise<string | null> {
  const sql = new SQL(serverUrl, { connectionTimeout: 3 })
  try {
    await sql`select 1`
    return null
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  } finally {
    await sql.close().catch(() => {})
  }
}

/** Starts the mock upstream (test/fixtures/mock-upstream.ts) in its own process. */
export async function startMock(stack: Stack): Promise<ServerProcess> {
  const port = freePort()
  return spawnServer({ name: 'mock upstream', cmd: ['bun', 'run', MOCK_UPSTREAM_CLI, '--port', String(port)], port, logFile: join(stack.tmp, 'mock.log'), onSpawn: (stop) => stack.own('mock', stop) })
}

/**
 * Starts the raw Bun pass-through proxy in front of `upstreamOrigin`: with Bun's defaults (the
 * baseline), or with the allocator settings `bun run start` gives the gateway (`tuned`), so a
 * reader can price the gateway against a proxy that got the same setting.
 */
export async function startRawProxy(stack: Stack, upstreamOrigin: string, tuned = false): Promise<ServerProcess> {
  const port = freePort()
  const name = tuned ? 'rawalloc' : 'raw'
  return spawnServer({
    name: tuned ? 'raw proxy (allocator as bun run start)' : 'raw proxy',
    cmd: ['bun', 'run', RAW_PROXY, '--port', String(port), '--upstream', upstreamOrigin],
    ...(tuned && { env: memoryEnv(process.env, DEFAULT_MEMORY_PROFILE) }),
    port,
    logFile: join(stack.tmp, `${name}.log`),
    onSpawn: (stop) => stack.own(name, stop),
  })
}

/** The mock's counters, to prove a target really called it. */
export async function mockStats(origin: string): Promise<{ requests: number; last_authorization: string | null }> {
  const res = await fetch(`${origin}/mock/stats`)
  return (await res.json()) as { requests: number; last_authorization: string | null }
}

/** A gateway configuration of the suite. */
export interface GatewaySpec {
  /** Names the process, its config and log files. */
  name: string
  plugins: unknown[]
  /** REDIS_URL for the gateway (quota buckets, the bus); null = in-process. */
  redisUrl: string | null
  /** DATABASE_URL; default: a SQLite file in the temp dir (the single-instance default). */
  databaseUrl?: string
  /** Auth options, e.g. a bigger key cache. */
  authOptions?: Record<string, unknown>
  /** SLUICE_MEMORY of the process, as `bun run start` would apply it (default: DEFAULT_MEMORY_PROFILE). */
  memory?: MemoryProfile
}

/** Plugins list as the config file takes it; auth without the demo key (nothing printed, nothing extra in the database). */
function pluginEntries(spec: GatewaySpec): unknown[] {
  return spec.plugins.map((p) => (p === 'auth' ? { use: 'auth', options: { demo_key: false, ...spec.authOptions } } : p))
}

/** Writes the gateway's config: one openai-compatible provider (the mock, 4 keys) serving `mock-gpt`, with pricing. */
function writeConfig(stack: Stack, spec: GatewaySpec, mockOrigin: string): string {
  const file = join(stack.tmp, `sluice.${spec.name}.config.json`)
  const config = {
    environment: 'dev',
    providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `${mockOrigin}/v1`, keys: UPSTREAM_KEYS }],
    models: [{ name: BENCH_MODEL, targets: [{ provider: 'up', model: BENCH_MODEL }], pricing: { input: 2.5, output: 10 } }],
    plugins: pluginEntries(spec),
  }
  writeFileSync(file, JSON.stringify(config, null, 2))
  return file
}

/**
 * Gateway settings from the environment that the suite's configurations leave unset: the gateway
 * must not take them from the shell that runs the suite (a REDIS_URL exported there would put every
 * row on that Redis, a SLUICE_ENV another environment, a SLUICE_REUSE_PORT a shared port).
 */
export const GATEWAY_ENV_UNSET = ['REDIS_URL', 'SLUICE_ENV', 'SLUICE_REUSE_PORT', 'SLUICE_TLS_CERT', 'SLUICE_TLS_KEY', 'SLUICE_ENCRYPTION_KEY_PREVIOUS'] as const

/** The environment of a gateway process. */
function gatewayEnv(stack: Stack, spec: GatewaySpec, mockOrigin: string, port: number, adminKey: string, reusePort: boolean): Record<string, string> {
  const memory = spec.memory ?? DEFAULT_MEMORY_PROFILE
  const env: Record<string, string> = {
    PORT: String(port),
    HOST: '127.0.0.1',
    SLUICE_CONFIG: writeConfig(stack, spec, mockOrigin),
    DATABASE_URL: spec.databaseUrl ?? `sqlite://${join(stack.tmp, `${spec.name}.db`)}`,
    LOG_LEVEL: 'error',
    SLUICE_ADMIN_KEY: adminKey,
    // Set so a dev boot writes no key file into the repository's data dir.
    SLUICE_ENCRYPTION_KEY: ENCRYPTION_KEY,
    // What `bun run start` sets (src/lib/memory.ts): the gateway is measured as it is run.
    SLUICE_MEMORY: memory,
    ...memoryEnv(process.env, memory),
  }
  if (spec.redisUrl !== null) env.REDIS_URL = spec.redisUrl
  if (reusePort) env.SLUICE_REUSE_PORT = '1'
  return env
}

/** One master key for every gateway of a run, so processes sharing a database agree. */
const ENCRYPTION_KEY = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64')

/** Starts one gateway process; `port` given and `reusePort` set = join the processes already on it. */
export async function startGateway(
  stack: Stack,
  spec: GatewaySpec,
  mockOrigin: string,
  adminKey: string,
  opts: { port?: number; reusePort?: boolean; instance?: number } = {},
): Promise<ServerProcess> {
  const port = opts.port ?? freePort()
  const reusePort = opts.reusePort === true
  const tag = opts.instance === undefined ? spec.name : `${spec.name}-${opts.instance}`
  const server = await spawnServer({
    name: `sluice ${tag}`,
    cmd: ['bun', 'run', GATEWAY_ENTRY],
    cwd: ROOT,
    env: gatewayEnv(stack, spec, mockOrigin, port, adminKey, reusePort),
    // What gatewayEnv sets wins; what it leaves out must not come from the suite's shell.
    unsetEnv: GATEWAY_ENV_UNSET,
    port,
    logFile: join(stack.tmp, `gateway-${tag}.log`),
    startTimeoutMs: 60_000,
    // Sharing a port, another process answers /health already: wait for this one's own listening socket.
    ...(reusePort && { ready: (pid: number) => listensOn(pid, port) }),
    onSpawn: (stop) => stack.own(`gateway ${tag}`, stop),
  })
  return server
}

/** Calls the admin API; returns the JSON answer or throws with the status and body. */
export async function admin(origin: string, adminKey: string, method: 'POST' | 'GET', path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${origin}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  if (res.status >= 300) throw new Error(`admin ${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`)
  return JSON.parse(text) as Record<string, unknown>
}

export { GENEROUS } from '../fixtures/grants.ts'

/** Creates a user (once per origin and name) and a key through the admin API. */
export async function provisionKey(origin: string, adminKey: string, name: string, grants: { limits?: unknown; budget?: unknown }): Promise<{ id: string; key: string; userId: string }> {
  const user = await admin(origin, adminKey, 'POST', '/admin/users', { name: `bench ${name}` })
  const key = await admin(origin, adminKey, 'POST', '/admin/keys', { user_id: user.id, name, ...grants })
  if (typeof key.key !== 'string' || typeof key.id !== 'string') throw new Error('POST /admin/keys returned no key')
  return { id: key.id, key: key.key, userId: String(user.id) }
}

const PEER_VERSION = '1.15.2'
const PEER_DIR = join(ROOT, 'benchmarks/.peer')
const PEER_ENTRY = join(PEER_DIR, 'node_modules/@portkey-ai/gateway/build/start-server.js')

/**
 * Installs @portkey-ai/gateway at the pinned version into benchmarks/.peer (gitignored) unless it
 * is there; returns its entry file, or the reason it could not be installed.
 */
export async function ensurePeer(log: (m: string) => void): Promise<{ entry: string } | { skipped: string }> {
  const installed = (): boolean => {
    try {
      return (JSON.parse(readFileSync(join(PEER_DIR, 'node_modules/@portkey-ai/gateway/package.json'), 'utf8')) as { version?: string }).version === PEER_VERSION && existsSync(PEER_ENTRY)
    } catch {
      return false
    }
  }
  if (installed()) return { entry: PEER_ENTRY }
  if (Bun.which('npm') === null) return { skipped: 'npm is not installed' }
  log(`installing @portkey-ai/gateway@${PEER_VERSION} into benchmarks/.peer (once)…`)
  const proc = Bun.spawn(['npm', 'install', '--prefix', PEER_DIR, '--no-audit', '--no-fund', '--save-exact', `@portkey-ai/gateway@${PEER_VERSION}`], { stdout: 'pipe', stderr: 'pipe' })
  const guard = setTimeout(() => proc.kill('SIGKILL'), 300_000)
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(guard)
  if (code !== 0 || !installed()) return { skipped: `npm install failed (exit ${code}): ${(err || out).trim().split('\n').slice(-3).join(' ')}` }
  return { entry: PEER_ENTRY }
}

/** Starts Portkey on a free port of 127.0.0.1 (`--port=N`; headless, production mode: no console UI). */
export async function startPeer(stack: Stack, entry: string): Promise<ServerProcess> {
  const port = freePort()
  const server = await spawnServer({
    name: 'portkey',
    // It listens on every interface when given only a port; the preload keeps it on loopback.
    cmd: ['bun', '--preload', LOOPBACK_PRELOAD, entry, `--port=${port}`, '--headless'],
    env: { NODE_ENV: 'production' },
    port,
    healthPath: '/',
    logFile: join(stack.tmp, 'portkey.log'),
    onSpawn: (stop) => stack.own('portkey', stop),
  })
  return server
}

/** The headers that route a request through Portkey to the mock, with an upstream key. */
export function peerHeaders(mockOrigin: string): Record<string, string> {
  return { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${mockOrigin}/v1` }
}
