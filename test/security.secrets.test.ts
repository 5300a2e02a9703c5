/**
 * No secret leaks into what an operator can read: the real gateway process (auth + logging at
 * LOG_LEVEL=debug, bodies logged redacted, alerts on) serves good keys, wrong keys, revoked and
 * rotated keys, a key pasted into a prompt, wrong admin keys, and upstream 401 answers that
 * echo the provider secret. Afterwards its captured stdout and stderr, every row of every
 * table of its database, /metrics, the analytics routes and the alerts a receiver got are
 * searched for every gateway key (whole, and the secret middle that is never displayed),
 * every key sent, the admin key, the encryption key and every provider secret.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { closedPort, postJson } from './support/http.ts'

const MAIN = resolve(import.meta.dir, '../src/main.ts')
const ADMIN = `sluice-admin-${'S3cr3tAdm1n'.repeat(4)}`
const WRONG_ADMIN = `sluice-admin-${'N0tTheAdm1n'.repeat(4)}`
const GOOD_PROVIDER_SECRET = 'sk-provider-GOOD-0123456789abcdefghijklmnopqrstuv'
const BAD_PROVIDER_SECRET = 'sk-provider-REVOKED-zyxwvutsrqponmlkjihgfedcba98'
const ENCRYPTION_KEY = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64')
const randomKey = (env: string) => `sk-${env}-${Buffer.from(crypto.getRandomValues(new Uint8Array(30))).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 36)}`

let upstream: MockUpstream
let dir: string
let proc: Subprocess<'ignore', 'pipe', 'pipe'> | undefined
let receiver: ReturnType<typeof Bun.serve> | undefined
const alertsReceived: string[] = []

beforeAll(async () => {
  upstream = await startMockUpstream({ apiKeys: [GOOD_PROVIDER_SECRET] })
  dir = mkdtempSync(join(tmpdir(), 'sluice-secrets-'))
  receiver = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      alertsReceived.push(await req.text())
      return new Response(null, { status: 204 })
    },
  })
})
afterAll(async () => {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL')
  await upstream.stop()
  await receiver?.stop(true)
  rmSync(dir, { recursive: true, force: true })
})

test('no gateway key, admin key, encryption key or provider secret in logs, tables, metrics, analytics or alerts', async () => {
  const file = join(dir, 'sluice.db')
  const configPath = join(dir, 'sluice.config.json')
  writeFileSync(
    configPath,
    JSON.stringify({
      environment: 'dev',
      providers: [
        { id: 'up', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 'k-good', secret: '${GOOD_SECRET}' }] },
        { id: 'old', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 'k-bad', secret: '${BAD_SECRET}' }] },
      ],
      models: [
        { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: { input: 1, output: 2 } },
        { name: 'old-gpt', targets: [{ provider: 'old', model: 'mock-gpt' }] },
      ],
      plugins: [
        { use: 'auth', options: { demo_key: false } },
        { use: 'logging', options: { flush_ms: 10, log_bodies: 'redacted', alerts: { webhook_url: `http://127.0.0.1:${receiver!.port}/alerts`, check_ms: 100, dead_key_failures: 2 } } },
      ],
    }),
  )
  const port = await closedPort()
  proc = Bun.spawn(['bun', 'run', MAIN], {
    cwd: dir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite://${file}`,
      SLUICE_CONFIG: configPath,
      SLUICE_ADMIN_KEY: ADMIN,
      SLUICE_ENCRYPTION_KEY: ENCRYPTION_KEY,
      GOOD_SECRET: GOOD_PROVIDER_SECRET,
      BAD_SECRET: BAD_PROVIDER_SECRET,
      LOG_LEVEL: 'debug',
    },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const child = proc
  const stdout = new Response(child.stdout).text()
  const stderr = new Response(child.stderr).text()
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  while (!(await fetch(`${base}/health`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}: ${await stderr}`)
    if (Date.now() > deadline) throw new Error('the gateway did not start')
    await Bun.sleep(50)
  }

  const admin = async (method: string, path: string, body?: unknown, key = ADMIN) => {
    const res = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: res.status, text: await res.text() }
  }
  const created = async (path: string, body: unknown) => {
    const r = await admin('POST', path, body)
    if (r.status >= 300) throw new Error(`${path}: ${r.status} ${r.text}`)
    return JSON.parse(r.text) as { id: string; key: string }
  }

  // Keys: good, expiring soon (for an alert), revoked, rotated (old and new plaintext).
  await created('/admin/users', { id: 'usr_sec' })
  await created('/admin/teams', { id: 'team_sec', name: 'Sec' })
  await created('/admin/teams/team_sec/members', { user_id: 'usr_sec' })
  const good = await created('/admin/keys', { user_id: 'usr_sec', team_id: 'team_sec', budget: { tokens: 50, period: 'day' } })
  const expiring = await created('/admin/keys', { user_id: 'usr_sec', expires_at: new Date(Date.now() + 86_400_000).toISOString() })
  const revoked = await created('/admin/keys', { user_id: 'usr_sec' })
  await admin('POST', `/admin/keys/${revoked.id}/revoke`, { reason: 'test' })
  const toRotate = await created('/admin/keys', { user_id: 'usr_sec' })
  const rotated = await created(`/admin/keys/${toRotate.id}/rotate`, { grace_seconds: 0 })
  const gatewayKeys = [good.key, expiring.key, revoked.key, toRotate.key, rotated.key]
  const wrongKeys = [randomKey('dev'), randomKey('prod'), 'not-a-key-at-all-but-secret-0123456789', `${good.key.slice(0, -3)}xyz`]

  const chat = (key: string | null, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
    postJson(`${base}/v1/chat/completions`, { model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }], max_tokens: 3, ...extra }, key === null ? headers : { authorization: `Bearer ${key}`, ...headers }).then((r) => r.text())

  for (let i = 0; i < 3; i++) await chat(good.key)
  await chat(good.key, { stream: true })
  await chat(expiring.key)
  // A key pasted into a prompt: logged only as a length.
  await chat(good.key, { messages: [{ role: 'user', content: `please remember ${rotated.key} and ${GOOD_PROVIDER_SECRET}` }] })
  await postJson(`${base}/v1/chat/completions`, { model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }, { 'x-api-key': good.key }).then((r) => r.text())
  for (const k of [...wrongKeys, revoked.key, toRotate.key]) await chat(k)
  await chat(null)
  await fetch(`${base}/v1/key`, { headers: { authorization: `Bearer ${wrongKeys[0]}` } }).then((r) => r.text())
  await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${good.key}` } }).then((r) => r.text())
  // The upstream refuses the old provider's key, echoing it in its error message.
  upstream.setFailure({ status: 401, times: 2, body: { error: { message: `Incorrect API key provided: ${BAD_PROVIDER_SECRET}`, type: 'invalid_request_error', code: 'invalid_api_key' } } })
  await chat(good.key, { model: 'old-gpt' })
  await chat(good.key, { model: 'old-gpt' })
  for (let i = 0; i < 2; i++) await chat(good.key, { model: 'old-gpt' })
  // Wrong admin keys.
  await admin('GET', '/admin/keys', undefined, WRONG_ADMIN)
  await admin('GET', '/admin/usage', undefined, good.key)

  const metrics = await (await fetch(`${base}/metrics`)).text()
  const analytics = [
    (await admin('GET', '/admin/usage?group_by=key')).text,
    (await admin('GET', '/admin/usage?group_by=provider_key')).text,
    (await admin('GET', '/admin/logs?limit=1000')).text,
    (await admin('GET', `/admin/keys/${good.id}`)).text,
  ]
  // Alerts (expiring key, budget, dead provider key) have gone out.
  const alertDeadline = Date.now() + 5000
  while (alertsReceived.length < 3 && Date.now() < alertDeadline) await Bun.sleep(50)
  expect(alertsReceived.length).toBeGreaterThanOrEqual(3)

  child.kill('SIGTERM')
  expect(await child.exited).toBe(0)
  const logs = (await stdout) + (await stderr)

  // Every table, every row, as text.
  const sqlite = new Database(file, { readonly: true })
  const tables = sqlite.query<{ name: string }, []>("select name from sqlite_master where type = 'table'").all().map((t) => t.name)
  const dump = tables.map((t) => `${t}: ${JSON.stringify(sqlite.query(`select * from "${t}"`).all())}`).join('\n')
  sqlite.close()
  expect(tables).toEqual(expect.arrayContaining(['request_logs', 'api_keys', 'audit_log', 'alerts_sent', 'settings']))

  // Something was written and logged, so the absence of secrets means something.
  expect(dump).toContain(good.id)
  expect(logs).toContain('"msg":"request"')
  expect(logs).toContain(good.id)
  expect(metrics).toContain('sluice_requests_total')

  const places: Record<string, string> = { logs, database: dump, metrics, analytics: analytics.join('\n'), alerts: alertsReceived.join('\n') }
  const secrets: Record<string, string> = {
    'admin key': ADMIN,
    'wrong admin key': WRONG_ADMIN,
    'encryption key': ENCRYPTION_KEY,
    'provider secret': GOOD_PROVIDER_SECRET,
    'refused provider secret': BAD_PROVIDER_SECRET,
  }
  gatewayKeys.forEach((k, i) => {
    secrets[`gateway key ${i}`] = k
    // The part never displayed: what remains after the first 12 and last 4 characters.
    secrets[`secret part of gateway key ${i}`] = k.slice(12, -4)
  })
  wrongKeys.forEach((k, i) => (secrets[`wrong key ${i}`] = k))
  const leaks: string[] = []
  for (const [where, text] of Object.entries(places)) for (const [what, secret] of Object.entries(secrets)) if (text.includes(secret)) leaks.push(`${what} in ${where}`)
  expect(leaks).toEqual([])
}, 60_000)
