/**
 * `bun run bench`: the whole performance suite in one command, on this machine, loopback only.
 *
 *   1. micro-benchmarks: every benchmarks/micro/*.ts in its own process (each verifies first and
 *      prints a final BENCH_JSON line);
 *   2. the HTTP matrix: chat, stream, a mix with 64 KB prompts, the 401 and 429 paths, at fixed
 *      concurrency (wrk) and a fixed rate, for the mock, the raw Bun proxy (baseline), the gateway
 *      without plugins, per plugin, with the full stack, and Portkey as a peer;
 *   3. scale: 1, 2 and 4 gateway processes on one port sharing Redis and Postgres, with exact limits;
 *   4. RSS with 100,000 keys in the database.
 *
 * Results go to benchmarks/results/ (JSON + markdown, with commit and machine); a full run also
 * rewrites the results section of benchmarks/README.md. See `bun run bench --help`.
 *
 * Flags of the older single-configuration runner (--targets, --mode, --baseline-plugins, --keys, --strategy,
 * --env, --api-key, --mock-*, or --plugins with a JSON array) are passed on to it: benchmarks/http/run.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { main as runSingleConfiguration } from './http/run.ts'
import { hasWrk } from './http/wrk.ts'
import { estimateMatrixS, planMatrix, runMatrix } from './suite/http.ts'
import { runKeys100k, type Keys100kResult } from './suite/keys100k.ts'
import { microFiles, runMicro, type MicroRun } from './suite/micro.ts'
import { USAGE, parseOptions, type SuiteOptions } from './suite/options.ts'
import { cpuTicks, evaluateTargets, gitInfo, measurementProblems, machineInfo, stolenPercent, renderReport, rewriteReadme, summarize, writeSuiteResults, wrkVersion, type SuiteResult } from './suite/report.ts'
import { PROCESS_COUNTS, runScale, type ScaleResult } from './suite/scale.ts'
import { ROOT, Stack, postgresReachable, startMock, startPrivateRedis } from './suite/services.ts'

const LEGACY_FLAGS = ['--targets', '--mode', '--baseline-plugins', '--keys', '--strategy', '--env', '--api-key', '--mock-chunks', '--mock-chunk-delay-ms', '--mock-latency-ms']

/**
 * Runs of the single-configuration runner: one of its own flags, or `--plugins` with a JSON array
 * (its form: the gateway's exact plugin list; the suite's `--plugins` takes a comma list of delta rows).
 */
function isSingleConfiguration(argv: readonly string[]): boolean {
  return argv.some((a, i) => {
    const [flag, inline] = a.split('=', 2) as [string, string | undefined]
    if (LEGACY_FLAGS.includes(flag)) return true
    return flag === '--plugins' && (inline ?? argv[i + 1] ?? '').trim().startsWith('[')
  })
}

function log(message: string): void {
  console.error(message)
}

/** Rough seconds per part, printed before starting so a run's length is known up front. */
function estimate(o: SuiteOptions, microCount: number): { total: number; parts: string } {
  const parts: Array<[string, number]> = []
  if (o.parts.has('micro')) parts.push(['micro', microCount * (o.quick ? 12 : 30)])
  if (o.parts.has('http') || o.parts.has('peer')) parts.push(['http', estimateMatrixS(planMatrix(o, o.parts.has('peer')), o)])
  if (o.parts.has('scale')) parts.push(['scale', PROCESS_COUNTS.length * (4 + o.warmupS + o.rounds * (o.scaleDurationS + 0.8) + 8)])
  // The insert once, then a gateway per memory profile.
  if (o.parts.has('keys100k')) parts.push(['keys100k', o.keyCount / 8000 + 5 + o.keysMemory.length * (o.keySpread / 500 + o.rounds * (o.durationS + 0.8) + o.durationS + 3)])
  const total = parts.reduce((s, [, v]) => s + v, 0)
  return { total, parts: parts.map(([n, v]) => `${n} ~${Math.ceil(v / 60)} min`).join(', ') }
}

async function main(argv: string[]): Promise<number> {
  if (isSingleConfiguration(argv)) {
    log('note: flags of the single-configuration runner: running benchmarks/http/run.ts')
    return runSingleConfiguration(argv)
  }
  let o: SuiteOptions
  try {
    o = parseOptions(argv, ROOT)
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`)
    return 2
  }
  const needsHttp = ['http', 'peer', 'scale', 'keys100k'].some((p) => o.parts.has(p as never))
  if (needsHttp && !hasWrk()) {
    console.error('wrk is not installed; it drives the fixed-concurrency loads. Install it (apt-get install -y wrk, brew install wrk) or run --micro-only.')
    return 2
  }

  const files = o.parts.has('micro') ? microFiles(o.microFilter) : []
  const est = estimate(o, files.length)
  const startedAt = new Date()
  const machine = machineInfo()
  const ticksAtStart = cpuTicks()
  // Read before the run: a commit made while it runs must not be named as the code measured.
  const git = gitInfo(ROOT)
  log(`sluice benchmark suite${o.quick ? ' (quick smoke run)' : ''}: ${[...o.parts].join(', ')}; about ${Math.ceil(est.total / 60)} min (${est.parts}); load average ${machine.loadavg}`)

  const tmp = mkdtempSync(join(tmpdir(), 'sluice-suite-'))
  const stack = new Stack(tmp, log)
  // One cleanup, awaited by whoever comes second (a signal during the run, then the run's own finally).
  let cleaning: Promise<void> | null = null
  const cleanup = (): Promise<void> =>
    (cleaning ??= stack.stopAll().finally(() => rmSync(tmp, { recursive: true, force: true })))
  const onSignal = (): void => {
    log('interrupted: stopping every process started and dropping the bench databases…')
    void cleanup().then(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const notes: string[] = []
  const skipped: string[] = []
  let failed = false
  const fail = (part: string, error: unknown): void => {
    failed = true
    const message = error instanceof Error ? error.message : String(error)
    notes.push(`**${part} failed**: ${message.split('\n').slice(0, 6).join(' ')}`)
    log(`${part} FAILED: ${message}`)
  }
  let micro: MicroRun[] = []
  let matrix: SuiteResult['matrix'] = null
  let scale: ScaleResult | null = null
  let keys100k: Keys100kResult | null = null
  const adminKey = `bench-admin-${crypto.randomUUID()}`
  const dbBase = `sluice_bench_${Date.now().toString(36)}_${process.pid}`

  try {
    // A private Redis for everything (admission micro, quota, scale), unless one is given.
    let redisUrl = o.redisUrl
    let redisPid: number | null = null
    if (redisUrl === null) {
      const redis = await startPrivateRedis(stack)
      if (redis === null) {
        redisUrl = process.env.REDIS_URL ?? null
        notes.push(redisUrl === null ? 'redis-server is not installed and REDIS_URL is unset: parts that need Redis are skipped' : `redis-server is not installed: using REDIS_URL (${redisUrl})`)
      } else {
        redisUrl = redis.url
        redisPid = redis.pid
        log(`private redis-server at ${redisUrl}`)
      }
    }

    // Micro first, while no server runs.
    if (o.parts.has('micro')) {
      try {
        micro = await runMicro(files, { quick: o.quick, redisUrl, log })
        if (micro.some((m) => !m.ok)) failed = true
      } catch (error) {
        fail('micro', error)
      }
    }

    if (needsHttp) {
      const mock = await startMock(stack)
      if (o.parts.has('http') || o.parts.has('peer')) {
        const mark = stack.mark()
        try {
          const m = await runMatrix(o, stack, { mock, redisUrl, redisPid, adminKey })
          matrix = { rows: summarize(m.samples), samples: m.samples, verified: m.verified }
          notes.push(...m.notes)
        } catch (error) {
          fail('HTTP matrix', error)
        } finally {
          await stack.releaseSince(mark)
        }
      }
      const pgProblem = o.parts.has('scale') || o.parts.has('keys100k') ? await postgresReachable(o.postgresUrl) : null
      for (const part of ['scale', 'keys100k'] as const) {
        if (!o.parts.has(part)) continue
        if (pgProblem !== null || redisUrl === null) {
          skipped.push(`${part}: ${pgProblem !== null ? `Postgres at ${o.postgresUrl.replace(/\/\/[^@]*@/, '//…@')} is not reachable (${pgProblem}); pass --postgres <url>` : 'no Redis'}`)
          continue
        }
        const mark = stack.mark()
        try {
          const ctx = { mockOrigin: mock.origin, redisUrl, redisPid, adminKey, dbName: `${dbBase}_${part === 'scale' ? 'scale' : 'keys'}` }
          if (part === 'scale') {
            scale = await runScale(o, stack, ctx)
            notes.push(...scale.notes)
            if (scale.exactness.some((e) => !e.exact)) failed = true
          } else {
            keys100k = await runKeys100k(o, stack, ctx)
          }
        } catch (error) {
          fail(part, error)
        } finally {
          await stack.releaseSince(mark)
        }
      }
    }
  } catch (error) {
    fail('suite', error)
  } finally {
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  // A row of wrong answers or errors is a measurement that failed: said in the notes, and the exit code.
  const problems = measurementProblems(matrix?.rows ?? [], scale, keys100k)
  notes.push(...problems)
  if (problems.length > 0) failed = true

  const result: SuiteResult = {
    meta: {
      date: startedAt.toISOString(),
      commit: git.commit,
      dirty: git.dirty,
      label: o.label,
      quick: o.quick,
      machine,
      stolenPercent: stolenPercent(ticksAtStart, cpuTicks()),
      bun: Bun.version,
      wrk: wrkVersion(),
      settings: {
        parts: [...o.parts],
        scenarios: o.scenarios,
        delta_plugins: o.deltaPlugins,
        duration_s: o.durationS,
        rounds: o.rounds,
        warmup_s: o.warmupS,
        connections: o.connections,
        wrk_threads: o.threads,
        rate: o.rate,
        scale_duration_s: o.scaleDurationS,
        key_count: o.keyCount,
        key_spread: o.keySpread,
      },
      durationS: (Date.now() - startedAt.getTime()) / 1000,
    },
    targets: evaluateTargets(matrix?.rows ?? [], micro, keys100k),
    micro,
    matrix,
    scale,
    keys100k,
    notes,
    skipped,
  }
  const out = writeSuiteResults(o.outDir, result)
  // The README's summary stands for the code until the next run: not from a run that failed.
  if (o.readme && failed) log('benchmarks/README.md results section NOT rewritten: the run failed (see the notes)')
  if (o.readme && !failed) {
    const link = out.md.startsWith(join(ROOT, 'benchmarks/')) ? out.md.slice(join(ROOT, 'benchmarks/').length) : out.md
    rewriteReadme(join(ROOT, 'benchmarks/README.md'), result, `[${link}](${link})`)
  }
  console.log(renderReport(result, { heading: `## sluice benchmark suite${o.quick ? ' (smoke)' : ''}\n` }))
  console.log(`results: ${out.md}\n         ${out.json}${o.readme && !failed ? '\nbenchmarks/README.md results section rewritten' : ''}`)
  console.log(`took ${(result.meta.durationS / 60).toFixed(1)} min`)
  return failed ? 1 : 0
}

process.exit(await main(Bun.argv.slice(2)))
