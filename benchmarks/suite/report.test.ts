import { describe, expect, test } from 'bun:test'
import type { Sample } from './load.ts'
import { deltaTable, evaluateTargets, matrixTable, measurementProblems, peerTable, scaleTables, summarize } from './report.ts'

/** One round of a target, valid unless told otherwise. */
function sample(target: string, over: Partial<Sample> = {}): Sample {
  return { scenario: 'chat', mode: 'concurrency', target, round: 1, rps: 10_000, p50Ms: 1, p99Ms: 2, requests: 50_000, wrong: 0, errors: 0, cpuUsPerReq: 50, peakRssMb: 100, sideCpuUsPerReq: null, ...over }
}

const verdict = (samples: Sample[], name: string) => evaluateTargets(summarize(samples), [], null).find((t) => t.name.includes(name))!

describe('suite report: rows with wrong answers or errors', () => {
  test('a full stack row of fast wrong answers gets no verdict and no ratio', () => {
    // 401s answered fast would read as ×1.20 of the raw proxy: met, where nothing was measured.
    const samples = [sample('raw'), sample('full', { rps: 12_000, wrong: 60_000 })]
    const t = verdict(samples, 'non-streaming')
    expect(t.met).toBeNull()
    expect(t.measured).toContain('not valid')
    expect(t.measured).toContain('sluice full stack had 60000 wrong answer(s)')
    const full = summarize(samples).find((r) => r.target === 'full')!
    expect(full.invalid).not.toBeNull()
    expect(full.rpsVsRaw).toBeNull()
    expect(matrixTable(summarize(samples), { connections: 50, rate: 500 })).toContain('sluice full stack **(not valid)**')
  })

  test('a failing baseline invalidates the ratios priced against it', () => {
    const samples = [sample('raw', { errors: 12 }), sample('full', { rps: 8_000 })]
    const rows = summarize(samples)
    expect(rows.find((r) => r.target === 'full')!.rpsVsRaw).toBeNull()
    const t = verdict(samples, 'non-streaming')
    expect(t.met).toBeNull()
    expect(t.measured).toContain('raw Bun proxy had 0 wrong answer(s), 12 error(s)')
  })

  test('Portkey answering errors gives no peer verdict or ratio', () => {
    const samples = [sample('full', { rps: 8_000 }), sample('portkey', { rps: 20_000, wrong: 40_000 })]
    const t = verdict(samples, '4× Portkey, chat')
    expect(t.met).toBeNull()
    expect(t.measured).toContain('Portkey 1.15.2 had 40000 wrong answer(s)')
    expect(peerTable(summarize(samples))).toContain('not valid')
  })

  test('added p50 needs valid mock and full stack rows at the fixed rate', () => {
    const rate = (target: string, over: Partial<Sample> = {}) => sample(target, { mode: 'rate', rps: 500, ...over })
    const ok = verdict([rate('mock', { p50Ms: 0.8 }), rate('full', { p50Ms: 1.0 })], 'adds < 0.25 ms')
    expect(ok.met).toBe(true)
    const timedOut = verdict([rate('mock', { p50Ms: 0.8 }), rate('full', { p50Ms: 0.9, errors: 300 })], 'adds < 0.25 ms')
    expect(timedOut.met).toBeNull()
    expect(timedOut.measured).toContain('not valid')
  })

  test('a plugin row with errors shows no delta', () => {
    const samples = [sample('bare'), sample('logging', { errors: 5 })]
    expect(deltaTable(summarize(samples))).toContain('| sluice + logging | sluice, no plugins | not valid | not valid |')
  })

  test('the 429 scenario counts only errors: its 200s are the refill', () => {
    const rows = summarize([sample('full', { scenario: 'limited', wrong: 2 })])
    expect(rows[0]!.invalid).toBeNull()
    expect(summarize([sample('full', { scenario: 'limited', errors: 1 })])[0]!.invalid).not.toBeNull()
  })

  test('valid rows keep their ratios and verdicts', () => {
    const samples = [sample('raw'), sample('full', { rps: 7_500 })]
    expect(summarize(samples).find((r) => r.target === 'full')!.rpsVsRaw).toBe(0.75)
    expect(verdict(samples, 'non-streaming').met).toBe(true)
  })
})

describe('suite report: scale and keys100k with wrong answers or errors', () => {
  const spreadOf = (v: number) => ({ median: v, min: v, max: v })

  test('a memory profile whose load failed does not meet the RSS target', () => {
    // A gateway answering 500s (its database gone) holds few keys: a low peak, of nothing.
    const run = (memory: 'fast' | 'lean', mb: number, errors: number) => ({
      memory,
      rssAfterBootMb: 80,
      rssFillPeakMb: mb,
      fillPerSecond: 2000,
      rssLoadPeakMb: mb,
      rssAfterMb: mb,
      samples: [sample(`keys100k-${memory}`, { errors })],
      rps: spreadOf(5000),
      p50Ms: spreadOf(5),
      rate: null,
    })
    const keys = { keys: 100_000, spread: 10_000, insertS: 10, verified: [], runs: [run('fast', 280, 0), run('lean', 120, 900)] }
    const t = evaluateTargets([], [], keys).find((v) => v.name.startsWith('peak RSS'))!
    expect(t.met).toBe(false)
    expect(t.measured).toContain('not valid: 900 wrong answers or errors')
    const onlyFailed = { ...keys, runs: [run('lean', 120, 900)] }
    expect(evaluateTargets([], [], onlyFailed).find((v) => v.name.startsWith('peak RSS'))!.met).toBeNull()
    const valid = { ...keys, runs: [run('fast', 280, 0), run('lean', 120, 0)] }
    expect(evaluateTargets([], [], valid).find((v) => v.name.startsWith('peak RSS'))!.met).toBe(true)
  })

  test('a scale row with errors is marked and gets no ratio to one process', () => {
    const row = (processes: number, rps: number, errors: number) => ({
      processes,
      samples: [],
      rps: spreadOf(rps),
      p50Ms: spreadOf(3),
      cpuUsPerReq: spreadOf(100),
      redisCpuUsPerReq: null,
      peakRssMb: spreadOf(150),
      cpuShares: [1],
      wrong: 0,
      errors,
    })
    const table = scaleTables({ rows: [row(1, 5000, 0), row(2, 9000, 40)], exactness: [], verified: [], notes: [] })
    expect(table).toContain('| 2 **(not valid)** | 9,000 | — |')
    expect(table).toContain('| **0 / 40** |')
    expect(table).toContain('| 1 | 5,000 | ×1.00 |')
  })
})

describe('suite run: measurements with wrong answers or errors fail the run', () => {
  test('each part names its not valid measurements; a clean run has none', () => {
    const rows = summarize([sample('raw'), sample('full', { wrong: 3 })])
    const spreadOf = (v: number) => ({ median: v, min: v, max: v })
    const scale = {
      rows: [{ processes: 2, samples: [], rps: spreadOf(1), p50Ms: spreadOf(1), cpuUsPerReq: spreadOf(1), redisCpuUsPerReq: null, peakRssMb: spreadOf(1), cpuShares: [0.5, 0.5], wrong: 0, errors: 7 }],
      exactness: [],
      verified: [],
      notes: [],
    }
    const keys = {
      keys: 100_000,
      spread: 10_000,
      insertS: 1,
      verified: [],
      runs: [{ memory: 'lean' as const, rssAfterBootMb: 1, rssFillPeakMb: 1, fillPerSecond: 1, rssLoadPeakMb: 1, rssAfterMb: 1, samples: [sample('k', { errors: 2 })], rps: spreadOf(1), p50Ms: spreadOf(1), rate: sample('k', { mode: 'rate', wrong: 1 }) }],
    }
    const problems = measurementProblems(rows, scale, keys)
    expect(problems).toHaveLength(3)
    expect(problems[0]).toContain('chat/concurrency sluice full stack had 3 wrong answer(s)')
    expect(problems[1]).toContain('scale, 2 process(es) had 0 wrong answer(s), 7 error(s)')
    expect(problems[2]).toContain('keys100k, SLUICE_MEMORY=lean had 3 wrong answers or errors')
    expect(measurementProblems(summarize([sample('raw'), sample('full')]), null, null)).toEqual([])
  })
})
