/**
 * The words of budget alerts: each period's adjective, and small USD budgets shown with the
 * digits that tell spend and budget apart. An AlertMonitor on real SQLite, posting to a real
 * HTTP receiver; and the money format alone.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createDatabase, type DatabaseHandle } from '../../src/db/index.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { MetricsRegistry } from '../../src/metrics.ts'
import { UpstreamHealth } from '../../src/upstream-health.ts'
import { logRow } from '../../test/support/logging.ts'
import { AlertMonitor, describeSpend, dollars, type AlertPayload } from './alerts.ts'

describe('budget alert messages', () => {
  let handle: DatabaseHandle
  let server: ReturnType<typeof Bun.serve>
  const received: AlertPayload[] = []
  beforeAll(async () => {
    server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        received.push((await req.json()) as AlertPayload)
        return new Response(null, { status: 204 })
      },
    })
    handle = await createDatabase('sqlite::memory:')
    await migrateToLatest(handle.db)
  })
  afterAll(async () => {
    server.stop(true)
    await handle.close()
  })

  test('daily, weekly, monthly and total budgets are named so, and a millionths-of-a-dollar budget shows its spend', async () => {
    const now = new Date().toISOString()
    const teams = [
      { id: 'team_day', budget: { usd: 0.00001, period: 'day' } },
      { id: 'team_week', budget: { tokens: 100, period: 'week' } },
      { id: 'team_month', budget: { usd: 0.5, period: 'month' } },
      { id: 'team_total', budget: { tokens: 100, usd: 20, period: 'total' } },
    ]
    await handle.db
      .insertInto('teams')
      .values(teams.map((t) => ({ id: t.id, name: t.id, limits: null, budget: JSON.stringify(t.budget), metadata: null, deleted_at: null, created_at: now, updated_at: now })))
      .execute()
    await handle.db
      .insertInto('request_logs')
      .values([
        logRow('req_day', now, { team_id: 'team_day', total_tokens: 3, cost_usd: 0.0000085 }),
        logRow('req_week', now, { team_id: 'team_week', total_tokens: 85 }),
        logRow('req_month', now, { team_id: 'team_month', total_tokens: 5, cost_usd: 0.45 }),
        logRow('req_total', now, { team_id: 'team_total', total_tokens: 120, cost_usd: 12.3 }),
      ])
      .execute()
    const metrics = new MetricsRegistry()
    const monitor = new AlertMonitor(
      handle.db,
      { webhookUrl: `http://127.0.0.1:${server.port}/hook`, expiringWithinDays: 7, budgetThresholds: [0.8], checkMs: 60_000, deadKeyFailures: 1, retryBaseMs: 50, retryMaxMs: 1000, timeoutMs: 2000 },
      { now: Date.now, logger: createLogger('silent'), upstreams: new UpstreamHealth(metrics), environment: 'dev', metrics },
    )
    try {
      await monitor.tick()
    } finally {
      await monitor.close(2000)
    }
    const messages = Object.fromEntries(received.filter((a) => a.kind === 'budget').map((a) => [a.subject.id, a.message]))
    expect(messages).toEqual({
      team_day: 'The daily budget of team team_day is 80% spent ($0.0000085 of $0.00001).',
      team_week: 'The weekly budget of team team_week is 80% spent (85 of 100 tokens).',
      team_month: 'The monthly budget of team team_month is 80% spent ($0.45 of $0.50).',
      team_total: 'The total budget of team team_total is 80% spent (120 of 100 tokens, $12.30 of $20.00).',
    })
    expect(JSON.stringify(received)).not.toContain('dayly')
  })
})

describe('dollars', () => {
  test('cents from a dollar up; below it four significant digits, at least two decimals, never an exponent', () => {
    const cases: Array<[number, string]> = [
      [0, '$0.00'],
      [1, '$1.00'],
      [12.3, '$12.30'],
      [1234.567, '$1234.57'],
      [0.5, '$0.50'],
      [0.123456, '$0.1235'],
      [0.0002, '$0.0002'],
      [0.00001, '$0.00001'],
      [0.0000042, '$0.0000042'],
      [0.000001, '$0.000001'],
      [0.1 + 0.2, '$0.30'],
    ]
    expect(cases.map(([n]) => [n, dollars(n)])).toEqual(cases)
  })

  test('a spend that is not yet a cent of a small budget is not shown as $0.0000', () => {
    expect(describeSpend({ tokens: 0, usd: 0.0000042 }, { usd: 0.00001, period: 'day' })).toBe('$0.0000042 of $0.00001')
    expect(describeSpend({ tokens: 85, usd: 0.0000042 }, { tokens: 100, usd: 0.00001, period: 'day' })).toBe('85 of 100 tokens, $0.0000042 of $0.00001')
  })
})
