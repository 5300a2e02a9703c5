/**
 * `bun run bench` flags: which parts run, how long each measurement lasts, and where results go.
 * Parts: micro (benchmarks/micro/*.ts), http (the scenario × target matrix), peer (Portkey rows
 * in it), scale (1, 2, 4 gateway processes on one port), keys100k (RSS with 100,000 keys).
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MEMORY_PROFILES, type MemoryProfile } from '../../src/lib/memory.ts'

export const SCENARIO_IDS = ['chat', 'stream', 'mix', 'unauth', 'limited'] as const
export type ScenarioId = (typeof SCENARIO_IDS)[number]

/** Plugins that get a "per-plugin delta" row: the gateway with that plugin alone (quota: with auth, which it needs). */
export const DELTA_PLUGINS = ['auth', 'quota', 'tokens', 'balance', 'logging'] as const
export type DeltaPlugin = (typeof DELTA_PLUGINS)[number]

export type Part = 'micro' | 'http' | 'peer' | 'scale' | 'keys100k'

/** Parsed settings of one suite run. */
export interface SuiteOptions {
  quick: boolean
  parts: Set<Part>
  scenarios: ScenarioId[]
  deltaPlugins: DeltaPlugin[]
  durationS: number
  rounds: number
  warmupS: number
  connections: number
  threads: number
  rate: number
  /** Seconds per scale measurement and process count. */
  scaleDurationS: number
  /** Keys inserted for the keys100k part, and how many of them the load spreads over. */
  keyCount: number
  keySpread: number
  /** Memory profiles the keys100k part runs a gateway under, in order (src/lib/memory.ts). */
  keysMemory: MemoryProfile[]
  /** Existing Redis to use instead of a private redis-server. */
  redisUrl: string | null
  /** Postgres server (any database on it) where the bench databases are created and dropped. */
  postgresUrl: string
  outDir: string
  label: string | null
  /** Rewrite the results section of benchmarks/README.md. */
  readme: boolean
  /** Micro files to run (basenames without .ts); empty = all. */
  microFilter: string[]
}

export const USAGE = `usage: bun run bench [options]

parts (default: all of them)
  --micro-only            only the micro-benchmarks (benchmarks/micro/*.ts)
  --http-only             everything but the micro-benchmarks
  --scenario <list>       the HTTP matrix, only these scenarios: ${SCENARIO_IDS.join(', ')} (or all)
  --peer                  the Portkey comparison (chat and stream: mock, raw, sluice full, Portkey)
  --scale                 1, 2 and 4 gateway processes on one port: throughput and exact limits
  --keys100k              peak RSS with 100,000 keys in the database, load over 10,000 of them
  (--scenario, --peer, --scale and --keys100k combine; with any of them only those parts run)
  --skip <list>           leave out parts: micro, http, peer, scale, keys100k
  --micro <list>          only these micro files, e.g. key-verify,sse

matrix
  --plugins <list>        per-plugin delta rows: comma list of ${DELTA_PLUGINS.join(', ')}; all; none
                          (a JSON array, e.g. '["logging"]', runs the single-configuration runner instead)
                          (default: all in a full run, none with --quick)
  --duration <s>          seconds per measurement (default 5; --quick 2)
  --rounds <n>            rounds; tables show the median and min–max (default 3; --quick 1)
  --warmup <s>            warm-up per target and scenario (default 2; --quick 1)
  --connections <n>       wrk connections, fixed concurrency (default 50)
  --threads <n>           wrk threads (default 1)
  --rate <n>              requests per second, fixed rate (default 500)

other parts
  --scale-duration <s>    seconds per process count and round (default 5; --quick 2)
  --key-count <n>         keys inserted for --keys100k (default 100000)
  --key-spread <n>        distinct keys the --keys100k load uses (default 10000)
  --keys-memory <list>    memory profiles (SLUICE_MEMORY) --keys100k runs a gateway under (default fast,lean)
  --redis <url>           use this Redis instead of starting a private redis-server
  --postgres <url>        Postgres server for the bench databases (default postgres://postgres@127.0.0.1:5432/postgres)

output
  --out <dir>             results directory (default benchmarks/results)
  --label <name>          appended to the results file names
  --readme / --no-readme  rewrite the results section of benchmarks/README.md (default: only a full, non-quick run of all parts)
  --quick                 short smoke run: numbers are not results

The single-configuration HTTP runner: bun run benchmarks/http/run.ts --help. bun run bench hands the run to it
when it sees one of its flags (--targets, --mode, --baseline-plugins, --keys, --env, --api-key, --mock-*)
or --plugins with a JSON array.`

export function parseOptions(argv: string[], root: string): SuiteOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      'micro-only': { type: 'boolean', default: false },
      'http-only': { type: 'boolean', default: false },
      scenario: { type: 'string' },
      peer: { type: 'boolean', default: false },
      scale: { type: 'boolean', default: false },
      keys100k: { type: 'boolean', default: false },
      skip: { type: 'string' },
      micro: { type: 'string' },
      plugins: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string', default: '50' },
      threads: { type: 'string', default: '1' },
      rate: { type: 'string', default: '500' },
      'scale-duration': { type: 'string' },
      'key-count': { type: 'string', default: '100000' },
      'key-spread': { type: 'string', default: '10000' },
      'keys-memory': { type: 'string', default: 'fast,lean' },
      redis: { type: 'string' },
      postgres: { type: 'string', default: process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
      out: { type: 'string', default: join(root, 'benchmarks/results') },
      label: { type: 'string' },
      readme: { type: 'boolean' },
      'no-readme': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const positive = (name: string, raw: string): number => {
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got '${raw}'`)
    return n
  }
  const list = (raw: string): string[] => {
    const trimmed = raw.trim()
    if (trimmed.startsWith('[')) {
      const parsed: unknown = JSON.parse(trimmed)
      if (!Array.isArray(parsed) || parsed.some((p) => typeof p !== 'string')) throw new Error(`expected a JSON array of names, got '${raw}'`)
      return parsed as string[]
    }
    return trimmed === '' ? [] : trimmed.split(',').map((s) => s.trim())
  }
  const oneOf = <T extends string>(name: string, raw: string, allowed: readonly T[]): T[] => {
    if (raw === 'all') return [...allowed]
    if (raw === 'none') return []
    const chosen = list(raw)
    for (const c of chosen) if (!allowed.includes(c as T)) throw new Error(`--${name}: '${c}' is not one of ${allowed.join(', ')}`)
    return chosen as T[]
  }

  const nonEmpty = <T>(name: string, chosen: T[]): T[] => {
    if (chosen.length === 0) throw new Error(`--${name}: name at least one`)
    return chosen
  }

  const quick = values.quick
  const all: Part[] = ['micro', 'http', 'peer', 'scale', 'keys100k']
  let parts: Set<Part>
  const selected: Part[] = []
  if (values.scenario !== undefined) selected.push('http')
  if (values.peer) selected.push('peer')
  if (values.scale) selected.push('scale')
  if (values.keys100k) selected.push('keys100k')
  if (values['micro-only']) {
    if (selected.length > 0 || values['http-only']) throw new Error('--micro-only cannot be combined with HTTP parts')
    parts = new Set(['micro'])
  } else if (selected.length > 0) {
    parts = new Set(selected)
  } else {
    parts = new Set(values['http-only'] ? all.filter((p) => p !== 'micro') : all)
  }
  if (values['http-only']) parts.delete('micro')
  for (const p of values.skip === undefined ? [] : oneOf('skip', values.skip, all)) parts.delete(p)
  if (parts.size === 0) throw new Error('no part left to run')

  const label = values.label ?? null
  if (label !== null && !/^[a-z0-9][a-z0-9-]{0,40}$/.test(label)) throw new Error('--label must be lower-case letters, digits and dashes')
  const deltaDefault = quick || selected.length > 0 ? 'none' : 'all'
  const runsEverything = all.every((p) => parts.has(p)) && values.scenario === undefined
  return {
    quick,
    parts,
    scenarios: values.scenario === undefined ? [...SCENARIO_IDS] : oneOf('scenario', values.scenario, SCENARIO_IDS),
    deltaPlugins: oneOf('plugins', values.plugins ?? deltaDefault, DELTA_PLUGINS),
    durationS: positive('duration', values.duration ?? (quick ? '2' : '5')),
    rounds: Math.round(positive('rounds', values.rounds ?? (quick ? '1' : '3'))),
    warmupS: positive('warmup', values.warmup ?? (quick ? '1' : '2')),
    connections: Math.round(positive('connections', values.connections)),
    threads: Math.round(positive('threads', values.threads)),
    rate: positive('rate', values.rate),
    scaleDurationS: positive('scale-duration', values['scale-duration'] ?? (quick ? '2' : '5')),
    keyCount: Math.round(positive('key-count', values['key-count'])),
    keySpread: Math.round(positive('key-spread', values['key-spread'])),
    keysMemory: nonEmpty('keys-memory', oneOf('keys-memory', values['keys-memory'], Object.keys(MEMORY_PROFILES) as MemoryProfile[])),
    redisUrl: values.redis ?? null,
    postgresUrl: values.postgres,
    outDir: values.out,
    label,
    readme: values['no-readme'] ? false : (values.readme ?? (runsEverything && !quick)),
    microFilter: values.micro === undefined ? [] : list(values.micro),
  }
}
