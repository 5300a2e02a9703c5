/**
 * A listening gateway with the balance plugin in front of a keyed upstream
 * (test/fixtures/keyed-upstream.ts): one provider account per `providers` entry, each key a
 * distinct secret the upstream tells apart. For plugins/balance/balance.test.ts and
 * test/balance.shared.test.ts.
 */
import type { ConfigFile } from '../../src/config/schema.ts'
import { startGateway, type TestGateway } from './gateway.ts'

export const BALANCE_ADMIN_KEY = 'sluice-balance-test-admin-0123456789abcdef'

/** The upstream secret of a key id: distinct per key, long enough to be scrubbed from messages. */
export const secretOf = (keyId: string): string => `sk-upstream-${keyId}-0123456789abcdef`

/** One provider key as the test describes it. */
export interface TestKey {
  id: string
  weight?: number
  rpm?: number
}

export interface BalanceSetup {
  /** Provider id → its keys; every provider points at `upstreamUrl`. */
  providers: Record<string, readonly (string | TestKey)[]>
  /** Model groups; default: one model `m` over every provider, in order. */
  models?: ConfigFile['models']
  /** Providers as they are, beside the generated ones (e.g. one at another server). */
  extraProviders?: NonNullable<ConfigFile['providers']>
  /** Options of the balance plugin. */
  options?: Record<string, unknown>
  env?: Record<string, string | undefined>
}

/** One row of `GET /admin/providers/health`. */
export interface HealthRow {
  provider: string
  key: string
  state: 'healthy' | 'cooling' | 'dead' | 'open'
  cooling_until: string | null
  dead_reason: string | null
  circuit: { consecutive_failures: number; open_until: string | null }
  in_flight: number
  latency_ewma_ms: number | null
  headroom: number | null
  last_error: { at: string; status: number; message: string } | null
}

export interface BalanceGateway extends TestGateway {
  /** POST /v1/chat/completions for `model` (default `m`). */
  chat(body?: Record<string, unknown>, init?: { signal?: AbortSignal }): Promise<Response>
  /** Every key's health row. */
  health(): Promise<HealthRow[]>
  /** One key's health row. */
  key(keyId: string, provider?: string): Promise<HealthRow>
  /** An admin call. */
  admin(method: string, path: string): Promise<Response>
}

/** Boots the gateway; close it with `close()`. */
export async function startBalanceGateway(upstreamUrl: string, setup: BalanceSetup): Promise<BalanceGateway> {
  const providers = Object.entries(setup.providers).map(([id, keys]) => ({
    id,
    type: 'openai-compatible' as const,
    baseUrl: upstreamUrl,
    keys: keys.map((k) => {
      const key = typeof k === 'string' ? { id: k } : k
      return { ...key, secret: secretOf(key.id) }
    }),
  }))
  const models = setup.models ?? [{ name: 'm', targets: providers.map((p) => ({ provider: p.id, model: 'mock-gpt' })) }]
  const tg = await startGateway(
    { providers: [...providers, ...(setup.extraProviders ?? [])], models, plugins: [{ use: 'balance', options: setup.options ?? {} }] },
    { env: { SLUICE_ADMIN_KEY: BALANCE_ADMIN_KEY, ...setup.env } },
  )
  const admin = (method: string, path: string) => fetch(tg.url + path, { method, headers: { authorization: `Bearer ${BALANCE_ADMIN_KEY}` } })
  const health = async (): Promise<HealthRow[]> => {
    const res = await admin('GET', '/admin/providers/health')
    if (res.status !== 200) throw new Error(`GET /admin/providers/health → ${res.status}: ${await res.text()}`)
    return ((await res.json()) as { data: HealthRow[] }).data
  }
  return {
    ...tg,
    chat: (body = {}, init = {}) =>
      fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }], ...body }),
        signal: init.signal,
      }),
    health,
    async key(keyId, provider) {
      const row = (await health()).find((r) => r.key === keyId && (provider === undefined || r.provider === provider))
      if (!row) throw new Error(`no health row for key ${keyId}`)
      return row
    },
    admin,
  }
}
