import { describe, expect, test } from 'bun:test'
import { renderTable, summarize, type Sample } from './report.ts'

function sample(target: Sample['target'], over: Partial<Sample> = {}): Sample {
  return { scenario: 'chat', mode: 'concurrency', target, round: 1, rps: 10_000, p50Ms: 1, p99Ms: 2, cpuUsPerReq: 50, peakRssMb: 100, requests: 50_000, non2xx: 0, errors: 0, ...over }
}

describe('single-configuration runner report', () => {
  test('a gateway row of fast non-2xx answers gets no ratio against the raw proxy', () => {
    // A gateway refusing every request (a 401, a 429 over a key's limit) answers fast: ×1.50 of the raw proxy, of nothing.
    const rows = summarize([sample('raw'), sample('gateway', { rps: 15_000, non2xx: 75_000 })])
    const gateway = rows.find((r) => r.target === 'gateway')!
    expect(gateway.valid).toBe(false)
    expect(gateway.rpsVsRaw).toBeNull()
    expect(gateway.cpuVsRaw).toBeNull()
    expect(renderTable(rows, { connections: 50, rate: 500 })).toContain('| sluice **(not valid)** |')
  })

  test('ratios priced against a failing raw proxy or mock are left out', () => {
    const rows = summarize([
      sample('raw', { errors: 3 }),
      sample('gateway'),
      sample('mock', { mode: 'rate', p50Ms: 0.5, errors: 2 }),
      sample('gateway', { mode: 'rate', p50Ms: 0.9 }),
    ])
    expect(rows.find((r) => r.target === 'gateway' && r.mode === 'concurrency')!.rpsVsRaw).toBeNull()
    expect(rows.find((r) => r.target === 'gateway' && r.mode === 'rate')!.addedP50VsMockMs).toBeNull()
  })

  test('valid rows keep their ratios', () => {
    const rows = summarize([sample('raw'), sample('gateway', { rps: 8_000 }), sample('mock', { mode: 'rate', p50Ms: 0.5 }), sample('gateway', { mode: 'rate', p50Ms: 0.75 })])
    expect(rows.find((r) => r.target === 'gateway' && r.mode === 'concurrency')!.rpsVsRaw).toBe(0.8)
    expect(rows.find((r) => r.target === 'gateway' && r.mode === 'rate')!.addedP50VsMockMs).toBe(0.25)
  })
})
