/**
 * A listening gateway with the balance plugin in front of a keyed upstream
 * (test/fixtures/keyed-upstream.ts): one provider account per `providers` entry, each key a
 * distinct secret the upstream tells apart. For plugins/balance/*.test.ts and
 * test/balance.*.test.ts. Also an upstream whose answers are set per model name
 * ({@link startModelUpstream}), for what a key learns about one of its models only.
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'bun:test'
import type { ConfigFile } from '../../src/config/schema.ts'
import { mockChatCompletion, mockErrorBody } from '../../src/providers/mock/generate.ts'
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

/** A key's circuit for one upstream model, or the key's worst of them. */
export interface CircuitView {
  consecutive_failures: number
  /** null while closed or half-open. */
  open_until: string | null
}

/** One row of `GET /admin/providers/health`. */
export interface HealthRow {
  provider: string
  key: string
  /** `open`, `half_open` and `cooling` while so for any of the key's models (the worst of them). */
  state: 'healthy' | 'cooling' | 'half_open' | 'dead' | 'open'
  cooling_until: string | null
  cooling_models: { model: string; until: string }[]
  dead_reason: string | null
  /** The worst of `circuit_models`: the most failures in a row, the latest open circuit. */
  circuit: CircuitView
  /** Each model with failures in a row or an open circuit on the key. */
  circuit_models: (CircuitView & { model: string })[]
  in_flight: number
  latency_ewma_ms: number | null
  headroom: number | null
  headroom_models: { model: string; headroom: number; until: string }[]
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

/** An upstream answering per model: an error or a delay set for the model, or a completion. */
export interface ModelUpstream {
  url: string
  /** Make `model` answer with this error (`null`: answer normally again). */
  fail(model: string, failure: { status: number; headers?: Record<string, string> } | null): void
  /** Make `model` wait this long before answering (0: at once). */
  delay(model: string, ms: number): void
  /** Headers on `model`'s successful answers to the key `secret`. */
  headers(model: string, secret: string, headers: Record<string, string>): void
  /** Requests that reached `model` with the key `secret`. */
  requestsBy(model: string, secret: string): number
  /** Requests that reached `model`, failed ones included. */
  requests(model: string): number
  reset(): void
  stop(): Promise<void>
}

/** Starts an OpenAI-compatible `POST /v1/chat/completions` on a free port of 127.0.0.1 that tells models apart. */
export async function startModelUpstream(): Promise<ModelUpstream> {
  const failures = new Map<string, { status: number; headers?: Record<string, string> }>()
  const delays = new Map<string, number>()
  const counts = new Map<string, number>()
  const extra = new Map<string, Record<string, string>>()
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    routes: {
      '/v1/chat/completions': {
        POST: async (req) => {
          const body = (await req.json()) as Record<string, unknown>
          const model = String(body.model)
          const secret = (req.headers.get('authorization') ?? '').replace(/^Bearer /, '')
          counts.set(model, (counts.get(model) ?? 0) + 1)
          counts.set(`${model} ${secret}`, (counts.get(`${model} ${secret}`) ?? 0) + 1)
          const wait = delays.get(model)
          if (wait) await Bun.sleep(wait)
          const f = failures.get(model)
          if (f) return Response.json(mockErrorBody(f.status), { status: f.status, headers: f.headers })
          return Response.json(mockChatCompletion(body), { headers: extra.get(`${model} ${secret}`) })
        },
      },
    },
    fetch: () => Response.json(mockErrorBody(404), { status: 404 }),
  })
  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    fail: (model, failure) => void (failure ? failures.set(model, failure) : failures.delete(model)),
    delay: (model, ms) => void (ms > 0 ? delays.set(model, ms) : delays.delete(model)),
    headers: (model, secret, headers) => void extra.set(`${model} ${secret}`, headers),
    requests: (model) => counts.get(model) ?? 0,
    requestsBy: (model, secret) => counts.get(`${model} ${secret}`) ?? 0,
    reset() {
      failures.clear()
      delays.clear()
      counts.clear()
      extra.clear()
    },
    stop: () => server.stop(true),
  }
}

/**
 * The hooks of a file of gateway tests over one upstream: it starts once for the file and is reset
 * before each test; the gateways a test hands to `closeAfter` are closed after that test.
 */
export function upstreamForFile<U extends { stop(): Promise<void>; reset(): void }>(start: () => Promise<U>) {
  let up: U | undefined
  const gateways: { close(): Promise<void> }[] = []
  beforeAll(async () => {
    up = await start()
  })
  afterAll(async () => {
    await up?.stop()
  })
  beforeEach(() => up!.reset())
  afterEach(async () => {
    for (const gateway of gateways.splice(0)) await gateway.close()
  })
  return {
    /** The file's upstream (started before the first test). */
    get up(): U {
      return up!
    },
    /** `started`, closed after this test. */
    closeAfter<G extends { close(): Promise<void> }>(started: G): G {
      gateways.push(started)
      return started
    },
  }
}
