/**
 * The HTTP benchmark: in one run, on this machine, it measures the mock upstream directly,
 * the raw Bun proxy (the baseline) and the gateway, each in its own process, with the same
 * bodies, loads and rounds, and writes the table to benchmarks/results/.
 *
 *   bun run bench [--quick] [--duration 10] [--rounds 3] [--connections 50] [--rate 500]
 *                 [--scenario chat|stream|stream-open|all] [--mode concurrency|rate|all]
 *                 [--targets mock,raw,gateway] [--plugins '["auth"]'] [--env KEY=VALUE ...]
 *                 [--keys 8] [--strategy latency] [--baseline-plugins '[]'] [--key-limits none]
 *
 * Everything listens on 127.0.0.1 and every load step is bounded in time.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { SCENARIOS, BENCH_MODEL, type ScenarioName } from '../fixtures/bodies.ts'
import { MOCK_UPSTREAM_CLI } from '../fixtures/mock-upstream.ts'
import { freePort, spawnServer, type ServerProcess } from '../fixtures/processes.ts'
import type { FixedRateResult } from './fixed-rate.ts'
import { cpuMicros, sampleRss } from './proc.ts'
import { TARGET_LABELS, renderTable, summarize, writeResults, type LoadMode, type RunMeta, type Sample, type TargetName } from './report.ts'
import { verifyTarget, type Verification } from './verify.ts'
import { hasWrk, runWrk } from './wrk.ts'
import { memoryEnv } from '../../src/lib/memory.ts'
import { STRATEGIES, type Strategy } from '../../src/config/schema.ts'
import { GENEROUS } from '../fixtures/grants.ts'
import { GATEWAY_ENV_UNSET } from '../suite/services.ts'
import { checkBalanceSpreads, checkQuotaInRedis } from '../suite/checks.ts'
import { gitInfo } from '../suite/report.ts'

const ROOT = new URL('../../', import.meta.url).pathname
const RAW_PROXY = new URL('./raw-proxy.ts', import.meta.url).pathname
const FIXED_RATE = new URL('./fixed-rate.ts', import.meta.url).pathname
const GATEWAY_ENTRY = join(ROOT, 'src/main.ts')
const UPSTREAM_SECRET = 'sk-upstream-test'

/** Parsed command-line settings. */
interface Settings {
  durationS: number
  rounds: number
  warmupS: number
  connections: number
  threads: number
  rate: number
  scenarios: ScenarioName[]
  modes: LoadMode[]
  targets: TargetName[]
  plugins: unknown[]
  /** Provider keys the gateway's one provider gets (all accepted by the mock). */
  keys: number
  /** The bench model's balancing strategy (what the balance plugin picks keys by); null = the default. */
  strategy: Strategy | null
  /** Plugins of a second gateway measured in the same run (one key): the `baseline` row; null = none. */
  baselinePlugins: unknown[] | null
  env: Record<string, string>
  apiKey: string | undefined
  /** Whether the API key the runner creates carries GENEROUS limits and budget (the default) or none. */
  keyLimits: boolean
  label: string | null
  outDir: string
  mockChunks: number | undefined
  mockChunkDelayMs: number | undefined
  mockLatencyMs: number | undefined
}

const USAGE = `usage: bun run bench [options]
  --quick                 short run: 3 s, 1 round, 1 s warm-up (explicit flags still win)
  --duration <s>          seconds per measurement (default 10)
  --rounds <n>            rounds per measurement; medians and min–max are reported (default 3)
  --warmup <s>            warm-up seconds per target and scenario (default 2)
  --connections <n>       wrk connections for the fixed-concurrency load (default 50)
  --threads <n>           wrk threads (default 1: leaves the other core to the servers)
  --rate <n>              requests per second for the fixed-rate load (default 500)
  --scenario <s>          chat | stream | stream-open | all (default all)
  --mode <m>              concurrency | rate | all (default all)
  --targets <list>        comma list of mock, raw, gateway (default all three)
  --plugins <json>        gateway plugins list, e.g. '["auth","quota"]' (default [])
  --env KEY=VALUE         extra environment for the gateway (repeatable)
  --keys <n>              provider keys of the gateway's provider, e.g. 8 for the balance plugin (default 1)
  --strategy <name>       the gateway model's strategy: ${STRATEGIES.join(', ')} (default: weighted)
  --baseline-plugins <json>  also run a second gateway with these plugins and one key, measured in the
                          same run as the row "sluice (baseline)", e.g. '[]' to price a plugin set
  --api-key <key>         bearer key for every target (default: none, or one created through
                          the admin API when the plugins include "auth")
  --key-limits <g>        generous | none: the created key's limits and budget (default generous:
                          limits no run reaches, so quota checks every bucket in Redis; none:
                          quota has nothing to check and admits without a Redis call)
  --label <name>          appended to the results file names, e.g. auth-on
  --out <dir>             results directory (default benchmarks/results)
  --mock-chunks <n>, --mock-chunk-delay-ms <ms>, --mock-latency-ms <ms>   shape the mock upstream`

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string', default: '50' },
      threads: { type: 'string', default: '1' },
      rate: { type: 'string', default: '500' },
      scenario: { type: 'string', default: 'all' },
      mode: { type: 'string', default: 'all' },
      targets: { type: 'string', default: 'mock,raw,gateway' },
      plugins: { type: 'string', default: '[]' },
      keys: { type: 'string', default: '1' },
      strategy: { type: 'string' },
      'baseline-plugins': { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      'api-key': { type: 'string' },
      'key-limits': { type: 'string', default: 'generous' },
      label: { type: 'string' },
      out: { type: 'string', default: join(ROOT, 'benchmarks/results') },
      'mock-chunks': { type: 'string' },
      'mock-chunk-delay-ms': { type: 'string' },
      'mock-latency-ms': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const positive = (name: string, raw: string): number => {
    const value = Number(raw)
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got '${raw}'`)
    return value
  }
  const optional = (name: string, raw: string | undefined): number | undefined => (raw === undefined ? undefined : positive(name, raw))
  const pick = <T extends string>(name: string, raw: string, allowed: readonly T[]): T[] => {
    if (raw === 'all') return [...allowed]
    const chosen = raw.split(',').map((s) => s.trim())
    for (const c of chosen) if (!allowed.includes(c as T)) throw new Error(`--${name}: '${c}' is not one of ${allowed.join(', ')}`)
    return chosen as T[]
  }
  const pluginList = (name: string, raw: string): unknown[] => {
    let list: unknown
    try {
      list = JSON.parse(raw)
    } catch {
      throw new Error(`--${name} must be a JSON array, got '${raw}'`)
    }
    if (!Array.isArray(list)) throw new Error(`--${name} must be a JSON array, got '${raw}'`)
    return list
  }
  const plugins = pluginList('plugins', values.plugins)
  const baselinePlugins = values['baseline-plugins'] === undefined ? null : pluginList('baseline-plugins', values['baseline-plugins'])
  // One API key goes to every target, and each gateway has its own database: auth can be on one gateway only.
  if (baselinePlugins !== null && (usesAuth(baselinePlugins) || usesAuth(plugins))) {
    throw new Error('--baseline-plugins cannot be combined with the auth plugin (each gateway would need its own API key)')
  }
  const keys = positive('keys', values.keys)
  if (!Number.isInteger(keys) || keys > 1000) throw new Error(`--keys must be an integer from 1 to 1000, got '${values.keys}'`)
  const strategy = values.strategy === undefined ? null : pick('strategy', values.strategy, STRATEGIES)
  if (strategy !== null && strategy.length !== 1) throw new Error(`--strategy takes one of ${STRATEGIES.join(', ')}`)
  const env: Record<string, string> = {}
  for (const pair of values.env) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new Error(`--env expects KEY=VALUE, got '${pair}'`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  const keyLimits = pick('key-limits', values['key-limits'], ['generous', 'none'] as const)
  if (keyLimits.length !== 1) throw new Error('--key-limits takes generous or none')
  const label = values.label ?? null
  if (label !== null && !/^[a-z0-9][a-z0-9-]{0,40}$/.test(label)) throw new Error('--label must be lower-case letters, digits and dashes')
  return {
    durationS: positive('duration', values.duration ?? (values.quick ? '3' : '10')),
    rounds: Math.round(positive('rounds', values.rounds ?? (values.quick ? '1' : '3'))),
    warmupS: positive('warmup', values.warmup ?? (values.quick ? '1' : '2')),
    connections: Math.round(positive('connections', values.connections)),
    threads: Math.round(positive('threads', values.threads)),
    rate: positive('rate', values.rate),
    scenarios: pick('scenario', values.scenario, Object.keys(SCENARIOS) as ScenarioName[]),
    modes: pick('mode', values.mode, ['concurrency', 'rate'] as const),
    targets: [
      ...pick('targets', values.targets, ['mock', 'raw', 'gateway'] as const),
      ...(baselinePlugins !== null ? (['baseline'] as const) : []),
    ],
    plugins,
    keys,
    strategy: strategy?.[0] ?? null,
    baselinePlugins,
    env,
    apiKey: values['api-key'],
    keyLimits: keyLimits[0] === 'generous',
    label,
    outDir: values.out,
    mockChunks: optional('mock-chunks', values['mock-chunks']),
    mockChunkDelayMs: values['mock-chunk-delay-ms'] === undefined ? undefined : Number(values['mock-chunk-delay-ms']),
    mockLatencyMs: values['mock-latency-ms'] === undefined ? undefined : Number(values['mock-latency-ms']),
  }
}

/** A server being measured. */
interface Target {
  name: TargetName
  /** Base URL ending in `/v1`. */
  baseUrl: string
  /** The process whose CPU and memory are charged to this row. */
  pid: number
}

function log(message: string): void {
  console.error(message)
}

function machineInfo(): RunMeta['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown'
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu
  } catch {
    // not Linux: keep os.cpus()
  }
  return { nproc: cpus().length, cpu, memoryGb: Math.round(totalmem() / 2 ** 30), kernel: release() }
}

function wrkVersion(): string | null {
  if (!hasWrk()) return null
  const out = Bun.spawnSync(['wrk', '-v'])
  return `${out.stdout.toString()}${out.stderr.toString()}`.split('\n')[0]?.split(' Copyright')[0]?.trim() ?? 'wrk'
}

/** The upstream secret of key `i` (1-based) out of `n`: the one secret alone, numbered when there are more. */
const upstreamSecret = (i: number, n: number): string => (n === 1 ? UPSTREAM_SECRET : `${UPSTREAM_SECRET}-${i}`)

function gatewayConfig(mockUrl: string, plugins: unknown[], keyCount: number, strategy: Strategy | null): string {
  const keys = Array.from({ length: keyCount }, (_, i) => ({ id: `k${i + 1}`, secret: upstreamSecret(i + 1, keyCount) }))
  return JSON.stringify(
    {
      environment: 'dev',
      providers: [{ id: 'up', type: 'openai-compatible', baseUrl: mockUrl, keys }],
      // Priced as the suite's model, so the USD budget and the cost columns are computed as in a deployment.
      models: [{ name: BENCH_MODEL, ...(strategy === null ? {} : { strategy }), targets: [{ provider: 'up', model: BENCH_MODEL }], pricing: { input: 2.5, output: 10 } }],
      plugins,
    },
    null,
    2,
  )
}

function usesPlugin(plugins: readonly unknown[], name: string): boolean {
  return plugins.some((p) => p === name || (typeof p === 'object' && p !== null && 'use' in p && p.use === name))
}

function usesAuth(plugins: readonly unknown[]): boolean {
  return usesPlugin(plugins, 'auth')
}

/**
 * Creates a user and an API key through the admin API (DESIGN.md), for runs with the auth plugin on;
 * with `generous`, the key carries limits and a budget no run reaches, as a deployment's keys do.
 */
async function provisionKey(origin: string, adminKey: string, generous: boolean): Promise<{ key: string; id: string }> {
  const call = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${origin}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
      body: JSON.stringify(body),
    })
    const text = await res.text()
    if (res.status !== 201 && res.status !== 200) throw new Error(`admin ${path} answered ${res.status}: ${text.slice(0, 300)}`)
    return JSON.parse(text) as Record<string, unknown>
  }
  const user = await call('/admin/users', { name: 'bench' })
  const key = await call('/admin/keys', { user_id: user.id, name: 'bench', ...(generous ? GENEROUS : {}) })
  if (typeof key.key !== 'string' || typeof key.id !== 'string') throw new Error('admin /admin/keys returned no key')
  return { key: key.key, id: key.id }
}

async function mockStats(origin: string): Promise<{ requests: number; last_authorization: unknown }> {
  const res = await fetch(`${origin}/mock/stats`)
  return (await res.json()) as { requests: number; last_authorization: unknown }
}

async function measure(target: Target, scenario: ScenarioName, mode: LoadMode, round: number, s: Settings, bodyFiles: Record<ScenarioName, string>, apiKey: string | undefined): Promise<Sample> {
  const url = `${target.baseUrl}/chat/completions`
  const cpuBefore = cpuMicros(target.pid)
  const rss = sampleRss(target.pid)
  let sample: Omit<Sample, 'cpuUsPerReq' | 'peakRssMb'>
  let served: number
  if (mode === 'concurrency') {
    const r = await runWrk({ url, bodyFile: bodyFiles[scenario], apiKey, connections: s.connections, threads: s.threads, durationS: s.durationS })
    sample = { scenario, mode, target: target.name, round, rps: r.rps, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, requests: r.requests, non2xx: r.non2xx, errors: r.socketErrors }
    served = r.requests
  } else {
    const r = await runFixedRateProcess(url, bodyFiles[scenario], SCENARIOS[scenario].stream, s.rate, s.durationS, apiKey)
    sample = {
      scenario,
      mode,
      target: target.name,
      round,
      rps: r.achievedRps,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      requests: r.ok + r.non2xx + r.invalid,
      non2xx: r.non2xx,
      errors: r.invalid + r.failed + r.timedOut + r.dropped,
    }
    // The server also answered the generator's unrecorded warm-up inside this CPU window.
    served = sample.requests + r.warmupAnswered
  }
  const cpu = cpuMicros(target.pid) - cpuBefore
  const peakKib = rss.stop()
  return { ...sample, cpuUsPerReq: served > 0 ? cpu / served : Number.NaN, peakRssMb: peakKib / 1024 }
}

/** The fixed-rate generator runs in its own process, away from the runner's timers and /proc sampling. */
async function runFixedRateProcess(url: string, bodyFile: string, stream: boolean, rate: number, durationS: number, apiKey: string | undefined): Promise<FixedRateResult> {
  const args = ['bun', 'run', FIXED_RATE, '--url', url, '--body-file', bodyFile, '--rate', String(rate), '--duration', String(durationS)]
  if (stream) args.push('--stream')
  if (apiKey !== undefined) args.push('--api-key', apiKey)
  const proc = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
  const guard = setTimeout(() => proc.kill('SIGKILL'), (durationS + 30) * 1000)
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(guard)
  const line = stdout.split('\n').find((l) => l.startsWith('FIXED_RATE_JSON '))
  if (code !== 0 || line === undefined) throw new Error(`fixed-rate generator failed (exit ${code}): ${stderr.trim() || stdout.trim()}`)
  return JSON.parse(line.slice('FIXED_RATE_JSON '.length)) as FixedRateResult
}

async function warmUp(target: Target, scenario: ScenarioName, s: Settings, bodyFiles: Record<ScenarioName, string>, apiKey: string | undefined): Promise<void> {
  const url = `${target.baseUrl}/chat/completions`
  if (hasWrk()) await runWrk({ url, bodyFile: bodyFiles[scenario], apiKey, connections: s.connections, threads: s.threads, durationS: s.warmupS })
  else await runFixedRateProcess(url, bodyFiles[scenario], SCENARIOS[scenario].stream, s.rate, s.warmupS, apiKey)
}

function fmt(sample: Sample): string {
  return (
    `${Math.round(sample.rps).toLocaleString('en-US')} req/s, p50 ${sample.p50Ms.toFixed(2)} ms, p99 ${sample.p99Ms.toFixed(2)} ms, ` +
    `${Math.round(sample.cpuUsPerReq)} µs CPU/req, ${Math.round(sample.peakRssMb)} MB` +
    (sample.non2xx + sample.errors > 0 ? `, ${sample.non2xx} non-2xx, ${sample.errors} errors` : '')
  )
}

/** Runs the benchmark with command-line `argv`; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let s: Settings
  try {
    s = parseSettings(argv)
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`)
    return 2
  }
  const notes: string[] = []
  if (s.modes.includes('concurrency') && !hasWrk()) {
    console.error('wrk is not installed; it drives the fixed-concurrency load. Install it with `apt-get install -y wrk` (Debian/Ubuntu) or run with --mode rate.')
    return 2
  }
  if (s.targets.includes('gateway') && !existsSync(GATEWAY_ENTRY)) {
    log(`note: ${GATEWAY_ENTRY} does not exist yet; measuring without the gateway row`)
    notes.push('gateway row skipped: src/main.ts did not exist')
    s.targets = s.targets.filter((t) => t !== 'gateway')
  }

  // Per measurement: the load itself, the 0.5 s pause, and for fixed rate the generator's start and 1 s warm-up.
  const perRound = s.modes.reduce((sum, mode) => sum + s.durationS + (mode === 'rate' ? 2 : 0.5), 0)
  const estimate = s.scenarios.length * s.targets.length * (s.warmupS + 1 + s.rounds * perRound)
  log(`sluice HTTP benchmark: ${s.scenarios.join('+')} × ${s.modes.join('+')} × ${s.targets.join('+')}, ${s.rounds} round(s) of ${s.durationS} s; about ${Math.ceil(estimate / 60)} min`)

  // Read before the run: a commit made while it runs must not be named as the code measured.
  const git = gitInfo(ROOT)
  const startedAt = new Date()
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-'))
  const servers: ServerProcess[] = []
  const cleanup = async (): Promise<void> => {
    await Promise.all(servers.map((server) => server.stop()))
  }
  const onSignal = (): void => {
    void cleanup().then(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const bodyFiles = {} as Record<ScenarioName, string>
    for (const name of Object.keys(SCENARIOS) as ScenarioName[]) {
      bodyFiles[name] = join(tmp, `${name}.json`)
      writeFileSync(bodyFiles[name], SCENARIOS[name].body)
    }

    // The mock always runs: it is the upstream of the other two.
    const mockPort = freePort()
    const mockArgs = ['bun', 'run', MOCK_UPSTREAM_CLI, '--port', String(mockPort)]
    if (s.mockChunks !== undefined) mockArgs.push('--chunks', String(s.mockChunks))
    if (s.mockChunkDelayMs !== undefined) mockArgs.push('--chunk-delay-ms', String(s.mockChunkDelayMs))
    if (s.mockLatencyMs !== undefined) mockArgs.push('--latency-ms', String(s.mockLatencyMs))
    const mock = await spawnServer({ name: 'mock upstream', cmd: mockArgs, port: mockPort, logFile: join(tmp, 'mock.log') })
    servers.push(mock)
    const targets: Target[] = []
    if (s.targets.includes('mock')) targets.push({ name: 'mock', baseUrl: `${mock.origin}/v1`, pid: mock.pid })

    if (s.targets.includes('raw')) {
      const port = freePort()
      const raw = await spawnServer({ name: 'raw proxy', cmd: ['bun', 'run', RAW_PROXY, '--port', String(port), '--upstream', mock.origin], port, logFile: join(tmp, 'raw.log') })
      servers.push(raw)
      targets.push({ name: 'raw', baseUrl: `${raw.origin}/v1`, pid: raw.pid })
    }

    let apiKey = s.apiKey
    const adminKey = s.env.SLUICE_ADMIN_KEY ?? `bench-admin-${crypto.randomUUID()}`
    const spawnGateway = async (name: 'gateway' | 'baseline', plugins: unknown[], keys: number, strategy: Strategy | null): Promise<ServerProcess> => {
      const port = freePort()
      const configFile = join(tmp, `sluice.${name}.config.json`)
      writeFileSync(configFile, gatewayConfig(`${mock.origin}/v1`, plugins, keys, strategy))
      const env = {
        PORT: String(port),
        HOST: '127.0.0.1',
        SLUICE_CONFIG: configFile,
        // A file, as the suite and a single instance use: in memory, every logged request would stay in
        // the process and its RSS would grow by each row (~0.5 KB) for as long as the run lasts.
        DATABASE_URL: `sqlite://${join(tmp, `${name}.db`)}`,
        LOG_LEVEL: 'error',
        SLUICE_ADMIN_KEY: adminKey,
        // Set so a dev boot does not write a key file into the repository's data dir.
        SLUICE_ENCRYPTION_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64'),
        // As `bun run start` runs it (src/lib/memory.ts); --env MIMALLOC_PURGE_DELAY=… overrides.
        ...memoryEnv(),
        ...s.env,
      }
      // Only what is set here and with --env: a REDIS_URL exported in the shell would put quota on that Redis unsaid.
      const server = await spawnServer({ name, cmd: ['bun', 'run', GATEWAY_ENTRY], cwd: ROOT, env, unsetEnv: GATEWAY_ENV_UNSET, port, logFile: join(tmp, `${name}.log`) })
      servers.push(server)
      targets.push({ name, baseUrl: `${server.origin}/v1`, pid: server.pid })
      return server
    }
    if (s.baselinePlugins !== null) await spawnGateway('baseline', s.baselinePlugins, 1, null)
    // What was checked of the gateway's plugins before the load, kept in the results file.
    const checks: string[] = []
    const check = (line: string): void => {
      checks.push(line)
      log(`verified ${line}`)
    }
    if (s.targets.includes('gateway')) {
      const gateway = await spawnGateway('gateway', s.plugins, s.keys, s.strategy)
      if (apiKey === undefined && usesAuth(s.plugins)) {
        const created = await provisionKey(gateway.origin, adminKey, s.keyLimits)
        apiKey = created.key
        log(`created a benchmark API key through the admin API (${s.keyLimits ? 'generous limits and budget' : 'no limits'})`)
        // Quota on Redis with a key that has limits: its buckets must be in Redis, or the row leaves admission out.
        if (usesPlugin(s.plugins, 'quota') && s.env.REDIS_URL !== undefined && s.keyLimits) {
          check(await checkQuotaInRedis(TARGET_LABELS.gateway, `${gateway.origin}/v1/chat/completions`, created.key, created.id, s.env.REDIS_URL))
        }
      }
      // Balance over --keys N: the requests must reach the mock with more than one of them, or the row measured one key.
      if (usesPlugin(s.plugins, 'balance') && s.keys > 1) {
        check(await checkBalanceSpreads(TARGET_LABELS.gateway, `${gateway.origin}/v1/chat/completions`, apiKey, mock.origin, Math.max(8, 2 * s.keys)))
      }
      if (usesPlugin(s.plugins, 'quota') && s.env.REDIS_URL === undefined) {
        notes.push('quota ran on the in-process store (no --env REDIS_URL): its admissions made no Redis round trip, unlike a deployment sharing limits through Redis')
      }
    }

    const verification: Record<string, Verification> = {}
    for (const target of targets) {
      const before = await mockStats(mock.origin)
      verification[target.name] = await verifyTarget(TARGET_LABELS[target.name], target.baseUrl, apiKey)
      const after = await mockStats(mock.origin)
      // Identical bodies could come from the gateway's built-in mock provider; the upstream's counter proves the hop happened.
      if (after.requests - before.requests < 2) throw new Error(`${TARGET_LABELS[target.name]} answered without calling the mock upstream`)
      const keys = target.name === 'gateway' ? s.keys : 1
      const sent = new Set(Array.from({ length: keys }, (_, i) => `Bearer ${upstreamSecret(i + 1, keys)}`))
      if ((target.name === 'gateway' || target.name === 'baseline') && !sent.has(String(after.last_authorization))) {
        throw new Error(`${TARGET_LABELS[target.name]} did not send a configured upstream key (saw ${String(after.last_authorization)})`)
      }
      log(`verified ${TARGET_LABELS[target.name]}: completion, stream framing, [DONE] and usage are valid, and the upstream was called`)
    }

    const samples: Sample[] = []
    for (const scenario of s.scenarios) {
      for (const target of targets) await warmUp(target, scenario, s, bodyFiles, apiKey)
      for (const mode of s.modes) {
        for (let round = 1; round <= s.rounds; round++) {
          // Rotate the order each round so slow drift (heat, page cache) does not always favour one target.
          const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]).filter((t): t is Target => t !== undefined)
          for (const target of order) {
            const sample = await measure(target, scenario, mode, round, s, bodyFiles, apiKey)
            samples.push(sample)
            log(`[${scenario}/${mode} round ${round}] ${TARGET_LABELS[target.name]}: ${fmt(sample)}`)
            // Let sockets from the last run close before the next one starts.
            await Bun.sleep(500)
          }
        }
      }
    }

    const rows = summarize(samples)
    const table = renderTable(rows, { connections: s.connections, rate: s.rate })
    for (const r of rows) {
      if (!r.valid) notes.push(`**not valid**: ${r.scenario}/${r.mode} ${TARGET_LABELS[r.target]} had ${r.non2xx} non-2xx answers and ${r.errors} errors; no ratio is read from it or priced against it`)
    }
    notes.push(
      'CPU µs/req and peak RSS are of the target server process only (for the proxies, not of the mock behind them).',
      `All processes share this machine's cores: wrk (${s.threads} thread), the mock, the proxy or gateway; compare rows of one run, not across machines.`,
    )
    const meta: RunMeta = {
      date: startedAt.toISOString(),
      commit: git.commit,
      dirty: git.dirty,
      label: s.label,
      machine: machineInfo(),
      bun: Bun.version,
      wrk: wrkVersion(),
      settings: {
        duration_s: s.durationS,
        rounds: s.rounds,
        warmup_s: s.warmupS,
        connections: s.connections,
        wrk_threads: s.threads,
        rate: s.rate,
        plugins: s.plugins,
        keys: s.keys,
        strategy: s.strategy,
        baseline_plugins: s.baselinePlugins,
        key_limits: s.apiKey === undefined && usesAuth(s.plugins) ? (s.keyLimits ? 'generous' : 'none') : null,
        // Where quota kept its buckets: only --env REDIS_URL gives the gateway a Redis (the shell's is not passed on).
        quota_store: usesPlugin(s.plugins, 'quota') ? (s.env.REDIS_URL !== undefined ? 'redis' : 'in-process') : null,
        extra_env: Object.keys(s.env),
        body_bytes: Object.fromEntries(s.scenarios.map((name) => [name, SCENARIOS[name].body.length])),
      },
      notes,
    }
    const files = writeResults(s.outDir, meta, samples, rows, table, { verification, checks })
    console.log(`\n${table}`)
    for (const note of notes) console.log(`- ${note}`)
    console.log(`\nresults: ${files.md}\n         ${files.json}`)
    const failures = rows.reduce((sum, r) => sum + r.non2xx + r.errors, 0)
    if (failures > 0) log(`warning: ${failures} non-2xx answers or errors during the run (see the table)`)
    return 0
  } catch (error) {
    console.error(`benchmark failed: ${error instanceof Error ? error.message : String(error)}`)
    return 1
  } finally {
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    rmSync(tmp, { recursive: true, force: true })
  }
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2)))
