/**
 * Webhook alerts from the logging plugin, received by a real local HTTP server: an expiring
 * key (once, and not again after a restart), budgets passing 80 % and 100 %, an upstream key
 * the provider keeps refusing, and delivery retried until a failing receiver accepts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, uid, type AuthGateway } from './support/auth.ts'
import { postJson, waitFor } from './support/http.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import type { AlertPayload } from '../plugins/logging/alerts.ts'

const DAY = 86_400_000
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

function boot(file: string, webhookUrl: string, alerts: Record<string, unknown> = {}, models?: unknown[]): Promise<AuthGateway> {
  return startAuthGateway(upstream.url, {
    config: {
      ...(models ? { models: models as never } : {}),
      plugins: [
        { use: 'auth', options: { demo_key: false } },
        { use: 'logging', options: { flush_ms: 10, alerts: { webhook_url: webhookUrl, check_ms: 100, retry_base_ms: 50, ...alerts } } },
      ],
    },
    env: { DATABASE_URL: `sqlite://${file}` },
  })
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
      const revoked = await userWithKey(gw, { expires_at: new Date(Date.now() + 2 * DAY).toISOString() })
      await gw.adminOk('POST', `/admin/keys/${revoked.key.id}/revoke`)
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

  test('a webhook_url that is not http(s) stops the boot, naming the option', async () => {
    await expect(boot(join(dir, 'bad.db'), 'ftp://example.com/x')).rejects.toThrow(/webhook_url/)
  })
})
