/**
 * Open-loop load at a fixed rate: request i is due at start + i/rate whether or not earlier
 * answers came back, and its latency is counted from when it was due, not from when it was
 * sent. A closed loop (wrk) slows down when the server does and so hides queueing
 * ("coordinated omission"); this one does not, which is why latency is read from here.
 *
 *   bun run benchmarks/http/fixed-rate.ts --url http://127.0.0.1:8080/v1/chat/completions \
 *     --body-file body.json --rate 500 --duration 10 [--warmup 1] [--stream] [--api-key KEY]
 *     [--header 'name: value' ...] [--keys-file keys.txt] [--large-body-file big.json --large-every 10]
 *     [--expect-status 429]
 *
 * Prints one line `FIXED_RATE_JSON {...}` with the result.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { quantile } from './stats.ts'

/** Options of one fixed-rate run. */
export interface FixedRateOptions {
  url: string
  /** JSON body to POST. */
  body: string
  apiKey?: string
  /** Requests per second. */
  rate: number
  durationS: number
  /** Expect an SSE stream ending in `data: [DONE]` rather than a JSON completion. */
  stream: boolean
  /** Requests allowed in flight; beyond it new ones are dropped (and counted) so a stalled server cannot make the generator grow without bound. @default 2000 */
  maxInFlight?: number
  /** How long to wait for the last answers after the last request is due. @default 10 */
  drainTimeoutS?: number
  /**
   * Seconds of load at the same rate before the measured period, not recorded: the generator is
   * a fresh process whose first requests pay for new connections and cold code. @default 1
   */
  warmupS?: number
  /** Extra request headers (a peer gateway's routing headers). */
  headers?: Record<string, string>
  /** API keys sent in turn, request i with key i mod n (instead of `apiKey`). */
  keys?: readonly string[]
  /** Every `largeEvery`-th request sends this body instead of `body`. */
  largeBody?: string
  /** @default 10 */
  largeEvery?: number
  /** The status every answer should have (401, 429): such answers with an error envelope count as valid. @default 200 with a completion */
  expectStatus?: number
}

/** What one fixed-rate run measured. */
export interface FixedRateResult {
  /** Requests due in the measured period: rate × duration. */
  scheduled: number
  /** Answers with the expected status (200 unless `expectStatus`) and a valid body. */
  ok: number
  /** Answers with another status. */
  non2xx: number
  /** 200 answers whose body was not a completion (or a stream without `[DONE]`). */
  invalid: number
  /** Network errors (refused, reset). */
  failed: number
  /** Still unanswered when the drain timeout ended the run. */
  timedOut: number
  /** Not sent because `maxInFlight` was reached. */
  dropped: number
  /** Answers (any status) to warm-up requests: with the counts above, all the work the server did. */
  warmupAnswered: number
  /** Seconds from the first due time to the last answer. */
  durationS: number
  /** Valid answers per second over `durationS`. */
  achievedRps: number
  /** Due-time to full answer, over valid answers. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
  /** How late the generator itself sent requests (p99, ms): if this is large the generator, not the server, was the bottleneck. */
  sendLagP99Ms: number
}

/** Runs the open loop; resolves when every request is answered or the drain timeout passes. */
export async function runFixedRate(opts: FixedRateOptions): Promise<FixedRateResult> {
  const scheduled = Math.max(1, Math.round(opts.rate * opts.durationS))
  const warmup = Math.round(opts.rate * (opts.warmupS ?? 1))
  const total = warmup + scheduled
  const intervalMs = 1000 / opts.rate
  const maxInFlight = opts.maxInFlight ?? 2000
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers }
  if (opts.apiKey !== undefined) headers.authorization = `Bearer ${opts.apiKey}`
  const expectStatus = opts.expectStatus ?? 200
  const largeEvery = opts.largeEvery ?? 10
  // Built once: a request only picks one of these.
  const keyedHeaders = opts.keys?.map((key) => ({ ...headers, authorization: `Bearer ${key}` }))
  const abort = new AbortController()

  const latencies = new Float64Array(scheduled)
  const sendLags = new Float64Array(scheduled)
  let recorded = 0
  let sent = 0
  let inFlight = 0
  let ok = 0
  let non2xx = 0
  let invalid = 0
  let failed = 0
  let dropped = 0
  let warmupAnswered = 0
  let lastAnswer = 0
  let settle: (() => void) | undefined

  const valid = (text: string): boolean =>
    expectStatus !== 200 ? text.includes('"error"') : opts.stream ? text.endsWith('data: [DONE]\n\n') : text.includes('"choices"')

  const fire = async (dueAt: number, counted: boolean, index: number): Promise<void> => {
    inFlight++
    try {
      const body = opts.largeBody !== undefined && (index + 1) % largeEvery === 0 ? opts.largeBody : opts.body
      const h = keyedHeaders === undefined ? headers : keyedHeaders[index % keyedHeaders.length]!
      const res = await fetch(opts.url, { method: 'POST', headers: h, body, signal: abort.signal })
      const text = await res.text()
      const now = performance.now()
      if (!counted) {
        warmupAnswered++
        return
      }
      lastAnswer = now
      if (res.status !== expectStatus) non2xx++
      else if (!valid(text)) invalid++
      else {
        ok++
        latencies[recorded++] = now - dueAt
      }
    } catch {
      if (counted && !abort.signal.aborted) failed++
    } finally {
      inFlight--
      if (inFlight === 0) settle?.()
    }
  }

  const origin = performance.now() + 5
  // The measured period starts where the warm-up ends; its requests keep the same cadence.
  const start = origin + warmup * intervalMs
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now()
      // Send everything that is due: timers fire late by a millisecond or so, and a late tick must catch up, not skip.
      while (sent < total && origin + sent * intervalMs <= now) {
        const dueAt = origin + sent * intervalMs
        const counted = sent >= warmup
        if (counted) sendLags[sent - warmup] = now - dueAt
        sent++
        if (inFlight >= maxInFlight) {
          if (counted) dropped++
        } else void fire(dueAt, counted, sent - 1)
      }
      if (sent >= total) resolve()
      else setTimeout(tick, Math.max(0, origin + sent * intervalMs - performance.now()))
    }
    setTimeout(tick, Math.max(0, origin - performance.now()))
  })

  if (inFlight > 0) {
    const drained = new Promise<void>((resolve) => (settle = resolve))
    const timeout = Bun.sleep((opts.drainTimeoutS ?? 10) * 1000)
    await Promise.race([drained, timeout])
  }
  const timedOut = inFlight
  if (timedOut > 0) abort.abort()

  const sorted = latencies.subarray(0, recorded).sort()
  let sum = 0
  for (const value of sorted) sum += value
  const durationS = Math.max(0.001, ((lastAnswer || performance.now()) - start) / 1000)
  return {
    scheduled,
    ok,
    non2xx,
    invalid,
    failed,
    timedOut,
    dropped,
    warmupAnswered,
    durationS,
    achievedRps: ok / durationS,
    latencyMs: {
      p50: quantile(sorted, 0.5),
      p90: quantile(sorted, 0.9),
      p99: quantile(sorted, 0.99),
      max: quantile(sorted, 1),
      mean: recorded > 0 ? sum / recorded : Number.NaN,
    },
    sendLagP99Ms: quantile(sendLags.subarray(0, sent - warmup).sort(), 0.99),
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      url: { type: 'string' },
      'body-file': { type: 'string' },
      'api-key': { type: 'string' },
      rate: { type: 'string', default: '500' },
      duration: { type: 'string', default: '10' },
      stream: { type: 'boolean', default: false },
      'max-in-flight': { type: 'string' },
      warmup: { type: 'string', default: '1' },
      header: { type: 'string', multiple: true, default: [] },
      'keys-file': { type: 'string' },
      'large-body-file': { type: 'string' },
      'large-every': { type: 'string', default: '10' },
      'expect-status': { type: 'string' },
    },
  })
  if (values.url === undefined || values['body-file'] === undefined) {
    console.error('fixed-rate: --url and --body-file are required')
    process.exit(2)
  }
  const result = await runFixedRate({
    url: values.url,
    body: readFileSync(values['body-file'], 'utf8'),
    apiKey: values['api-key'],
    rate: Number(values.rate),
    durationS: Number(values.duration),
    stream: values.stream,
    maxInFlight: values['max-in-flight'] === undefined ? undefined : Number(values['max-in-flight']),
    warmupS: Number(values.warmup),
    headers: Object.fromEntries(
      values.header.map((h) => {
        const colon = h.indexOf(':')
        return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()]
      }),
    ),
    keys: values['keys-file'] === undefined ? undefined : readFileSync(values['keys-file'], 'utf8').split('\n').filter((k) => k !== ''),
    largeBody: values['large-body-file'] === undefined ? undefined : readFileSync(values['large-body-file'], 'utf8'),
    largeEvery: Number(values['large-every']),
    expectStatus: values['expect-status'] === undefined ? undefined : Number(values['expect-status']),
  })
  console.log(`FIXED_RATE_JSON ${JSON.stringify(result)}`)
  // Keep-alive sockets in fetch's pool would otherwise hold the process open.
  process.exit(0)
}
