/**
 * Turns round samples into the results table: medians with min–max over rounds, and the
 * gateway's cost relative to the raw proxy (same run, same machine) and to the mock itself.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spread, type Spread } from './stats.ts'

export type TargetName = 'mock' | 'raw' | 'baseline' | 'gateway'
export type LoadMode = 'concurrency' | 'rate'

/** Display names of the targets, in table order. */
export const TARGET_LABELS = { mock: 'mock (direct)', raw: 'raw proxy', baseline: 'sluice (baseline)', gateway: 'sluice' } as const satisfies Record<TargetName, string>

/** One measured run of one target. */
export interface Sample {
  scenario: string
  mode: LoadMode
  target: TargetName
  round: number
  /** Completed requests per second (fixed rate: valid answers per second). */
  rps: number
  p50Ms: number
  p99Ms: number
  /** CPU time (user + system) of the target's server process per answered request. */
  cpuUsPerReq: number
  /** Highest VmRSS of the target's server process seen during the run. */
  peakRssMb: number
  /** Answers counted (all statuses). */
  requests: number
  non2xx: number
  /** Socket errors, invalid bodies, timeouts and drops. */
  errors: number
}

/** One table row: a target under one scenario and load. */
export interface SummaryRow {
  scenario: string
  mode: LoadMode
  target: TargetName
  rounds: number
  rps: Spread
  p50Ms: Spread
  p99Ms: Spread
  cpuUsPerReq: Spread
  peakRssMb: Spread
  non2xx: number
  errors: number
  /** Median req/s over the raw proxy's median (fixed concurrency only). */
  rpsVsRaw: number | null
  /** Median CPU per request over the raw proxy's. */
  cpuVsRaw: number | null
  /** Median p50 minus the mock-direct median p50, in ms (fixed rate only): the latency the hop adds. */
  addedP50VsMockMs: number | null
  /** Whether any answer was not a valid 2xx (non-2xx, invalid body, socket error, timeout, drop): then no ratio is read from the row or priced against it. */
  valid: boolean
}

/** Summarises samples into rows, in scenario, mode, target order. */
export function summarize(samples: readonly Sample[]): SummaryRow[] {
  const groups = new Map<string, Sample[]>()
  for (const sample of samples) {
    const key = `${sample.scenario}\u0000${sample.mode}\u0000${sample.target}`
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [sample])
    else group.push(sample)
  }
  const rows: SummaryRow[] = []
  for (const group of groups.values()) {
    const first = group[0]
    if (first === undefined) continue
    const pick = (f: (s: Sample) => number): Spread => spread(group.map(f))
    rows.push({
      scenario: first.scenario,
      mode: first.mode,
      target: first.target,
      rounds: group.length,
      rps: pick((s) => s.rps),
      p50Ms: pick((s) => s.p50Ms),
      p99Ms: pick((s) => s.p99Ms),
      cpuUsPerReq: pick((s) => s.cpuUsPerReq),
      peakRssMb: pick((s) => s.peakRssMb),
      non2xx: group.reduce((sum, s) => sum + s.non2xx, 0),
      errors: group.reduce((sum, s) => sum + s.errors, 0),
      rpsVsRaw: null,
      cpuVsRaw: null,
      addedP50VsMockMs: null,
      valid: group.every((s) => s.non2xx === 0 && s.errors === 0),
    })
  }
  for (const row of rows) {
    // A fast row of errors is not throughput, and a ratio against a failing baseline is as wrong.
    if (!row.valid) continue
    const peer = (target: TargetName): SummaryRow | undefined =>
      rows.find((r) => r.scenario === row.scenario && r.mode === row.mode && r.target === target && r.valid)
    const raw = peer('raw')
    const mock = peer('mock')
    if (raw !== undefined) {
      if (row.mode === 'concurrency') row.rpsVsRaw = row.rps.median / raw.rps.median
      row.cpuVsRaw = row.cpuUsPerReq.median / raw.cpuUsPerReq.median
    }
    if (mock !== undefined && row.mode === 'rate') row.addedP50VsMockMs = row.p50Ms.median - mock.p50Ms.median
  }
  const order = (r: SummaryRow): string => `${r.scenario}/${r.mode === 'concurrency' ? 0 : 1}/${Object.keys(TARGET_LABELS).indexOf(r.target)}`
  return rows.sort((a, b) => order(a).localeCompare(order(b)))
}

function num(value: number, digits: number): string {
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function cell(s: Spread, digits: number): string {
  if (s.min === s.max) return num(s.median, digits)
  return `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`
}

function ratio(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '—' : `×${value.toFixed(2)}`
}

/** The results table as markdown. */
export function renderTable(rows: readonly SummaryRow[], load: { connections: number; rate: number }): string {
  const header =
    '| scenario | load | target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | non-2xx / errors | req/s vs raw | CPU vs raw | p50 added vs mock |\n' +
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  const lines = rows.map((r) => {
    const mode = r.mode === 'concurrency' ? `${load.connections} conns` : `${load.rate} req/s`
    const added = r.addedP50VsMockMs === null ? '—' : `${r.addedP50VsMockMs >= 0 ? '+' : ''}${num(r.addedP50VsMockMs, 2)} ms`
    return `| ${r.scenario} | ${mode} | ${TARGET_LABELS[r.target]}${r.valid ? '' : ' **(not valid)**'} | ${cell(r.rps, 0)} | ${cell(r.p50Ms, 2)} | ${cell(r.p99Ms, 2)} | ${cell(r.cpuUsPerReq, 0)} | ${cell(r.peakRssMb, 0)} | ${r.valid ? `${r.non2xx} / ${r.errors}` : `**${r.non2xx} / ${r.errors}**`} | ${ratio(r.rpsVsRaw)} | ${ratio(r.cpuVsRaw)} | ${added} |`
  })
  return header + lines.join('\n') + '\n'
}

/** Everything written to the results files besides the samples. */
export interface RunMeta {
  date: string
  commit: string
  dirty: boolean
  label: string | null
  machine: { nproc: number; cpu: string; memoryGb: number; kernel: string }
  bun: string
  wrk: string | null
  settings: Record<string, unknown>
  notes: string[]
}

/** Writes `<stem>.json` and `<stem>.md` into `dir`; returns their paths. */
export function writeResults(dir: string, meta: RunMeta, samples: readonly Sample[], rows: readonly SummaryRow[], table: string, extra: Record<string, unknown>): { json: string; md: string } {
  mkdirSync(dir, { recursive: true })
  const stamp = meta.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')
  const stem = `http-${stamp}-${meta.commit.slice(0, 7)}${meta.label === null ? '' : `-${meta.label}`}`
  const json = join(dir, `${stem}.json`)
  const md = join(dir, `${stem}.md`)
  writeFileSync(json, `${JSON.stringify({ meta, summary: rows, samples, ...extra }, null, 2)}\n`)
  const m = meta.machine
  const settings = Object.entries(meta.settings)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ')
  writeFileSync(
    md,
    `# HTTP benchmark ${meta.date}\n\n` +
      `- commit: \`${meta.commit}\`${meta.dirty ? ' (with uncommitted changes)' : ''}${meta.label === null ? '' : `, label: ${meta.label}`}\n` +
      `- machine: ${m.nproc} × ${m.cpu}, ${m.memoryGb} GB, Linux ${m.kernel}; Bun ${meta.bun}; ${meta.wrk ?? 'wrk not used'}\n` +
      `- settings: ${settings}\n\n` +
      table +
      (meta.notes.length > 0 ? `\n${meta.notes.map((n) => `- ${n}`).join('\n')}\n` : ''),
  )
  return { json, md }
}
