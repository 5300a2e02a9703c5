/**
 * Webhook alerts from the logging plugin, received by a real local HTTP server: an expiring
 * key (once, and not again after a restart), budgets passing 80 % and 100 %, an upstream key
 * the provider keeps refusing, and delivery retried until a failing receiver accepts. A key's
 * budget is its rotation chain's (lineage's): alerted once per lineage, on SQLite and Postgres.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import { createDatabase } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import type { ApiKeyInsert, Database } from '../src/db/schema.ts'
import { createLogger } from '../src/lib/logger.ts'
import { MetricsRegistry } from '../src/metrics.ts'
import type { ProviderRuntime, RouteTarget } from '../src/models.ts'
import { UpstreamHealth } from '../src/upstream-health.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, uid, type AuthGateway } from './support/auth.ts'
import { postJson, waitFor } from './support/http.ts'
import { loggingHooks, logRow } from './support/logging.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'
import { AlertMonitor, pruneAlerts, type AlertOptions, type AlertPayload } from '../plugins/logging/alerts.ts'

const DAY = 86_400_000
const postgresUrl = await postgresUrlForTests('test/alerts.test.ts')
const messages = [{ role: 'user', content: 'hello there' }]

/** A webhook receiver that records every POST and fails the first `failFirst` of them. */
function startReceiver(failFirst = 0) {
  const received: Array<{ body: AlertPayload; alertId: string | null; contentType: string | null }> = []
  let calls = 0
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      calls++
      const body = (await req.json()) as AlertPayload
      if (calls <= failFirst) return new Response('try later', { status: 500 })
      received.push({ body, alertId: req.headers.get('x-sluice-alert-id'), contentType: req.headers.get('content-type') })
      return new Response(null, { status: 204 })
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}/hooks/sluice?token=receiver-secret`,
    received,
    calls: () => calls,
    of: (kind: string) => received.filter((r) => r.body.kind === kind).map((r) => r.body),
    stop: () => server.stop(true),
  }
}

let upstream: MockUpstream
let dir: string
beforeAll(async () => {
  upstream = await startMockUpstream()
  dir = mkdtempSync(join(tmpdir(), 'sluice-alerts-'))
})
afterAll(async () => {
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** A gateway with auth and logging's alerts (and `quota`, its plugin entry, between them when given). */
function boot(file: string, webhookUrl: string, alerts: Record<string, unknown> = {}, models?: unknown[], quota?: string | { use: string; options: Record<string, unknown> }): Promise<AuthGateway> {
  return startAuthGateway(upstream.url, {
    config: {
      ...(models ? { models: models as never } : {}),
      plugins: [
        { use: 'auth', options: { demo_key: false } },
        ...(quota === undefined ? [] : [quota]),
        { use: 'logging', options: { flush_ms: 10, alerts: { webhook_url: webhookUrl, check_ms: 100, retry_base_ms: 50, ...alerts } } },
      ],
    },
    env: { DATABASE_URL: `sqlite://${file}` },
  })
}

/** A target as the pipeline records an attempt with it; UpstreamHealth reads only the two ids. */
const upstreamTarget = (provider: string, key: string): RouteTarget => ({ provider: { id: provider } as ProviderRuntime, key: { id: key, secret: 'x' }, model: 'm', group: 'g' })

/** An AlertMonitor of its own on a fresh database (in-memory SQLite unless `url`), ticked by the test (no timer). */
async function standaloneMonitor(
  webhookUrl: string,
  options: Partial<AlertOptions> = {},
  url = 'sqlite::memory:',
  deps: { upstreams?: UpstreamHealth; now?: () => number; pendingSince?: () => string | null } = {},
): Promise<{ db: Kysely<Database>; monitor: AlertMonitor; close(): Promise<void> }> {
  const handle = await createDatabase(url)
  await migrateToLatest(handle.db)
  const metrics = new MetricsRegistry()
  const monitor = new AlertMonitor(
    handle.db,
    { webhookUrl, expiringWithinDays: 7, budgetThresholds: [0.8, 1], checkMs: 60_000, deadKeyFailures: 1, retryBaseMs: 50, retryMaxMs: 1000, timeoutMs: 1000, ...options },
    { now: deps.now ?? Date.now, logger: createLogger('silent'), upstreams: deps.upstreams ?? new UpstreamHealth(metrics), environment: 'dev', metrics, ...(deps.pendingSince && { pendingSince: deps.pendingSince }) },
  )
  return {
    db: handle.db,
    monitor,
    async close() {
      await monitor.close(2000)
      await handle.close()
    },
  }
}

describe('alerts by webhook', () => {
  test('a key expiring within the window: alerted once, not again on later checks, not again after a restart', async () => {
    const receiver = startReceiver()
    const file = join(dir, 'expiring.db')
    let gw = await boot(file, receiver.url, { expiring_within_days: 7 })
    try {
      const soon = new Date(Date.now() + 3 * DAY).toISOString()
      const { key, userId } = await userWithKey(gw, { expires_at: soon, name: 'ci-deploy' })
      await userWithKey(gw, { expires_at: new Date(Date.now() + 20 * DAY).toISOString() }) // outside the window
      // Into the window only once revoked: a check between its creation and its revocation would alert it.
      const revoked = await userWithKey(gw, { expires_at: new Date(Date.now() + 20 * DAY).toISOString() })
      await gw.adminOk('POST', `/admin/keys/${revoked.key.id}/revoke`)
      await gw.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() + 2 * DAY).toISOString() }).where('id', '=', revoked.key.id).execute()
      // Nor keys refused for their holder (a deleted or disabled owner), whatever their expiry.
      const gone = await userWithKey(gw, { expires_at: new Date(Date.now() + 20 * DAY).toISOString() })
      await gw.adminOk('DELETE', `/admin/users/${gone.userId}`)
      const off = await userWithKey(gw, { expires_at: new Date(Date.now() + 20 * DAY).toISOString() })
      await gw.adminOk('PATCH', `/admin/users/${off.userId}`, { disabled: true })
      await gw.db.updateTable('api_keys').set({ expires_at: soon }).where('id', 'in', [gone.key.id, off.key.id]).execute()
      await waitFor(() => receiver.of('key_expiring').length >= 1, 'the expiring-key alert')
      await Bun.sleep(400) // several more checks
      expect(receiver.of('key_expiring').length).toBe(1)
      const alert = receiver.of('key_expiring')[0]!
      expect(alert).toMatchObject({
        kind: 'key_expiring',
        subject: { type: 'key', id: key.id },
        threshold: 7,
        environment: 'dev',
        details: { key_id: key.id, user_id: userId, name: 'ci-deploy', expires_at: new Date(soon).toISOString(), display: `${key.start}…${key.end}` },
      })
      expect(Date.parse(alert.period)).toBe(Date.parse(soon))
      expect(alert.message).toContain(key.id)
      expect(receiver.received[0]!.alertId).toBe(alert.id)
      expect(receiver.received[0]!.contentType).toStartWith('application/json')
      expect(JSON.stringify(receiver.received)).not.toContain(key.key)

      await gw.close()
      gw = await boot(file, receiver.url, { expiring_within_days: 7 })
      await Bun.sleep(500)
      expect(receiver.of('key_expiring').length).toBe(1)
      const rows = await gw.db.selectFrom('alerts_sent').selectAll().execute()
      expect(rows.map((r) => [r.kind, r.status, r.attempts])).toEqual([['key_expiring', 'sent', 1]])
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('an expiring key rotated: the expiry carries over to its successor, which is the same expiry of the same key chain, not told again; the message says to extend it', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'expiring-rotated.db'), receiver.url, { expiring_within_days: 7 })
    try {
      const soon = new Date(Date.now() + 3 * DAY).toISOString()
      const { key } = await userWithKey(gw, { expires_at: soon })
      await waitFor(() => receiver.of('key_expiring').length === 1, 'the expiring-key alert')
      const first = receiver.of('key_expiring')[0]!
      // Rotating it would not help: the successor keeps the expiry.
      expect(first.message).toContain(`Extend its expires_at (PATCH /admin/keys/${key.id}) or issue a new key; a rotation keeps the expiry.`)
      const rotated = await gw.adminOk<{ id: string; expires_at: string }>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 0 })
      expect(Date.parse(rotated.expires_at)).toBe(Date.parse(soon))
      await Bun.sleep(400) // several checks
      expect(receiver.of('key_expiring').map((a) => a.subject.id)).toEqual([key.id])
      // Its expiry moved (on the key in use): that is a new date to tell.
      const later = new Date(Date.now() + 5 * DAY).toISOString()
      await gw.adminOk('PATCH', `/admin/keys/${rotated.id}`, { expires_at: later })
      await waitFor(() => receiver.of('key_expiring').length === 2, 'the alert of the moved expiry')
      expect(receiver.of('key_expiring')[1]).toMatchObject({ subject: { type: 'key', id: key.id }, details: { key_id: rotated.id, lineage_id: key.id } })
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('budgets: 80 % and 100 % of a key\'s token budget and of a team\'s USD budget, each once per period', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'budgets.db'), receiver.url, {}, [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: { input: 1, output: 1 } }])
    try {
      const teamId = uid('team')
      await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Budgeted', budget: { usd: 0.0002, period: 'week' } })
      const { key, userId } = await userWithKey(gw, { budget: { tokens: 100, period: 'day' } })
      await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
      await gw.adminOk('PATCH', `/admin/users/${userId}`, { budget: { tokens: 1_000_000, period: 'month' } })
      const auth = { authorization: `Bearer ${key.key}`, 'openai-organization': teamId }
      let used = 0
      const spend = async (until: number) => {
        while (used < until) {
          const body = (await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 5 }, auth)).json()) as { usage: { total_tokens: number } }
          used += body.usage.total_tokens
        }
      }
      await spend(80)
      expect(used).toBeLessThan(100)
      await waitFor(() => receiver.of('budget').some((a) => a.subject.type === 'key' && a.threshold === 0.8), 'the 80 % key budget alert')
      expect(receiver.of('budget').filter((a) => a.subject.type === 'key').map((a) => a.threshold)).toEqual([0.8])
      await spend(100)
      await waitFor(() => receiver.of('budget').some((a) => a.subject.type === 'key' && a.threshold === 1), 'the 100 % key budget alert')
      // The team's USD budget (0.0002 at 1 USD per million tokens = 200 tokens).
      await spend(200)
      await waitFor(() => receiver.of('budget').filter((a) => a.subject.type === 'team').length === 2, 'the team budget alerts')
      await Bun.sleep(400)
      const budget = receiver.of('budget')
      const keyAlerts = budget.filter((a) => a.subject.type === 'key')
      expect(keyAlerts.map((a) => a.threshold)).toEqual([0.8, 1])
      expect(keyAlerts[0]).toMatchObject({ subject: { id: key.id }, period: `d${new Date().toISOString().slice(0, 10)}`, details: { budget: { tokens: 100, period: 'day' } } })
      expect((keyAlerts[1]!.details.spent as { tokens: number }).tokens).toBeGreaterThanOrEqual(100)
      expect(budget.filter((a) => a.subject.type === 'team').map((a) => [a.subject.id, a.threshold])).toEqual([
        [teamId, 0.8],
        [teamId, 1],
      ])
      // The user's budget is far from spent: no alert.
      expect(budget.filter((a) => a.subject.type === 'user')).toEqual([])
      expect(sampleValue(await scrape(gw.url), 'sluice_alerts_sent_total', { kind: 'budget' })).toBe(4)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test("an operator's budget reset (quota plugin) starts the key's spend over: its thresholds alert again from the reset on, the spend before it no longer counts", async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'budget-reset.db'), receiver.url, {}, undefined, 'quota')
    try {
      const { key } = await userWithKey(gw, { budget: { tokens: 100, period: 'day' } })
      const auth = { authorization: `Bearer ${key.key}` }
      let used = 0
      const spend = async (until: number) => {
        while (used < until) {
          const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 5 }, auth)
          expect(res.status).toBe(200)
          used += ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens
        }
      }
      const keyAlerts = () => receiver.of('budget').filter((a) => a.subject.type === 'key')
      await spend(80)
      await waitFor(() => keyAlerts().length === 1, 'the 80 % alert')
      expect(keyAlerts()[0]!.period).toBe(`d${new Date().toISOString().slice(0, 10)}`)

      await gw.adminOk('POST', `/admin/keys/${key.id}/quota/reset`, { limits: false })
      used = 0
      // Spent again past 80 % of the budget since the reset (over 160 tokens in the day, which
      // without the reset would be its 100 % alert): the 80 % alert again, of the reset's period.
      await spend(80)
      await waitFor(() => keyAlerts().length === 2, 'the 80 % alert after the reset')
      await Bun.sleep(400)
      const alerts = keyAlerts()
      expect(alerts.map((a) => a.threshold)).toEqual([0.8, 0.8])
      expect(alerts[1]!.period).toStartWith(`d${new Date().toISOString().slice(0, 10)}+reset `)
      expect((alerts[1]!.details.spent as { tokens: number }).tokens).toBe(used)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('with the quota plugin, a budget that refuses requests (its remainder below their reservation) is alerted as spent, once, though its recorded spend stays under 100 %', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'budget-refused.db'), receiver.url, {}, undefined, 'quota')
    try {
      const { key } = await userWithKey(gw, { budget: { tokens: 100, period: 'day' } })
      const auth = { authorization: `Bearer ${key.key}` }
      // Spend until the quota refuses: each request reserves its prompt and 20 completion tokens
      // and is charged what it used, so the remainder falls below a reservation short of 100.
      let used = 0
      let refusal: { status: number; code: string } | null = null
      for (let i = 0; i < 50 && refusal === null; i++) {
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 20 }, auth)
        const body = (await res.json()) as { usage?: { total_tokens: number }; error?: { code: string } }
        if (res.status === 200) used += body.usage!.total_tokens
        else refusal = { status: res.status, code: body.error!.code }
      }
      expect(refusal).toEqual({ status: 429, code: 'insufficient_quota' })
      expect(used).toBeLessThan(100)
      const keyAlerts = () => receiver.of('budget').filter((a) => a.subject.type === 'key')
      await waitFor(() => keyAlerts().some((a) => a.threshold === 1), 'the 100 % alert of a budget that refuses requests')
      // Refused again, on later checks: still that one alert.
      expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 20 }, auth)).status).toBe(429)
      await Bun.sleep(400)
      // Both may be raised by one check (the 80 % crossed and the refusal within it): in either order.
      const alerts = keyAlerts().sort((a, b) => a.threshold - b.threshold)
      expect(alerts.map((a) => a.threshold)).toEqual([0.8, 1])
      const spent = alerts[1]!
      expect(spent.id).toBe(`budget:key:${key.id}:1:d${new Date().toISOString().slice(0, 10)}`)
      expect(spent.message).toStartWith(`The daily budget of key ${key.id} refuses requests: ${used} of 100 tokens spent, ${100 - used} tokens left, less than the `)
      expect(spent.details).toMatchObject({ spent: { tokens: used }, refused: { measure: 'budget_tokens', left: 100 - used } })
      // An operator's reset: the refusals before it are not the new count's; nothing more is alerted.
      await gw.adminOk('POST', `/admin/keys/${key.id}/quota/reset`, { limits: false })
      await Bun.sleep(400)
      expect(keyAlerts().length).toBe(2)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('with the quota plugin, one large request refused well short of the budget raises no alert: its 80 and 100 % come when the spend does', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'budget-refused-large.db'), receiver.url, {}, undefined, 'quota')
    try {
      const { key } = await userWithKey(gw, { budget: { tokens: 1000, period: 'day' } })
      const auth = { authorization: `Bearer ${key.key}` }
      const ok = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 20 }, auth)
      expect(ok.status).toBe(200)
      const used = ((await ok.json()) as { usage: { total_tokens: number } }).usage.total_tokens
      // Its prompt and 1000 - used completion tokens: more than is left, less than the whole budget.
      const refused = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 1000 - used }, auth)
      expect(refused.status).toBe(429)
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('insufficient_quota')
      // Several checks (every 100 ms) after the refusal: none alerts it.
      await Bun.sleep(500)
      expect(receiver.of('budget').filter((a) => a.subject.type === 'key')).toEqual([])
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('with the quota plugin, tokens reserved by requests in flight are not spend: no budget alert while they run, none after they use little', async () => {
    const receiver = startReceiver()
    // A request that sets no max_tokens reserves 450 completion tokens; the mock answers 16 words.
    const gw = await boot(join(dir, 'budget-reserved.db'), receiver.url, {}, [{ name: 'slow-gpt', targets: [{ provider: 'up', model: 'mock-slow-1500' }] }], { use: 'quota', options: { completion_estimate: 450 } })
    try {
      const { key } = await userWithKey(gw, { budget: { tokens: 1000, period: 'day' } })
      const auth = { authorization: `Bearer ${key.key}` }
      // Two requests at once, each reserving its prompt and 450 completion tokens: over 90 % of
      // the budget held while they run (1.5 s, many checks), a few dozen tokens used in the end.
      const answers = await Promise.all([0, 1].map(() => postJson(`${gw.url}/v1/chat/completions`, { model: 'slow-gpt', messages }, auth)))
      let used = 0
      for (const res of answers) {
        expect(res.status).toBe(200)
        used += ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens
      }
      expect(used).toBeLessThan(100)
      await Bun.sleep(300)
      expect(receiver.of('budget')).toEqual([])
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('with the quota plugin, a budget alert reads what the quota counts: spend whose log rows are gone (retention) still alerts', async () => {
    const receiver = startReceiver()
    // A check at boot, the next 3 s later: the spend and the loss of its rows come between the two.
    const gw = await boot(join(dir, 'budget-enforced.db'), receiver.url, { check_ms: 3000 }, undefined, 'quota')
    try {
      const { key } = await userWithKey(gw, { budget: { tokens: 100, period: 'total' } })
      let used = 0
      while (used < 80) {
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 5 }, { authorization: `Bearer ${key.key}` })
        expect(res.status).toBe(200)
        used += ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens
      }
      // The rows go as retention takes them (with a `total` budget, any spend older than
      // retention_days): before, the alerts summed the table and never saw this spend.
      await Bun.sleep(100)
      await gw.db.deleteFrom('request_logs').execute()
      await waitFor(() => receiver.of('budget').some((a) => a.subject.type === 'key' && a.threshold === 0.8), 'the 80 % alert from the quota counts', 8000)
      const alert = receiver.of('budget').find((a) => a.subject.type === 'key')!
      expect((alert.details.spent as { tokens: number }).tokens).toBe(used)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('a key\'s budget is its lineage\'s: spend carries over a rotation, one alert per threshold, naming the key in use, not again after another rotation', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'budget-lineage.db'), receiver.url)
    try {
      const { key: first, userId } = await userWithKey(gw, { budget: { tokens: 100, period: 'total' } })
      let n = 0
      const spend = (keyId: string, tokens: number) => gw.db.insertInto('request_logs').values(logRow(`req_lineage_${n++}`, new Date().toISOString(), { key_id: keyId, user_id: userId, total_tokens: tokens })).execute()
      const rotate = async (id: string) => (await gw.adminOk<{ id: string }>('POST', `/admin/keys/${id}/rotate`, { grace_seconds: 0 })).id
      const keyAlerts = () => receiver.of('budget').filter((a) => a.subject.type === 'key')

      await spend(first.id, 60)
      await Bun.sleep(300) // several checks: 60 % is no threshold
      expect(keyAlerts()).toEqual([])
      const second = await rotate(first.id)
      await spend(second, 25)
      await waitFor(() => keyAlerts().length >= 1, 'the 80 % alert of the lineage')
      const alert = keyAlerts()[0]!
      // The lineage's id (its first key's): the same subject, so the same alert id, after any rotation.
      expect(alert).toMatchObject({
        id: `budget:key:${first.id}:0.8:total`,
        subject: { type: 'key', id: first.id },
        threshold: 0.8,
        period: 'total',
        details: { key_id: second, lineage_id: first.id, lineage_keys: 2, user_id: userId, spent: { tokens: 85 }, budget: { tokens: 100, period: 'total' } },
      })
      expect(alert.message).toContain(`key ${second}`)
      expect(alert.message).toContain('85 of 100 tokens')
      expect(alert.message).toContain(`the keys it replaced (rotation chain ${first.id})`)

      // Rotated again: still 85 % of the same total budget, already alerted.
      const third = await rotate(second)
      await Bun.sleep(400)
      expect(keyAlerts().map((a) => a.threshold)).toEqual([0.8])
      // The checks still see the lineage, now through its third key.
      await spend(third, 15)
      await waitFor(() => keyAlerts().length >= 2, 'the 100 % alert of the lineage')
      await Bun.sleep(300)
      expect(keyAlerts().map((a) => [a.subject.id, a.threshold, a.details.key_id])).toEqual([
        [first.id, 0.8, second],
        [first.id, 1, third],
      ])
      expect(keyAlerts()[1]!.message).toContain(`key ${third}`)
      const rows = await gw.db.selectFrom('alerts_sent').select(['subject', 'status']).where('kind', '=', 'budget').orderBy('threshold').execute()
      expect(rows).toEqual([
        { subject: `key:${first.id}`, status: 'sent' },
        { subject: `key:${first.id}`, status: 'sent' },
      ])
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('an upstream key refused N times in a row is reported dead, once', async () => {
    const receiver = startReceiver()
    const gw = await boot(join(dir, 'dead.db'), receiver.url, { dead_key_failures: 3 })
    try {
      const { key } = await userWithKey(gw)
      const auth = { authorization: `Bearer ${key.key}` }
      upstream.setFailure({ status: 401, times: 3 })
      for (let i = 0; i < 2; i++) expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).status).toBe(502)
      await Bun.sleep(300)
      expect(receiver.of('upstream_key_dead')).toEqual([])
      expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).status).toBe(502)
      await waitFor(() => receiver.of('upstream_key_dead').length === 1, 'the dead-key alert')
      // It answers again; a later check sends nothing more.
      expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).status).toBe(200)
      await Bun.sleep(300)
      const dead = receiver.of('upstream_key_dead')
      expect(dead.length).toBe(1)
      expect(dead[0]).toMatchObject({ subject: { type: 'provider_key', id: 'up/k1' }, threshold: 3, details: { provider: 'up', key: 'k1', consecutive_failures: 3, last_status: 401 } })
      expect(JSON.stringify(dead)).not.toContain('sk-upstream-secret')
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('with the balance plugin, which stops using a key at its first 401/403, a refused key is alerted though dead_key_failures is more than 1', async () => {
    const receiver = startReceiver()
    const gw = await startAuthGateway(upstream.url, {
      config: {
        plugins: [
          { use: 'auth', options: { demo_key: false } },
          'balance',
          { use: 'logging', options: { flush_ms: 10, alerts: { webhook_url: receiver.url, check_ms: 100, retry_base_ms: 50, dead_key_failures: 3 } } },
        ],
      },
      env: { DATABASE_URL: `sqlite://${join(dir, 'dead-balanced.db')}` },
    })
    try {
      const { key } = await userWithKey(gw)
      const auth = { authorization: `Bearer ${key.key}` }
      upstream.setFailure({ status: 401, times: 3 })
      // The first request meets the 401 and the key is out; the next two are refused without trying it.
      for (let i = 0; i < 3; i++) expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).status).toBe(502)
      await waitFor(() => receiver.of('upstream_key_dead').length === 1, 'the dead-key alert')
      const dead = receiver.of('upstream_key_dead')[0]!
      expect(dead).toMatchObject({ subject: { type: 'provider_key', id: 'up/k1' }, details: { provider: 'up', key: 'k1', last_status: 401, consecutive_failures: 1, retired: true } })
      expect(dead.message).toBe('Upstream provider "up" refused the gateway\'s key "k1" once (last HTTP 401) and it is no longer tried. Fix or replace that provider key.')
    } finally {
      upstream.setFailure(null)
      await gw.close()
      receiver.stop()
    }
  })

  test('a dead upstream key is alerted once a day across instances and restarts, though each saw it fail at another time', async () => {
    const receiver = startReceiver()
    const file = join(dir, 'dead-shared.db')
    let first = await boot(file, receiver.url)
    const second = await boot(file, receiver.url)
    try {
      const { key } = await userWithKey(first)
      const auth = { authorization: `Bearer ${key.key}` }
      const refuse = async (gw: AuthGateway) => {
        upstream.setFailure({ status: 401, times: 1 })
        expect((await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).status).toBe(502)
      }
      await refuse(first)
      await waitFor(() => receiver.of('upstream_key_dead').length === 1, 'the dead-key alert')
      await Bun.sleep(5)
      await refuse(second)
      await Bun.sleep(400) // several checks of both
      // A restart forgets when the key began failing; it fails again, later.
      await first.close()
      first = await boot(file, receiver.url)
      await refuse(first)
      await Bun.sleep(400)
      const dead = receiver.of('upstream_key_dead')
      expect(dead.length).toBe(1)
      expect(dead[0]).toMatchObject({ subject: { type: 'provider_key', id: 'up/k1' }, period: `d${new Date().toISOString().slice(0, 10)}` })
      const rows = await first.db.selectFrom('alerts_sent').select(['kind', 'status']).execute()
      expect(rows).toEqual([{ kind: 'upstream_key_dead', status: 'sent' }])
    } finally {
      upstream.setFailure(null)
      await Promise.all([first.close(), second.close()])
      receiver.stop()
    }
  })

  test('a dead upstream key seen by an instance that stops before its next check is alerted by another instance', async () => {
    const receiver = startReceiver()
    const file = join(dir, 'dead-handover.db')
    // The first instance checks once, at its start, then not for an hour: it sees the refusal and stops first.
    const seer = await boot(file, receiver.url, { check_ms: 3_600_000 })
    const other = await boot(file, receiver.url)
    try {
      const { key } = await userWithKey(seer)
      upstream.setFailure({ status: 401, times: 1 })
      expect((await postJson(`${seer.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer ${key.key}` })).status).toBe(502)
      await seer.close()
      // The other instance never tried the key: what it sends is what the first one recorded.
      await waitFor(() => receiver.of('upstream_key_dead').length === 1, 'the dead-key alert, from the other instance')
      expect(receiver.of('upstream_key_dead')[0]).toMatchObject({ subject: { type: 'provider_key', id: 'up/k1' }, details: { provider: 'up', key: 'k1', last_status: 401 } })
      await Bun.sleep(300)
      expect(receiver.of('upstream_key_dead').length).toBe(1)
    } finally {
      upstream.setFailure(null)
      await Promise.all([seer.close(), other.close()])
      receiver.stop()
    }
  })

  test('a pending alert whose condition is gone by its delivery (key extended, revoked, owner deleted; budget changed; upstream key removed) is not sent; one that still holds is', async () => {
    let accept = false
    const received: AlertPayload[] = []
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        const body = (await req.json()) as AlertPayload
        if (!accept) return new Response('down', { status: 503 })
        received.push(body)
        return new Response(null, { status: 204 })
      },
    })
    const metrics = new MetricsRegistry()
    const upstreams = new UpstreamHealth(metrics)
    const m = await standaloneMonitor(`http://127.0.0.1:${server.port}/hook`, { retryBaseMs: 20, retryMaxMs: 20, budgetThresholds: [0.8] }, 'sqlite::memory:', { upstreams })
    try {
      const now = new Date().toISOString()
      const in2 = new Date(Date.now() + 2 * DAY).toISOString()
      const user = (id: string, budget: string | null = null) => ({ id, email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget, metadata: null, created_at: now, updated_at: now })
      const budget = JSON.stringify({ tokens: 100, period: 'total' })
      await m.db.insertInto('users').values([user('usr_hold'), user('usr_gone'), user('usr_budget_kept', budget), user('usr_budget_raised', budget), user('usr_budget_deleted', budget)]).execute()
      const key = (id: string, userId: string, over: Partial<ApiKeyInsert> = {}): ApiKeyInsert => ({
        id, hash: `hash_${id}`, start: 'sk-dev-abcde', end: id.slice(-4), environment: 'dev', user_id: userId, expires_at: in2, created_at: now, updated_at: now, ...over,
      })
      await m.db
        .insertInto('api_keys')
        .values([key('key_kept', 'usr_hold'), key('key_extended', 'usr_hold'), key('key_revoked', 'usr_hold'), key('key_rotated', 'usr_hold'), key('key_owner_gone', 'usr_gone')])
        .execute()
      await m.db
        .insertInto('request_logs')
        .values(['usr_budget_kept', 'usr_budget_raised', 'usr_budget_deleted'].map((u, i) => logRow(`req_hold_${i}`, now, { user_id: u, total_tokens: 90 })))
        .execute()
      upstreams.record(upstreamTarget('gone', 'k'), 401, 5)
      upstreams.record(upstreamTarget('up', 'dead'), 401, 5)
      upstreams.record(upstreamTarget('up', 'fixed'), 403, 5)
      upstreams.retain(() => true)

      await m.monitor.tick() // every alert recorded; the receiver refuses the first, the others wait
      expect(await m.db.selectFrom('alerts_sent').select('id').where('status', '=', 'pending').execute()).toHaveLength(11)

      // Meanwhile: an expiry moved out of the window, a key revoked, one rotated (its successor
      // keeps the expiry: the same alert still holds), an owner deleted; a budget raised, a user
      // with a budget deleted; a provider key taken away, one that answers again.
      await m.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() + 60 * DAY).toISOString() }).where('id', '=', 'key_extended').execute()
      await m.db.updateTable('api_keys').set({ status: 'revoked' }).where('id', '=', 'key_revoked').execute()
      await m.db.updateTable('api_keys').set({ grace_until: in2, rotated_to: 'key_rotated_2' }).where('id', '=', 'key_rotated').execute()
      await m.db.insertInto('api_keys').values(key('key_rotated_2', 'usr_hold', { lineage_id: 'key_rotated', rotated_from: 'key_rotated' })).execute()
      await m.db.updateTable('users').set({ deleted_at: now }).where('id', '=', 'usr_gone').execute()
      await m.db.updateTable('users').set({ budget: JSON.stringify({ tokens: 1000, period: 'total' }) }).where('id', '=', 'usr_budget_raised').execute()
      await m.db.updateTable('users').set({ deleted_at: now }).where('id', '=', 'usr_budget_deleted').execute()
      upstreams.retain((provider) => provider !== 'gone')
      upstreams.record(upstreamTarget('up', 'fixed'), 200, 5)

      accept = true
      await Bun.sleep(50) // past the backoff
      await m.monitor.tick()
      await m.monitor.tick()
      const told = received.map((a) => `${a.kind} ${a.subject.id}`).sort()
      expect(told).toEqual(['budget usr_budget_kept', 'key_expiring key_kept', 'key_expiring key_rotated', 'upstream_key_dead up/dead'])
      // The others are not marked sent. A key's or an upstream key's is forgotten, to be raised
      // again should its condition come back; a budget's stays, dropped, as the figure its period told first.
      const rows = await m.db.selectFrom('alerts_sent').select(['kind', 'subject', 'status']).orderBy('subject').execute()
      expect(rows.map((r) => `${r.subject} ${r.status}`)).toEqual([
        'key:key_kept sent',
        'key:key_rotated sent',
        'provider_key:up/dead sent',
        'user:usr_budget_deleted dropped',
        'user:usr_budget_kept sent',
        'user:usr_budget_raised dropped',
      ])
      // The raised budget's own 80 % comes when its spend does, as the new figure's alert.
      await m.db.insertInto('request_logs').values(logRow('req_hold_more', now, { user_id: 'usr_budget_raised', total_tokens: 800 })).execute()
      await m.monitor.tick()
      await m.monitor.tick()
      expect(received.filter((a) => a.subject.id === 'usr_budget_raised').map((a) => a.id)).toEqual(['budget:user:usr_budget_raised:0.8:total@1000tokens'])
      expect(received).toHaveLength(5)
    } finally {
      await m.close()
      server.stop(true)
    }
  })

  test('budgets: every subject with a budget is checked, past the first page of them', async () => {
    const receiver = startReceiver()
    const m = await standaloneMonitor(receiver.url, { budgetThresholds: [1], budgetPageSize: 500 })
    try {
      const now = new Date().toISOString()
      const ids = Array.from({ length: 1205 }, (_, i) => `usr_page_${String(i).padStart(4, '0')}`)
      const budget = JSON.stringify({ tokens: 100, period: 'total' })
      for (let i = 0; i < ids.length; i += 200) {
        await m.db
          .insertInto('users')
          .values(ids.slice(i, i + 200).map((id) => ({ id, email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget, metadata: null, created_at: now, updated_at: now })))
          .execute()
      }
      // Only the last user, by id and by insertion, has spent its budget.
      const late = ids.at(-1)!
      await m.db.insertInto('request_logs').values([logRow('req_page_1', now, { user_id: ids[3]!, total_tokens: 50 }), logRow('req_page_2', now, { user_id: late, total_tokens: 120 })]).execute()
      await m.monitor.tick()
      await waitFor(() => receiver.received.length === 1, 'the budget alert of the last user')
      await m.monitor.tick()
      expect(receiver.of('budget').map((a) => [a.subject, a.threshold])).toEqual([[{ type: 'user', id: late }, 1]])
    } finally {
      await m.close()
      receiver.stop()
    }
  })


  test('a delivery claim lasts from when it is taken, however long the deliveries before it in the round took', async () => {
    // Each POST takes 300 ms: the sixth alert of a round is claimed 1.5 s in, past twice the timeout.
    const timeoutMs = 600
    let db: Kysely<Database> | undefined
    const claims: Array<{ id: string; heldForMs: number }> = []
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        const id = req.headers.get('x-sluice-alert-id')!
        const row = await db!.selectFrom('alerts_sent').select('next_attempt_at').where('id', '=', id).executeTakeFirstOrThrow()
        claims.push({ id, heldForMs: Date.parse(row.next_attempt_at) - Date.now() })
        await Bun.sleep(300)
        return new Response(null, { status: 204 })
      },
    })
    const m = await standaloneMonitor(`http://127.0.0.1:${server.port}/hook`, { timeoutMs })
    db = m.db
    try {
      const past = new Date(Date.now() - 1000).toISOString()
      await m.db
        .insertInto('alerts_sent')
        .values(
          Array.from({ length: 6 }, (_, i) => ({
            id: `test:alert:${i}`,
            kind: 'budget',
            subject: `user:usr_${i}`,
            threshold: 1,
            period: 'total',
            status: 'pending',
            attempts: 0,
            payload: JSON.stringify({ id: `test:alert:${i}` }),
            next_attempt_at: past,
            last_error: null,
            created_at: past,
            sent_at: null,
          })),
        )
        .execute()
      await m.monitor.tick()
      expect(claims.map((c) => c.id)).toEqual(Array.from({ length: 6 }, (_, i) => `test:alert:${i}`))
      // While its POST runs, each alert is still claimed: no other instance may take it.
      for (const c of claims) expect([c.id, c.heldForMs > timeoutMs]).toEqual([c.id, true])
      const rows = await m.db.selectFrom('alerts_sent').select(['status', 'attempts']).execute()
      expect(rows.every((r) => r.status === 'sent' && r.attempts === 1)).toBe(true)
    } finally {
      await m.close()
      server.stop(true)
    }
  })

  test('a check delivers every alert due, past the first hundred', async () => {
    const receiver = startReceiver()
    const m = await standaloneMonitor(receiver.url)
    try {
      const past = new Date(Date.now() - 1000).toISOString()
      const ids = Array.from({ length: 250 }, (_, i) => `test:many:${String(i).padStart(3, '0')}`)
      await m.db
        .insertInto('alerts_sent')
        .values(ids.map((id) => ({ id, kind: 'budget', subject: `user:${id}`, threshold: 1, period: 'total', status: 'pending' as const, attempts: 0, payload: JSON.stringify({ id, kind: 'budget' }), next_attempt_at: past, last_error: null, created_at: past, sent_at: null })))
        .execute()
      await m.monitor.tick()
      expect(receiver.received.length).toBe(250)
      expect(receiver.received.map((r) => r.alertId).sort()).toEqual(ids)
    } finally {
      await m.close()
      receiver.stop()
    }
  })

  test('a receiver that fails is not sent the other alerts due in that round: one call, each later round backing off further', async () => {
    let calls = 0
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async (req) => {
        calls++
        await req.text()
        return new Response('down', { status: 503 })
      },
    })
    const m = await standaloneMonitor(`http://127.0.0.1:${server.port}/hook`, { retryBaseMs: 60_000, retryMaxMs: 3_600_000 })
    try {
      const past = new Date(Date.now() - 1000).toISOString()
      const ids = Array.from({ length: 20 }, (_, i) => `test:down:${String(i).padStart(2, '0')}`)
      await m.db
        .insertInto('alerts_sent')
        .values(ids.map((id) => ({ id, kind: 'budget', subject: `user:${id}`, threshold: 1, period: 'total', status: 'pending' as const, attempts: 0, payload: JSON.stringify({ id }), next_attempt_at: past, last_error: null, created_at: past, sent_at: null })))
        .execute()
      await m.monitor.tick()
      expect(calls).toBe(1)
      const rows = await m.db.selectFrom('alerts_sent').select(['id', 'attempts', 'last_error']).orderBy('id').execute()
      expect(rows.filter((r) => r.attempts > 0).map((r) => [r.id, r.attempts, r.last_error])).toEqual([[ids[0]!, 1, 'HTTP 503']])
      // The others wait as long as the one tried (the receiver is down for them too): a check
      // before then sends nothing.
      await m.monitor.tick()
      expect(calls).toBe(1)
    } finally {
      await m.close()
      server.stop(true)
    }
  })

  test("a receiver's Retry-After (429, 503) is waited out before the next try, longer than the backoff", async () => {
    let calls = 0
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async (req) => {
        calls++
        await req.text()
        return new Response('slow down', { status: 429, headers: { 'retry-after': '600' } })
      },
    })
    const m = await standaloneMonitor(`http://127.0.0.1:${server.port}/hook`, { retryBaseMs: 50, retryMaxMs: 1000 })
    try {
      const past = new Date(Date.now() - 1000).toISOString()
      await m.db
        .insertInto('alerts_sent')
        .values({ id: 'test:slow', kind: 'budget', subject: 'user:usr_slow', threshold: 1, period: 'total', status: 'pending', attempts: 0, payload: '{"id":"test:slow"}', next_attempt_at: past, last_error: null, created_at: past, sent_at: null })
        .execute()
      await m.monitor.tick()
      const row = await m.db.selectFrom('alerts_sent').select(['next_attempt_at', 'last_error']).executeTakeFirstOrThrow()
      expect(Date.parse(row.next_attempt_at) - Date.now()).toBeGreaterThan(500_000)
      expect(row.last_error).toBe('HTTP 429 (Retry-After 600 s)')
      await Bun.sleep(200) // past the backoff (50 ms), not past the receiver's wait
      await m.monitor.tick()
      expect(calls).toBe(1)
    } finally {
      await m.close()
      server.stop(true)
    }
  })

  test('a receiver that fails first gets the same alert again, with backoff, until it accepts', async () => {
    const receiver = startReceiver(2)
    const gw = await boot(join(dir, 'retry.db'), receiver.url, { retry_base_ms: 100 })
    try {
      await userWithKey(gw, { expires_at: new Date(Date.now() + DAY).toISOString() })
      const started = Date.now()
      await waitFor(() => receiver.received.length === 1, 'delivery after two failures', 10_000)
      // Two failures: waits of about 100 and 200 ms (±20 %) before the third try.
      expect(Date.now() - started).toBeGreaterThanOrEqual(200)
      expect(receiver.calls()).toBe(3)
      // The bookkeeping follows the receiver's answer.
      let row = await gw.db.selectFrom('alerts_sent').selectAll().executeTakeFirstOrThrow()
      for (let i = 0; i < 100 && row.status !== 'sent'; i++) {
        await Bun.sleep(10)
        row = await gw.db.selectFrom('alerts_sent').selectAll().executeTakeFirstOrThrow()
      }
      expect([row.status, row.attempts, row.last_error]).toEqual(['sent', 3, null])
      const m = await scrape(gw.url)
      expect(sampleValue(m, 'sluice_alert_delivery_failures_total', { kind: 'key_expiring' })).toBe(2)
      expect(sampleValue(m, 'sluice_alerts_sent_total', { kind: 'key_expiring' })).toBe(1)
      await Bun.sleep(300)
      expect(receiver.calls()).toBe(3)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('a receiver that redirects: a 307 or 308 is followed with the POST; a 301, 302 or 303 (a GET without the alert) is a failed delivery saying where it points', async () => {
    const seen: Array<{ path: string; method: string; body: string }> = []
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        const path = new URL(req.url).pathname
        seen.push({ path, method: req.method, body: await req.text() })
        const status = Number(path.slice(1))
        if (status >= 300 && status < 400) return new Response(null, { status, headers: { location: '/final' } })
        return new Response(null, { status: 204 })
      },
    })
    try {
      for (const status of [301, 302, 303, 307, 308]) {
        seen.length = 0
        const m = await standaloneMonitor(`http://127.0.0.1:${server.port}/${status}`)
        try {
          const past = new Date(Date.now() - 1000).toISOString()
          const id = `test:redirect:${status}`
          await m.db
            .insertInto('alerts_sent')
            .values({ id, kind: 'budget', subject: 'user:usr_r', threshold: 1, period: 'total', status: 'pending', attempts: 0, payload: JSON.stringify({ id }), next_attempt_at: past, last_error: null, created_at: past, sent_at: null })
            .execute()
          await m.monitor.tick()
          const row = await m.db.selectFrom('alerts_sent').select(['status', 'last_error']).executeTakeFirstOrThrow()
          const final = seen.filter((s) => s.path === '/final')
          if (status === 307 || status === 308) {
            expect([status, row.status, final.length, final[0]?.method, final[0]?.body.includes(`test:redirect:${status}`)]).toEqual([status, 'sent', 1, 'POST', true])
          } else {
            expect([status, row.status, final.length]).toEqual([status, 'pending', 0])
            expect(row.last_error).toContain(`HTTP ${status} redirect to http://127.0.0.1:${server.port}`)
          }
        } finally {
          await m.close()
        }
      }
    } finally {
      server.stop(true)
    }
  })

  test('retention prunes alerts_sent of rows past it whose period is over, in batches; a total budget\'s, a current period\'s and a key still to expire stay', async () => {
    const receiver = startReceiver()
    // Batches of 2 rows: the oldest rows are ones that stay, so a batch may delete none of its rows.
    const alerts = { webhook_url: receiver.url, check_ms: 3_600_000, expiring_within_days: 365 }
    const gw = await startAuthGateway(upstream.url, {
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'logging', options: { retention_days: 30, retention_batch: 2, alerts } }] },
      env: { DATABASE_URL: `sqlite://${join(dir, 'alerts-prune.db')}` },
    })
    try {
      await insertPruneFixture(gw.db, Date.now())
      await loggingHooks(gw.gateway).prune()
      const left = (await gw.db.selectFrom('alerts_sent').select('id').execute()).map((r) => r.id).sort()
      expect(left).toEqual(PRUNE_KEPT)
    } finally {
      await gw.close()
      receiver.stop()
    }
  })

  test('a webhook_url that is not http(s) stops the boot, naming the option', async () => {
    await expect(boot(join(dir, 'bad.db'), 'ftp://example.com/x')).rejects.toThrow(/webhook_url/)
  })
})


/** The ids insertPruneFixture inserts that retention (30 days) keeps. */
const PRUNE_KEPT = ['keep_expiring_later', 'keep_recent_day', 'keep_recent_dead', 'keep_total', 'keep_total_reset', 'keep_unknown']

/** alerts_sent rows of every kind, some past a 30-day retention with their period over (ids `gone_…`), some not (`keep_…`). */
async function insertPruneFixture(db: Kysely<Database>, now: number): Promise<void> {
  const ago = (days: number) => new Date(now - days * DAY).toISOString()
  const dayLabel = (days: number) => `d${ago(days).slice(0, 10)}`
  const row = (id: string, kind: string, period: string, createdDaysAgo: number, status: 'pending' | 'sent' = 'sent') => ({
    id,
    kind,
    subject: `user:${id}`,
    threshold: 1,
    period,
    status,
    attempts: 1,
    payload: JSON.stringify({ id }),
    // Pending rows wait far ahead: this test is not about their delivery.
    next_attempt_at: new Date(now + 365 * DAY).toISOString(),
    last_error: null,
    created_at: ago(createdDaysAgo),
    sent_at: status === 'sent' ? ago(createdDaysAgo) : null,
  })
  await db
    .insertInto('alerts_sent')
    .values([
      row('keep_total', 'budget', 'total', 50),
      row('keep_total_reset', 'budget', `total+reset ${ago(45)}`, 45),
      row('keep_expiring_later', 'key_expiring', new Date(now + 5 * DAY).toISOString(), 45),
      row('keep_recent_day', 'budget', dayLabel(20), 20),
      row('keep_recent_dead', 'upstream_key_dead', dayLabel(3), 3),
      row('keep_unknown', 'something_else', dayLabel(44), 44),
      row('gone_day', 'budget', dayLabel(40), 40),
      row('gone_day_reset', 'budget', `${dayLabel(40)}+reset ${ago(40)}`, 40),
      row('gone_week', 'budget', `w${ago(42).slice(0, 10)}`, 42),
      row('gone_month', 'budget', `m${ago(70).slice(0, 7)}`, 70),
      row('gone_pending', 'budget', dayLabel(39), 39, 'pending'),
      row('gone_expired', 'key_expiring', ago(35), 40),
      row('gone_dead', 'upstream_key_dead', dayLabel(41), 41),
    ])
    .execute()}

/** A budget whose figure an operator changes within its period, on one database. */
function changedBudgetSuite(url: () => string) {
  test("a budget changed in its period alerts its thresholds again for the new figure: raised after its 100 % alert, the new 80 % and 100 % are told; a figure already alerted is not told again", async () => {
    const receiver = startReceiver()
    const m = await standaloneMonitor(receiver.url, {}, url())
    try {
      const now = new Date().toISOString()
      const setBudget = (tokens: number) => m.db.updateTable('users').set({ budget: JSON.stringify({ tokens, period: 'month' }) }).where('id', '=', 'usr_raised').execute()
      await m.db.insertInto('users').values({ id: 'usr_raised', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: now, updated_at: now }).execute()
      await setBudget(100)
      let n = 0
      const spend = (tokens: number) => m.db.insertInto('request_logs').values(logRow(`req_raised_${n++}`, new Date().toISOString(), { user_id: 'usr_raised', total_tokens: tokens })).execute()
      const seen = () => receiver.of('budget').map((a) => [a.threshold, (a.details.budget as { tokens: number }).tokens, (a.details.spent as { tokens: number }).tokens])
      await spend(100)
      await m.monitor.tick()
      expect(seen()).toEqual([
        [0.8, 100, 100],
        [1, 100, 100],
      ])
      // The operator raises the spent budget: half of it is spent now, then more.
      await setBudget(200)
      await m.monitor.tick()
      expect(seen().length).toBe(2)
      await spend(70)
      await m.monitor.tick()
      await spend(30)
      await m.monitor.tick()
      expect(seen()).toEqual([
        [0.8, 100, 100],
        [1, 100, 100],
        [0.8, 200, 170],
        [1, 200, 200],
      ])
      const ids = receiver.of('budget').map((a) => a.id)
      expect(new Set(ids).size).toBe(4)
      // Back to the first figure: its thresholds were told in this period already.
      await setBudget(100)
      await m.monitor.tick()
      await m.monitor.tick()
      expect(seen().length).toBe(4)
    } finally {
      await m.close()
      receiver.stop()
    }
  })
}

/**
 * Key lineages on one database, read a few per page: each lineage once, by its first key's id,
 * with the budget of its newest live key, spend summed over all its keys for the period.
 */
function lineageSuite(url: () => string) {
  test('budgets of key lineages: one alert per lineage and threshold, in grace or after, across pages', async () => {
    const receiver = startReceiver()
    const m = await standaloneMonitor(receiver.url, { budgetPageSize: 2 }, url())
    try {
      const now = Date.now()
      const at = (ms = 0) => new Date(now + ms).toISOString()
      await m.db.insertInto('users').values({ id: 'usr_lin', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at(), updated_at: at() }).execute()
      const total = JSON.stringify({ tokens: 100, period: 'total' })
      const key = (id: string, createdAt: string, over: Partial<ApiKeyInsert> = {}): ApiKeyInsert => ({
        id,
        hash: `hash_${id}`,
        start: 'sk-dev-abcde',
        end: id.slice(-4),
        environment: 'dev',
        user_id: 'usr_lin',
        budget: total,
        // Every column the rows set, in each row: a multi-row insert would write the others as NULL, not their default.
        status: 'active',
        revoked_at: null,
        rotated_from: null,
        rotated_to: null,
        grace_until: null,
        lineage_id: null,
        created_at: createdAt,
        updated_at: createdAt,
        ...over,
      })
      const rotated = (to: string, graceUntil: string, over: Partial<ApiKeyInsert> = {}): Partial<ApiKeyInsert> => ({ rotated_to: to, grace_until: graceUntil, ...over })
      const revoked = { status: 'revoked', revoked_at: at(-DAY) } satisfies Partial<ApiKeyInsert>
      // Ids chosen so that, in key-id order, current keys and the keys they replaced interleave.
      await m.db
        .insertInto('api_keys')
        .values([
          // In its grace period: the old key and its successor, both live; the successor is in use.
          key('key_l1_z', at(-2 * DAY), rotated('key_l1_a', at(DAY))),
          key('key_l1_a', at(-DAY), { rotated_from: 'key_l1_z', lineage_id: 'key_l1_z' }),
          // A key never rotated.
          key('key_l2', at(-DAY)),
          // Both keys gone: nothing to alert, whatever was spent.
          key('key_l3_a', at(-2 * DAY), rotated('key_l3_b', at(-DAY), revoked)),
          key('key_l3_b', at(-DAY), { rotated_from: 'key_l3_a', lineage_id: 'key_l3_a', ...revoked }),
          // Three keys, a daily budget on the one in use: yesterday's spend of the second is not today's.
          key('key_l4_c', at(-3 * DAY), rotated('key_l4_x', at(-2 * DAY), revoked)),
          key('key_l4_x', at(-2 * DAY), { rotated_from: 'key_l4_c', lineage_id: 'key_l4_c', rotated_to: 'key_l4_b', grace_until: at(-DAY) }),
          key('key_l4_b', at(-DAY), { rotated_from: 'key_l4_x', lineage_id: 'key_l4_c', budget: JSON.stringify({ tokens: 100, period: 'day' }) }),
          // Rotated within one clock tick, in its grace period: the chain's last key is the one in use.
          key('key_l5_m', at(-DAY), rotated('key_l5_d', at(DAY))),
          key('key_l5_d', at(-DAY), { rotated_from: 'key_l5_m', lineage_id: 'key_l5_m' }),
          // The key in use has no budget: its lineage has none, whatever the key in grace had.
          key('key_l6_a', at(-DAY), rotated('key_l6_b', at(DAY))),
          key('key_l6_b', at(), { rotated_from: 'key_l6_a', lineage_id: 'key_l6_a', budget: null }),
        ])
        .execute()
      // Logged now, but for the second key of lineage 4: a second before today's UTC midnight.
      const yesterday = new Date(Math.floor(now / DAY) * DAY - 1000).toISOString()
      const spent: Array<[string, number, string?]> = [
        ['key_l1_z', 50],
        ['key_l1_a', 40],
        ['key_l2', 85],
        ['key_l3_a', 100],
        ['key_l3_b', 100],
        ['key_l4_c', 50],
        ['key_l4_x', 40, yesterday],
        ['key_l4_b', 35],
        ['key_l5_m', 70],
        ['key_l5_d', 10],
        ['key_l6_a', 95],
      ]
      await m.db
        .insertInto('request_logs')
        .values(spent.map(([keyId, tokens, when], i) => logRow(`req_lin_${i}`, when ?? at(), { key_id: keyId, user_id: 'usr_lin', total_tokens: tokens })))
        .execute()
      await m.monitor.tick()
      await waitFor(() => receiver.received.length >= 4, 'an alert per lineage past 80 %')
      await m.monitor.tick()
      await Bun.sleep(100)
      const alerts = receiver.of('budget').map((a) => [a.subject.id, a.threshold, a.details.key_id, (a.details.spent as { tokens: number }).tokens, a.details.lineage_keys])
      expect(alerts.sort()).toEqual(
        [
          ['key_l1_z', 0.8, 'key_l1_a', 90, 2],
          ['key_l2', 0.8, 'key_l2', 85, 1],
          ['key_l4_c', 0.8, 'key_l4_b', 85, 3],
          ['key_l5_m', 0.8, 'key_l5_d', 80, 2],
        ].sort(),
      )
      const single = receiver.of('budget').find((a) => a.subject.id === 'key_l2')!
      expect(single.message).toBe('The total budget of key key_l2 is 80% spent (85 of 100 tokens).')
    } finally {
      await m.close()
      receiver.stop()
    }
  })
}

/** The expiring-keys check's pages (a row value past the last row of the page before) on one dialect. */
function expiringPagesSuite(url: () => string): void {
  test('expiring keys: every key in the window is alerted once, past the first page, ties in expires_at paged by id', async () => {
    const receiver = startReceiver()
    const m = await standaloneMonitor(receiver.url, { expiringWithinDays: 7, expiringPageSize: 3 }, url())
    try {
      const now = new Date().toISOString()
      await m.db.insertInto('users').values({ id: 'usr_exp', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: now, updated_at: now }).execute()
      const soon = new Date(Date.now() + 2 * DAY).toISOString()
      const later = new Date(Date.now() + 5 * DAY).toISOString()
      // Five keys share one expiry, so the page boundaries (after 3 and 6) fall inside a tie and
      // between instants; ids are inserted out of order. One key outside the window, one rotated.
      const inWindow: Array<[string, string]> = [
        ['key_exp_e', soon],
        ['key_exp_b', soon],
        ['key_exp_d', soon],
        ['key_exp_a', soon],
        ['key_exp_c', soon],
        ['key_exp_g', later],
        ['key_exp_f', later],
      ]
      const key = (id: string, expiresAt: string, over: { grace_until?: string } = {}) => ({
        id,
        hash: `hash_${id}`,
        start: 'sk-dev-abcde',
        end: id.slice(-4),
        environment: 'dev',
        user_id: 'usr_exp',
        expires_at: expiresAt,
        created_at: now,
        updated_at: now,
        ...over,
      })
      await m.db
        .insertInto('api_keys')
        .values([
          ...inWindow.map(([id, at]) => key(id, at)),
          key('key_exp_far', new Date(Date.now() + 20 * DAY).toISOString()),
          key('key_exp_rotated', soon, { grace_until: soon }),
        ])
        .execute()
      await m.monitor.tick()
      await waitFor(() => receiver.received.length >= inWindow.length, 'an alert for every expiring key')
      await m.monitor.tick()
      const alerted = receiver.of('key_expiring').map((a) => a.subject.id)
      expect(alerted.sort()).toEqual(inWindow.map(([id]) => id).sort())
    } finally {
      await m.close()
      receiver.stop()
    }
  })
}

describe('expiring keys paged on SQLite', () => expiringPagesSuite(() => 'sqlite::memory:'))

describe.skipIf(postgresUrl === null)('expiring keys paged on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_expiring_pages')
  })
  afterAll(() => pg.drop())
  expiringPagesSuite(() => pg.url)
})

describe('budget alerts per key lineage on SQLite', () => lineageSuite(() => 'sqlite::memory:'))
describe('budget sums over a long period on SQLite', () => longPeriodSuite(() => 'sqlite::memory:'))

describe.skipIf(postgresUrl === null)('budget sums over a long period on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_long_period')
  })
  afterAll(() => pg.drop())
  longPeriodSuite(() => pg.url)
})
describe('a changed budget on SQLite', () => changedBudgetSuite(() => 'sqlite::memory:'))

describe.skipIf(postgresUrl === null)('a changed budget on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_changed_budget')
  })
  afterAll(() => pg.drop())
  changedBudgetSuite(() => pg.url)
})

describe.skipIf(postgresUrl === null)('two instances on one Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_two')
  })
  afterAll(() => pg.drop())
  test('deliver each alert once, however their rounds interleave', async () => {
    const receiver = startReceiver()
    const a = await standaloneMonitor(receiver.url, {}, pg.url)
    const b = await standaloneMonitor(receiver.url, {}, pg.url)
    try {
      const past = new Date(Date.now() - 1000).toISOString()
      const ids = Array.from({ length: 120 }, (_, i) => `test:two:${String(i).padStart(3, '0')}`)
      await a.db
        .insertInto('alerts_sent')
        .values(ids.map((id) => ({ id, kind: 'budget', subject: `user:${id}`, threshold: 1, period: 'total', status: 'pending' as const, attempts: 0, payload: JSON.stringify({ id }), next_attempt_at: past, last_error: null, created_at: past, sent_at: null })))
        .execute()
      await Promise.all([a.monitor.tick(), b.monitor.tick(), a.monitor.tick(), b.monitor.tick()])
      expect(receiver.received.map((r) => r.alertId).sort()).toEqual(ids)
    } finally {
      await Promise.all([a.close(), b.close()])
      receiver.stop()
    }
  })
})

describe.skipIf(postgresUrl === null)('alerts_sent pruned on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_prune')
  })
  afterAll(() => pg.drop())
  test('rows past the retention whose period is over go, in batches; the others stay', async () => {
    const handle = await createDatabase(pg.url)
    try {
      await migrateToLatest(handle.db)
      const now = Date.now()
      await insertPruneFixture(handle.db, now)
      expect(await pruneAlerts(handle.db, new Date(now - 30 * DAY).toISOString(), now, 2)).toBe(7)
      expect((await handle.db.selectFrom('alerts_sent').select('id').execute()).map((r) => r.id).sort()).toEqual(PRUNE_KEPT)
    } finally {
      await handle.close()
    }
  })
})

describe.skipIf(postgresUrl === null)('budget alerts per key lineage on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'alerts_lineage')
  })
  afterAll(() => pg.drop())
  lineageSuite(() => pg.url)
})

/**
 * A month's budget over thousands of log rows: the hours that are over are summed once, a check
 * sums only from there, and every alert still fires at the spend the whole log holds. A row
 * logged more than the lag after its time is counted once a sum is made afresh, or at once when
 * this instance still has older rows to write.
 */
function longPeriodSuite(url: () => string): void {
  test('a monthly budget alerts at the exact spend across a period of many rows, summing only the open hours at each check', async () => {
    const receiver = startReceiver()
    const HOUR = 3_600_000
    const start = Date.UTC(2026, 5, 1)
    let clock = Date.UTC(2026, 5, 20, 12, 0)
    let pending: string | null = null
    const m = await standaloneMonitor(receiver.url, { budgetThresholds: [0.5, 0.8, 0.9, 1] }, url(), { now: () => clock, pendingSince: () => pending })
    const iso = (ms: number) => new Date(ms).toISOString()
    let n = 0
    const log = async (at: number, tokens: number, usd: number) =>
      m.db.insertInto('request_logs').values(logRow(`req_long_${n++}`, iso(at), { user_id: 'usr_month', team_id: 'team_month', total_tokens: tokens, cost_usd: usd })).execute()
    /** What the whole log holds for the user this month: what the alerts must say. */
    const logged = async () => {
      const r = await m.db.selectFrom('request_logs').select((eb) => [eb.fn.sum<number>('total_tokens').as('t')]).where('user_id', '=', 'usr_month').where('at', '>=', iso(start)).executeTakeFirstOrThrow()
      return Number(r.t)
    }
    const alerts = (subject: string) => receiver.of('budget').filter((a) => a.subject.id === subject)
    const spent = (a: AlertPayload) => a.details.spent
    const check = async () => {
      const before = receiver.received.length
      await m.monitor.tick()
      await m.monitor.tick()
      return receiver.received.slice(before).map((r) => r.body)
    }
    try {
      const at = iso(start)
      await m.db.insertInto('users').values({ id: 'usr_month', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: JSON.stringify({ tokens: 100_000, period: 'month' }), metadata: null, created_at: at, updated_at: at }).execute()
      await m.db.insertInto('teams').values({ id: 'team_month', name: 'Month', deleted_at: null, limits: null, budget: JSON.stringify({ usd: 1000 / 1024, period: 'month' }), metadata: null, created_at: at, updated_at: at }).execute()
      // 2400 rows from the month's start to ten minutes ago, 25 tokens and $1/4096 each: 60 % of both
      // budgets. Costs in binary fractions, which doubles add without a rounding error on either database.
      const rows = Array.from({ length: 2400 }, (_, i) => logRow(`req_long_base_${i}`, iso(start + Math.floor((i * (clock - 600_000 - start)) / 2399)), { user_id: 'usr_month', team_id: 'team_month', total_tokens: 25, cost_usd: 1 / 4096 }))
      for (let i = 0; i < rows.length; i += 200) await m.db.insertInto('request_logs').values(rows.slice(i, i + 200)).execute()

      let told = await check()
      expect(told.map((a) => [a.subject.id, a.threshold, spent(a)])).toEqual([
        ['usr_month', 0.5, { tokens: 60_000, usd: 0.5859375 }],
        ['team_month', 0.5, { tokens: 60_000, usd: 0.5859375 }],
      ])

      // Hour by hour, spend comes in; the hours behind the check close and are remembered. The
      // 80 % alert comes at the check where the log first holds 80 000 tokens, and says so.
      for (const [tokens, usd] of [[10_000, 100 / 1024], [9990, 99 / 1024]] as const) {
        clock += HOUR
        await log(clock - 60_000, tokens, usd)
        expect(await check()).toEqual([])
      }
      clock += HOUR
      await log(clock - 60_000, 10, 1 / 1024)
      told = await check()
      expect(await logged()).toBe(80_000)
      expect(told.map((a) => [a.subject.id, a.threshold, spent(a)])).toEqual([
        ['usr_month', 0.8, { tokens: 80_000, usd: 0.78125 }],
        ['team_month', 0.8, { tokens: 80_000, usd: 0.78125 }],
      ])

      // A row logged ten days after its time (another instance's outage) lands in an hour already
      // summed: not counted until the sums are made afresh, six hours after they were first made.
      await log(Date.UTC(2026, 5, 10), 16_000, 0)
      clock += HOUR
      await log(clock - 60_000, 4000, 0)
      expect(await logged()).toBe(100_000)
      expect(await check()).toEqual([])
      clock += 4 * HOUR
      told = await check()
      expect(told.map((a) => [a.subject.id, a.threshold, spent(a)])).toEqual([
        ['usr_month', 0.9, { tokens: 100_000, usd: 0.78125 }],
        ['usr_month', 1, { tokens: 100_000, usd: 0.78125 }],
      ])
      // When this instance itself still has an older row to write, the hours since it are not
      // over for the log: they are summed again, and a row of them logged late is counted at once.
      await log(Date.UTC(2026, 5, 12), 0, 100 / 1024)
      clock += 60_000
      expect(await check()).toEqual([])
      pending = iso(Date.UTC(2026, 5, 12, 6))
      told = await check()
      expect(told.map((a) => [a.subject.id, a.threshold, spent(a)])).toEqual([['team_month', 0.9, { tokens: 100_000, usd: 900 / 1024 }]])
    } finally {
      await m.close()
      receiver.stop()
    }
  })
}
