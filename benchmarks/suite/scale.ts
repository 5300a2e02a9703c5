/**
 * Many instances: 1, 2 and 4 gateway processes with the full stack on one port
 * (SLUICE_REUSE_PORT=1), sharing the suite's Redis and a bench Postgres database. For each
 * count: throughput of the chat scenario at fixed concurrency, CPU per request over all
 * processes and how the kernel spread the load, then an exactness check: a fresh key with rpm N
 * gets a burst of 3N requests on new connections (so they land on every process) and must see
 * exactly N admitted, plus at most what its bucket refilled during the burst; the requests must
 * be logged once each.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SQL } from 'bun'
import { CHAT_BODY } from '../fixtures/bodies.ts'
import { freePort, type ServerProcess } from '../fixtures/processes.ts'
import { cpuMicros } from '../http/proc.ts'
import { spread, type Spread } from '../http/stats.ts'
import { verifyTarget } from '../http/verify.ts'
import { FULL_STACK } from './http.ts'
import { measure, warmUp, type LoadTarget, type Sample, type Scenario } from './load.ts'
import type { SuiteOptions } from './options.ts'
import { GENEROUS, createBenchDatabase, provisionKey, startGateway, type GatewaySpec, type Stack } from './services.ts'

export const PROCESS_COUNTS = [1, 2, 4] as const
/** rpm of the exactness key: large enough to spread over 4 processes, small enough that refill during a burst stays small. */
const EXACT_RPM = 600

/** The exactness check at one process count. */
export interface Exactness {
  processes: number
  rpm: number
  sent: number
  admitted: number
  refused: number
  /** Answers other than 200 and 429 (must be 0). */
  other: number
  elapsedS: number
  /** The most the bucket could hold over the burst: rpm + rpm × elapsed / 60 s. */
  bound: number
  exact: boolean
  /** Processes whose CPU time grew during the burst (all of them: the kernel spread the connections). */
  processesServing: number
  /** Request-log rows written for the key (each request once), and how many of them were 200. */
  logged: { rows: number; ok: number } | null
}

/**
 * Whether a burst was exact: no answer but 200 or 429, at least `rpm` admitted and at most the
 * bucket's refill more, and the request log holding one row per request sent, as many with
 * status 200 as were admitted (a missing or double row is as wrong as a miscount).
 */
export function isExact(b: { admitted: number; other: number }, rpm: number, bound: number, sent: number, logged: { rows: number; ok: number } | null): boolean {
  return b.other === 0 && b.admitted >= rpm && b.admitted <= Math.floor(bound) + 1 && logged !== null && logged.rows === sent && logged.ok === b.admitted
}

export interface ScaleRow {
  processes: number
  samples: Sample[]
  rps: Spread
  p50Ms: Spread
  cpuUsPerReq: Spread
  /** CPU of the shared Redis per request. */
  redisCpuUsPerReq: Spread | null
  peakRssMb: Spread
  /** Share of the CPU time each process used over the rounds: how evenly reusePort spread the load. */
  cpuShares: number[]
  /** Answers other than 200 (or invalid) and socket errors, summed over the rounds: anything but 0 makes the row not valid. */
  wrong: number
  errors: number
}

export interface ScaleResult {
  rows: ScaleRow[]
  exactness: Exactness[]
  verified: string[]
  notes: string[]
}

async function burst(url: string, key: string, total: number, concurrency: number): Promise<{ admitted: number; refused: number; other: number; elapsedS: number }> {
  let next = 0
  let admitted = 0
  let refused = 0
  let other = 0
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++
      try {
        // A new connection per request, so the kernel spreads them over the processes on the port.
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, connection: 'close' },
          body: CHAT_BODY,
          keepalive: false,
        })
        await res.arrayBuffer()
        if (res.status === 200) admitted++
        else if (res.status === 429) refused++
        else other++
      } catch {
        other++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { admitted, refused, other, elapsedS: (performance.now() - started) / 1000 }
}

/** Request-log rows of a key, waiting until the batched writers of every process have flushed. */
async function loggedRows(databaseUrl: string, keyId: string, expected: number): Promise<{ rows: number; ok: number }> {
  const sql = new SQL(databaseUrl)
  try {
    let last = { rows: -1, ok: 0 }
    for (let i = 0; i < 40; i++) {
      const [row] = (await sql`select count(*)::int as rows, count(*) filter (where status = 200)::int as ok from request_logs where key_id = ${keyId}`) as Array<{ rows: number; ok: number }>
      const now = { rows: row?.rows ?? 0, ok: row?.ok ?? 0 }
      if (now.rows >= expected || (now.rows === last.rows && i >= 10)) return now
      last = now
      await Bun.sleep(250)
    }
    return last
  } finally {
    await sql.close()
  }
}

export async function runScale(o: SuiteOptions, stack: Stack, ctx: { mockOrigin: string; redisUrl: string; redisPid: number | null; adminKey: string; dbName: string }): Promise<ScaleResult> {
  const log = stack.log
  const notes: string[] = []
  const verified: string[] = []
  const databaseUrl = await createBenchDatabase(stack, o.postgresUrl, ctx.dbName)
  const spec: GatewaySpec = { name: 'scale', plugins: [...FULL_STACK], redisUrl: ctx.redisUrl, databaseUrl }
  const port = freePort()
  const processes: ServerProcess[] = []
  const startOne = async (): Promise<void> => {
    log(`scale: starting gateway process ${processes.length + 1} on port ${port}…`)
    processes.push(await startGateway(stack, spec, ctx.mockOrigin, ctx.adminKey, { port, reusePort: true, instance: processes.length + 1 }))
  }
  await startOne()
  const origin = `http://127.0.0.1:${port}`
  const url = `${origin}/v1/chat/completions`
  const key = await provisionKey(origin, ctx.adminKey, 'bench-scale', GENEROUS)
  const v = await verifyTarget('scale gateway', `${origin}/v1`, key.key)
  verified.push(`chat and stream through the shared port are valid (${v.streamFrames} stream frames, usage, [DONE])`)

  const bodyFile = join(stack.tmp, 'scale-chat.json')
  writeFileSync(bodyFile, CHAT_BODY)
  const scenario: Scenario = { id: 'chat', label: 'chat', bodyFile, stream: false, expectStatus: 200 }
  const settings = { durationS: o.scaleDurationS, connections: o.connections, threads: o.threads, rate: o.rate }
  const rows: ScaleRow[] = []
  const exactness: Exactness[] = []
  for (const n of PROCESS_COUNTS) {
    while (processes.length < n) await startOne()
    const target: LoadTarget = { id: `scale-${n}`, label: `${n} process${n > 1 ? 'es' : ''}`, url, pids: processes.map((p) => p.pid), ...(ctx.redisPid !== null && { sidePids: [ctx.redisPid] }) }
    await warmUp(target, scenario, { apiKey: key.key }, settings, o.warmupS)
    const before = processes.map((p) => cpuMicros(p.pid))
    const samples: Sample[] = []
    for (let round = 1; round <= o.rounds; round++) {
      const s = await measure(target, scenario, 'concurrency', round, { apiKey: key.key }, settings)
      samples.push(s)
      log(`scale ${n}p r${round}: ${Math.round(s.rps).toLocaleString('en-US')} req/s, p50 ${s.p50Ms.toFixed(2)} ms, ${Math.round(s.cpuUsPerReq)} µs CPU/req, ${Math.round(s.peakRssMb)} MB total` + (s.wrong + s.errors > 0 ? `, ${s.wrong} wrong, ${s.errors} errors` : ''))
      await Bun.sleep(300)
    }
    const used = processes.map((p, i) => cpuMicros(p.pid) - before[i]!)
    const sum = used.reduce((a, b) => a + b, 0)
    rows.push({
      processes: n,
      samples,
      rps: spread(samples.map((s) => s.rps)),
      p50Ms: spread(samples.map((s) => s.p50Ms)),
      cpuUsPerReq: spread(samples.map((s) => s.cpuUsPerReq)),
      redisCpuUsPerReq: ctx.redisPid === null ? null : spread(samples.map((s) => s.sideCpuUsPerReq ?? Number.NaN)),
      peakRssMb: spread(samples.map((s) => s.peakRssMb)),
      cpuShares: used.map((u) => (sum > 0 ? u / sum : 0)),
      wrong: samples.reduce((t, x) => t + x.wrong, 0),
      errors: samples.reduce((t, x) => t + x.errors, 0),
    })

    // Exactness: a fresh key, a burst three times its limit, on new connections.
    const limited = await provisionKey(origin, ctx.adminKey, `bench-exact-${n}`, { limits: { rpm: EXACT_RPM } })
    const cpuBurst = processes.map((p) => cpuMicros(p.pid))
    const b = await burst(url, limited.key, EXACT_RPM * 3, 64)
    const serving = processes.filter((p, i) => cpuMicros(p.pid) - cpuBurst[i]! > 0).length
    const bound = EXACT_RPM + (EXACT_RPM * b.elapsedS) / 60
    const logged = await loggedRows(databaseUrl, limited.id, EXACT_RPM * 3).catch((error: unknown) => {
      notes.push(`request-log count for ${n} processes failed: ${String(error)}`)
      return null
    })
    const exact = isExact(b, EXACT_RPM, bound, EXACT_RPM * 3, logged)
    exactness.push({ processes: n, rpm: EXACT_RPM, sent: EXACT_RPM * 3, ...b, bound, exact, processesServing: serving, logged })
    log(
      `scale ${n}p exactness: rpm ${EXACT_RPM}, ${EXACT_RPM * 3} sent in ${b.elapsedS.toFixed(2)} s: ${b.admitted} admitted (allowed ${EXACT_RPM}–${Math.floor(bound) + 1}), ` +
        `${b.refused} refused, ${b.other} other; ${serving}/${n} processes served; logged ${logged?.rows ?? '?'} rows (${logged?.ok ?? '?'} ok): ${exact ? 'exact' : 'NOT EXACT'}`,
    )
  }
  notes.push(
    `Scale runs the full stack on Postgres (a bench database, dropped afterwards) and the suite's Redis, chat at ${o.connections} connections. ` +
      'The mock upstream is one process and the machine has the cores it has: past the core count more processes only share them.',
  )
  return { rows, exactness, verified, notes }
}
