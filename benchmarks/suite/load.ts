/**
 * One measurement of the suite: a target under one scenario and one load (wrk at fixed
 * concurrency, or the open-loop generator at a fixed rate), with the CPU time and peak RSS of
 * the target's own server processes read from /proc around it.
 */
import type { FixedRateResult } from '../http/fixed-rate.ts'
import { cpuMicros, rssKib } from '../http/proc.ts'
import { runWrk } from '../http/wrk.ts'
import type { ScenarioId } from './options.ts'

const FIXED_RATE = new URL('../http/fixed-rate.ts', import.meta.url).pathname

export type Mode = 'concurrency' | 'rate'

/** A fixed request pattern: body, stream or not, and the status every answer must have. */
export interface Scenario {
  id: ScenarioId
  label: string
  bodyFile: string
  stream: boolean
  /** 200, or the refusal this scenario measures (401, 429). */
  expectStatus: number
  /** One request in `every` sends this body instead. */
  large?: { file: string; every: number }
}

/** A server under load. */
export interface LoadTarget {
  id: string
  label: string
  /** Full URL of /v1/chat/completions. */
  url: string
  /** Server processes charged with the CPU and memory (several for reusePort). */
  pids: number[]
  /** Extra headers on every request (Portkey's routing headers). */
  headers?: Record<string, string>
  /** Processes the target depends on whose CPU is reported beside its own (the suite's Redis). */
  sidePids?: number[]
}

/** How the requests authenticate: one key, or keys in turn from a file. */
export type Credentials = { apiKey?: string; keysFile?: string; keys?: string[] }

/** One measured run. */
export interface Sample {
  scenario: ScenarioId
  mode: Mode
  target: string
  round: number
  /** Fixed concurrency: answers per second. Fixed rate: valid answers per second. */
  rps: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** Answers with another status than the scenario's, or invalid bodies. */
  wrong: number
  /** Socket errors, timeouts, drops. */
  errors: number
  /** User + system CPU of the target's processes per answer. */
  cpuUsPerReq: number
  /** Highest total VmRSS of the target's processes during the run. */
  peakRssMb: number
  /** CPU of `sidePids` (Redis) per answer; null without them. */
  sideCpuUsPerReq: number | null
}

/** Load settings shared by the measurements of a run. */
export interface LoadSettings {
  durationS: number
  connections: number
  threads: number
  rate: number
}

/** Samples the total VmRSS of `pids` every 100 ms; `stop()` returns the peak total and the peak of one process, in KiB. */
export function sampleRssAll(pids: readonly number[], intervalMs = 100): { stop(): { totalKib: number; maxOneKib: number } } {
  let total = 0
  let one = 0
  const take = (): void => {
    let sum = 0
    for (const pid of pids) {
      const kib = rssKib(pid)
      sum += kib
      one = Math.max(one, kib)
    }
    total = Math.max(total, sum)
  }
  take()
  const timer = setInterval(take, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      take()
      return { totalKib: total, maxOneKib: one }
    },
  }
}

export const cpuOf = (pids: readonly number[]): number => pids.reduce((sum, pid) => sum + cpuMicros(pid), 0)

/** Runs the fixed-rate generator in its own process (away from this process's timers and /proc sampling). */
export async function runFixedRate(opts: {
  url: string
  scenario: Scenario
  rate: number
  durationS: number
  credentials: Credentials
  headers?: Record<string, string>
}): Promise<FixedRateResult> {
  const s = opts.scenario
  const args = ['bun', 'run', FIXED_RATE, '--url', opts.url, '--body-file', s.bodyFile, '--rate', String(opts.rate), '--duration', String(opts.durationS)]
  if (s.stream) args.push('--stream')
  if (opts.credentials.keysFile !== undefined) args.push('--keys-file', opts.credentials.keysFile)
  else if (opts.credentials.apiKey !== undefined) args.push('--api-key', opts.credentials.apiKey)
  for (const [name, value] of Object.entries(opts.headers ?? {})) args.push('--header', `${name}: ${value}`)
  if (s.large !== undefined) args.push('--large-body-file', s.large.file, '--large-every', String(s.large.every))
  if (s.expectStatus !== 200) args.push('--expect-status', String(s.expectStatus))
  const proc = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
  const guard = setTimeout(() => proc.kill('SIGKILL'), (opts.durationS + 30) * 1000)
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(guard)
  const line = stdout.split('\n').find((l) => l.startsWith('FIXED_RATE_JSON '))
  if (code !== 0 || line === undefined) throw new Error(`fixed-rate generator failed (exit ${code}): ${stderr.trim() || stdout.trim()}`)
  return JSON.parse(line.slice('FIXED_RATE_JSON '.length)) as FixedRateResult
}

/** wrk with the scenario's script options. */
export function wrkFor(target: LoadTarget, scenario: Scenario, credentials: Credentials, settings: LoadSettings, durationS: number) {
  const needsDynamic = credentials.keysFile !== undefined || scenario.large !== undefined || scenario.expectStatus !== 200
  return runWrk({
    url: target.url,
    bodyFile: scenario.bodyFile,
    apiKey: credentials.keysFile === undefined ? credentials.apiKey : undefined,
    headers: target.headers,
    connections: settings.connections,
    threads: settings.threads,
    durationS,
    ...(needsDynamic && {
      dynamic: {
        keysFile: credentials.keysFile,
        largeBodyFile: scenario.large?.file,
        largeEvery: scenario.large?.every,
        expectStatus: scenario.expectStatus !== 200 ? scenario.expectStatus : undefined,
      },
    }),
  })
}

/** Warm-up: the same load, shorter, not recorded. */
export async function warmUp(target: LoadTarget, scenario: Scenario, credentials: Credentials, settings: LoadSettings, seconds: number): Promise<void> {
  await wrkFor(target, scenario, credentials, settings, seconds)
}

/** Measures one target under one scenario and load. */
export async function measure(target: LoadTarget, scenario: Scenario, mode: Mode, round: number, credentials: Credentials, settings: LoadSettings): Promise<Sample> {
  const cpuBefore = cpuOf(target.pids)
  const sideBefore = cpuOf(target.sidePids ?? [])
  const rss = sampleRssAll(target.pids)
  let sample: Omit<Sample, 'cpuUsPerReq' | 'peakRssMb' | 'sideCpuUsPerReq'>
  let served: number
  if (mode === 'concurrency') {
    const r = await wrkFor(target, scenario, credentials, settings, settings.durationS)
    const wrong = r.expected !== undefined ? r.expected.other : r.non2xx
    sample = { scenario: scenario.id, mode, target: target.id, round, rps: r.rps, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, requests: r.requests, wrong, errors: r.socketErrors }
    served = r.requests
  } else {
    const r = await runFixedRate({ url: target.url, scenario, rate: settings.rate, durationS: settings.durationS, credentials, headers: target.headers })
    sample = {
      scenario: scenario.id,
      mode,
      target: target.id,
      round,
      rps: r.achievedRps,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      requests: r.ok + r.non2xx + r.invalid,
      wrong: r.non2xx + r.invalid,
      errors: r.failed + r.timedOut + r.dropped,
    }
    // The server also answered the generator's unrecorded warm-up inside this CPU window.
    served = sample.requests + r.warmupAnswered
  }
  const cpu = cpuOf(target.pids) - cpuBefore
  const side = cpuOf(target.sidePids ?? []) - sideBefore
  const peak = rss.stop()
  return {
    ...sample,
    cpuUsPerReq: served > 0 ? cpu / served : Number.NaN,
    peakRssMb: peak.totalKib / 1024,
    sideCpuUsPerReq: target.sidePids?.length ? (served > 0 ? side / served : Number.NaN) : null,
  }
}
