/**
 * Helpers for the quota tests (test/quota.*.test.ts): a gateway with `auth` and `quota` in
 * front of mock upstreams, an admin client to make users, teams and keys with limits, and
 * assertions on the quota errors and rate-limit headers.
 */
import { expect } from 'bun:test'
import type { ConfigFile } from '../../src/config/schema.ts'
import type { GatewayOptions } from '../../src/server.ts'
import { startGateway, type TestGateway } from './gateway.ts'
import { REQUEST_ID } from './http.ts'

export const QUOTA_ADMIN_KEY = 'sluice-quota-tests-admin-key-0123456789abcdef'

/** Status and type of the quota codes, copied from DESIGN.md's table (not from src/errors.ts). */
export const QUOTA_ERRORS = {
  rate_limit_exceeded: [429, 'rate_limit_error'],
  insufficient_quota: [429, 'rate_limit_error'],
  quota_backend_unavailable: [503, 'api_error'],
} as const
export type QuotaErrorCode = keyof typeof QUOTA_ERRORS

/** Pricing of `mock-gpt` in the test config: USD per million tokens. */
export const PRICING = { input: 1000, output: 2000 } as const
/** USD per million tokens of `cheap-gpt`. */
export const CHEAP_PRICING = { input: 0.04, output: 0.04 } as const

/**
 * The test config: `mock-gpt` (priced) and `mock-slow-<ms>` (the mock waits before answering)
 * on `upstreamUrl`; `stream-gpt` on `streamUpstreamUrl` when given (a mock with slow chunks).
 */
export function quotaConfig(
  upstreamUrl: string,
  options: { streamUpstreamUrl?: string; quota?: Record<string, unknown>; slowMs?: number } = {},
): ConfigFile & { plugins?: unknown[] } {
  const slow = `mock-slow-${options.slowMs ?? 500}`
  return {
    environment: 'dev',
    providers: [
      { id: 'up', type: 'openai-compatible', baseUrl: upstreamUrl, keys: [{ id: 'k1', secret: 'sk-upstream-quota-tests-0123456789' }] },
      ...(options.streamUpstreamUrl
        ? [{ id: 'streamer', type: 'openai-compatible' as const, baseUrl: options.streamUpstreamUrl, keys: [{ id: 'k2', secret: 'sk-upstream-quota-tests-stream-0123' }] }]
        : []),
    ],
    models: [
      { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: PRICING },
      // A request of a few tokens costs well under a micro-dollar.
      { name: 'cheap-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: CHEAP_PRICING },
      { name: slow, targets: [{ provider: 'up', model: slow }] },
      ...(options.streamUpstreamUrl ? [{ name: 'stream-gpt', targets: [{ provider: 'streamer', model: 'mock-gpt' }] }] : []),
    ],
    plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'quota', options: options.quota ?? {} }],
  }
}

export interface QuotaGateway extends TestGateway {
  admin(method: string, path: string, body?: unknown): Promise<Response>
  adminOk<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>
  /** POST /v1/chat/completions with `key`; the body defaults to one short user message to mock-gpt. */
  chat(key: string, body?: Record<string, unknown>, init?: { headers?: Record<string, string>; signal?: AbortSignal }): Promise<Response>
  /** GET /v1/key with `key`, as JSON. */
  keyInfo(key: string): Promise<KeyInfo>
}

export interface KeyInfo {
  id: string
  user_id: string
  team_id: string | null
  limits: unknown
  budget: unknown
  remaining: { requests: number | null; tokens: number | null; budget_tokens: number | null; budget_usd: number | null }
  /** Each level's own limits and budget (the quota plugin's view of a key, user or team). */
  quota?: { key: Record<string, unknown> | null; user: Record<string, unknown> | null; team: Record<string, unknown> | null }
}

/** The two quota stores a suite runs against: in process, and Redis when the tests have one. */
export function quotaBackends(redisUrl: string | null): { name: string; redis: string | null; available: boolean }[] {
  return [
    { name: 'in process', redis: null, available: true },
    { name: 'Redis', redis: redisUrl, available: redisUrl !== null },
  ]
}

/** Boot a listening gateway with auth and quota; `redisUrl` null keeps the quota in process. */
export async function startQuotaGateway(
  config: ConfigFile & { plugins?: unknown[] },
  options: { redisUrl?: string | null; gateway?: GatewayOptions; env?: Record<string, string | undefined> } = {},
): Promise<QuotaGateway> {
  const tg = await startGateway(config, {
    env: { SLUICE_ADMIN_KEY: QUOTA_ADMIN_KEY, REDIS_URL: options.redisUrl ?? undefined, ...options.env },
    gateway: options.gateway,
  })
  return withClients(tg)
}

/** Admin and client helpers around any gateway URL (in process or a child process). */
export function withClients<T extends { url: string }>(tg: T): T & Omit<QuotaGateway, keyof TestGateway> {
  const admin = (method: string, path: string, body?: unknown) =>
    fetch(tg.url + path, {
      method,
      headers: { authorization: `Bearer ${QUOTA_ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  return {
    ...tg,
    admin,
    async adminOk<R>(method: string, path: string, body?: unknown): Promise<R> {
      const res = await admin(method, path, body)
      const text = await res.text()
      if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path} → ${res.status}: ${text}`)
      return JSON.parse(text) as R
    },
    chat(key, body = {}, init = {}) {
      return fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...init.headers },
        body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }], ...body }),
        signal: init.signal,
      })
    },
    async keyInfo(key) {
      const res = await fetch(`${tg.url}/v1/key`, { headers: { authorization: `Bearer ${key}` } })
      const text = await res.text()
      if (res.status !== 200) throw new Error(`GET /v1/key → ${res.status}: ${text}`)
      return JSON.parse(text) as KeyInfo
    },
  }
}

let counter = 0
/** A unique id for test rows. */
export const uid = (prefix: string): string => `${prefix}_q${Date.now().toString(36)}${(counter++).toString(36)}`

type Admin = Pick<QuotaGateway, 'adminOk'>
type LimitsBody = { limits?: Record<string, unknown>; budget?: Record<string, unknown> }

export async function createUser(gw: Admin, body: LimitsBody = {}): Promise<string> {
  const id = uid('usr')
  await gw.adminOk('POST', '/admin/users', { id, ...body })
  return id
}

export async function createTeam(gw: Admin, members: string[], body: LimitsBody = {}): Promise<string> {
  const id = uid('team')
  await gw.adminOk('POST', '/admin/teams', { id, name: `Team ${id}`, ...body })
  for (const user of members) await gw.adminOk('POST', `/admin/teams/${id}/members`, { user_id: user })
  return id
}

/** Create a key; returns its id and plaintext. */
export async function createKey(gw: Admin, userId: string, body: LimitsBody & { team_id?: string } = {}): Promise<{ id: string; key: string }> {
  const created = await gw.adminOk<{ id: string; key: string }>('POST', '/admin/keys', { user_id: userId, ...body })
  return { id: created.id, key: created.key }
}

/** Assert `res` is the error envelope for a quota code; returns the message. */
export async function expectQuotaError(res: Response, code: QuotaErrorCode): Promise<string> {
  const text = await res.text()
  const [status, type] = QUOTA_ERRORS[code]
  expect({ status: res.status, body: text }).toMatchObject({ status })
  expect(res.headers.get('content-type') ?? '').toStartWith('application/json')
  expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
  const body = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string } }
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  expect(body.error.code).toBe(code)
  expect(body.error.type).toBe(type)
  return body.error.message
}

/** The x-ratelimit-* headers of a response, as numbers (reset in ms, parsed from OpenAI's `1m2.5s` form). */
export function rateLimitHeaders(res: Response, measure: 'requests' | 'tokens'): { limit: number; remaining: number; resetMs: number } | null {
  const limit = res.headers.get(`x-ratelimit-limit-${measure}`)
  const remaining = res.headers.get(`x-ratelimit-remaining-${measure}`)
  const reset = res.headers.get(`x-ratelimit-reset-${measure}`)
  if (limit === null && remaining === null && reset === null) return null
  expect(limit).toMatch(/^\d+$/)
  expect(remaining).toMatch(/^\d+$/)
  expect(reset).toMatch(/^(\d+h)?(\d+m)?(\d+(\.\d+)?s)?(\d+ms)?$/)
  return { limit: Number(limit), remaining: Number(remaining), resetMs: parseDuration(reset!) }
}

/** `1h2m3.5s`, `20ms`, `6m0s` → ms. */
export function parseDuration(text: string): number {
  const match = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$/.exec(text)
  if (!match || text === '') throw new Error(`not a duration: ${text}`)
  const [, h, m, s, ms] = match
  return Number(h ?? 0) * 3_600_000 + Number(m ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0)
}

/** Poll `check` until it returns a value that is not undefined, or fail after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await Bun.sleep(25)
  }
}
