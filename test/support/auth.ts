/**
 * Helpers for the auth plugin's tests (plugins/auth/*.test.ts, test/auth.*.test.ts): a
 * gateway with `auth` in front of the mock upstream, an admin API client, an OpenAI client
 * per key, and database snapshots.
 */
import { expect } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import type { ConfigFile } from '../../src/config/schema.ts'
import type { Database } from '../../src/db/schema.ts'
import type { GatewayOptions } from '../../src/server.ts'
import { startGateway, type TestGateway } from './gateway.ts'
import { REQUEST_ID } from './http.ts'

export const ADMIN_KEY = 'sluice-test-admin-key-0123456789abcdefghij'
export const UPSTREAM_SECRET = 'sk-upstream-secret-auth-tests-9876543210'

/** Statuses and types of the auth-related codes, copied from DESIGN.md's table (not from src/errors.ts). */
export const AUTH_ERRORS = {
  missing_api_key: [401, 'authentication_error'],
  invalid_api_key: [401, 'authentication_error'],
  key_revoked: [401, 'authentication_error'],
  key_expired: [401, 'authentication_error'],
  invalid_user_for_key: [403, 'permission_error'],
  environment_mismatch: [403, 'permission_error'],
  model_not_allowed: [403, 'permission_error'],
  insufficient_permissions: [403, 'permission_error'],
  invalid_admin_key: [401, 'authentication_error'],
  invalid_request: [400, 'invalid_request_error'],
  not_found: [404, 'not_found_error'],
  model_not_found: [404, 'not_found_error'],
  request_too_large: [413, 'invalid_request_error'],
  conflict: [409, 'invalid_request_error'],
} as const
export type AuthErrorCode = keyof typeof AUTH_ERRORS

/** Models of the test config: two chat models and an embedding model, all served by the mock upstream. */
export const MODELS = ['mock-gpt', 'other-gpt', 'mock-embed'] as const

/** The gateway config the auth tests use: the mock upstream as the only provider, `auth` without the demo key. */
export function authConfig(upstreamUrl: string, extra: Partial<ConfigFile> & { plugins?: unknown[] } = {}): ConfigFile & { plugins?: unknown[] } {
  return {
    environment: 'dev',
    providers: [{ id: 'up', type: 'openai-compatible', baseUrl: upstreamUrl, keys: [{ id: 'k1', secret: UPSTREAM_SECRET }] }],
    models: [
      { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
      { name: 'other-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
      { name: 'mock-embed', targets: [{ provider: 'up', model: 'mock-embed' }] },
    ],
    plugins: [{ use: 'auth', options: { demo_key: false } }],
    ...extra,
  }
}

/** A test clock: starts at the real time, moves only when told. */
export class Clock {
  t = Date.now()
  readonly now = (): number => this.t
  advance(ms: number): void {
    this.t += ms
  }
  iso(offsetMs = 0): string {
    return new Date(this.t + offsetMs).toISOString()
  }
}

export interface AuthGateway extends TestGateway {
  /** The admin API, with the admin key unless `headers` override it. */
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Response>
  /** The admin API, asserting a 2xx and returning the JSON. */
  adminOk<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>
  /** An OpenAI client for `key` (no retries). */
  client(key: string, options?: { organization?: string; headers?: Record<string, string | null> }): OpenAI
  /** The gateway's Kysely instance. */
  db: import('kysely').Kysely<Database>
}

export async function startAuthGateway(
  upstreamUrl: string,
  options: { config?: Partial<ConfigFile> & { plugins?: unknown[] }; env?: Record<string, string | undefined>; gateway?: GatewayOptions } = {},
): Promise<AuthGateway> {
  const tg = await startGateway(authConfig(upstreamUrl, options.config), {
    env: { SLUICE_ADMIN_KEY: ADMIN_KEY, ...options.env },
    gateway: options.gateway,
  })
  const admin = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(tg.url + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    })
  return {
    ...tg,
    admin,
    async adminOk<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await admin(method, path, body)
      const text = await res.text()
      if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path} → ${res.status}: ${text}`)
      return JSON.parse(text) as T
    },
    client(key, clientOptions = {}) {
      return new OpenAI({
        apiKey: key,
        baseURL: `${tg.url}/v1`,
        maxRetries: 0,
        organization: clientOptions.organization ?? null,
        project: null,
        defaultHeaders: clientOptions.headers,
      })
    },
    db: tg.gateway.services.db.db,
  }
}

/** A key as the admin API returns it on creation. */
export interface CreatedKey {
  id: string
  key: string
  user_id: string
  team_id: string | null
  status: string
  display: string
  start: string
  end: string
  environment: string
  expires_at: string | null
  [field: string]: unknown
}

let counter = 0
/** A unique id for test rows. */
export const uid = (prefix: string): string => `${prefix}_${Date.now().toString(36)}${(counter++).toString(36)}`

/** Create a user and a key for it (and a team with the user in it, when `team` is true or an id). */
export async function userWithKey(
  gw: AuthGateway,
  key: Record<string, unknown> = {},
  options: { team?: boolean } = {},
): Promise<{ userId: string; teamId: string | null; key: CreatedKey }> {
  const userId = uid('usr')
  await gw.adminOk('POST', '/admin/users', { id: userId })
  let teamId: string | null = null
  if (options.team) {
    teamId = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: teamId, name: `Team ${teamId}` })
    await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
  }
  const created = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId, ...(teamId ? { team_id: teamId } : {}), ...key })
  return { userId, teamId, key: created }
}

/** A chat request through the OpenAI client. */
export const chat = (client: OpenAI, model = 'mock-gpt') =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }] })

/**
 * Await a call that must fail with `code`; checks the status, type and envelope the client
 * parsed, and returns the message.
 */
export async function expectApiError(call: Promise<unknown>, code: AuthErrorCode): Promise<string> {
  let caught: unknown
  try {
    await call
  } catch (error) {
    caught = error
  }
  if (!(caught instanceof APIError)) throw new Error(`expected an API error ${code}, got ${caught === undefined ? 'success' : String(caught)}`)
  const [status, type] = AUTH_ERRORS[code]
  expect({ status: caught.status, code: caught.code, type: caught.type }).toEqual({ status, code, type })
  expect(caught.requestID ?? '').toMatch(REQUEST_ID)
  const body = caught.error as { message?: unknown; param?: unknown }
  expect(typeof body.message).toBe('string')
  return body.message as string
}

/** Assert an admin-API (or any fetch) response is the error envelope with `code`; returns the message. */
export async function expectEnvelope(res: Response, code: AuthErrorCode): Promise<{ message: string; param: string | null }> {
  const text = await res.text()
  const [status, type] = AUTH_ERRORS[code]
  expect({ status: res.status, body: text }).toMatchObject({ status })
  expect(res.headers.get('content-type') ?? '').toStartWith('application/json')
  expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
  const body = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string } }
  expect(Object.keys(body)).toEqual(['error'])
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  expect(body.error.code).toBe(code)
  expect(body.error.type).toBe(type)
  expect(body.error.message.length).toBeGreaterThan(15)
  return { message: body.error.message, param: body.error.param }
}

export const TABLES = [
  'users',
  'teams',
  'team_members',
  'api_keys',
  'audit_log',
  'settings',
  'providers',
  'provider_keys',
  'models',
  'request_logs',
] as const satisfies readonly (keyof Database)[]

/** Every row of every table, as one JSON text (ordered, so two dumps compare equal when nothing changed). */
export async function dumpDatabase(db: import('kysely').Kysely<Database>): Promise<string> {
  const out: Record<string, unknown[]> = {}
  for (const table of TABLES) {
    const rows = await db.selectFrom(table).selectAll().execute()
    out[table] = rows.map((r) => JSON.stringify(r)).sort()
  }
  return JSON.stringify(out, null, 1)
}

/** Row counts of the tables the admin API writes. */
const COUNTED = ['users', 'teams', 'team_members', 'api_keys', 'audit_log'] as const
export async function countRows(db: import('kysely').Kysely<Database>): Promise<Record<(typeof COUNTED)[number], number>> {
  const out = { users: 0, teams: 0, team_members: 0, api_keys: 0, audit_log: 0 }
  for (const table of COUNTED) {
    const row = await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    out[table] = Number(row.n)
  }
  return out
}

/** SHA-256 hex, computed here rather than imported from the code under test. */
export const sha256Hex = (text: string): string => new Bun.CryptoHasher('sha256').update(text).digest('hex')

/** A list page of the admin API. */
export interface ListPage<T> {
  object: 'list'
  data: T[]
  next_cursor: string | null
}

/** Every item of an admin list, following next_cursor; `path` may hold a query already. */
export async function listAll<T = Record<string, unknown>>(gw: AuthGateway, path: string, limit = 500): Promise<T[]> {
  const items: T[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 1000; pages++) {
    const page: ListPage<T> = await gw.adminOk<ListPage<T>>('GET', `${path}${path.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    items.push(...page.data)
    cursor = page.next_cursor
    if (cursor === null) return items
  }
  throw new Error(`${path}: more than 1000 pages`)
}

/*
 * Scenarios run on SQLite (plugins/auth/auth.happy.test.ts) and on Postgres
 * (plugins/auth/admin.postgres.test.ts): lists whose SQL (keyset paging, EXISTS, text times)
 * each database must answer the same way. `now` is the gateway's clock.
 */

/** A team's members come in pages of `limit`, newest first, each once; ties of created_at fall back to the user id. */
export async function expectMembersPaged(gw: AuthGateway): Promise<void> {
  const teamId = uid('team')
  await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Paged' })
  const users: string[] = []
  for (let i = 0; i < 5; i++) {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
    users.push(userId)
  }
  const pages: string[][] = []
  let cursor: string | null = null
  do {
    const page: ListPage<{ user_id: string; team_id: string }> = await gw.adminOk('GET', `/admin/teams/${teamId}/members?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    expect(page.object).toBe('list')
    expect(page.data.every((m) => m.team_id === teamId)).toBe(true)
    pages.push(page.data.map((m) => m.user_id))
    cursor = page.next_cursor
  } while (cursor !== null && pages.length < 10)
  expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
  const seen = pages.flat()
  expect(new Set(seen).size).toBe(5)
  // Joined in this order, possibly within one clock tick: newest first, then user id descending.
  const members = await gw.db.selectFrom('team_members').select(['user_id', 'created_at']).where('team_id', '=', teamId).execute()
  const expected = members.sort((a, b) => (a.created_at === b.created_at ? (a.user_id < b.user_id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1)).map((m) => m.user_id)
  expect(seen).toEqual(expected)
  expect([...seen].sort()).toEqual([...users].sort())
  // The default page holds them all, with no cursor to follow.
  const whole = await gw.adminOk<ListPage<{ user_id: string }>>('GET', `/admin/teams/${teamId}/members`)
  expect({ members: whole.data.map((m) => m.user_id), next_cursor: whole.next_cursor }).toEqual({ members: expected, next_cursor: null })
}

/**
 * However wide the window of /admin/keys/expiring, it lists at least what a narrower one does:
 * windows ending after year 9999 (999999w is allowed) are cut at the last time stored, which
 * they still include.
 */
export async function expectExpiringWindowsClamped(gw: AuthGateway, now: number): Promise<void> {
  const soon = (await userWithKey(gw, { expires_at: new Date(now + 2 * 86_400_000).toISOString() })).key
  const last = (await userWithKey(gw, { expires_at: '9999-12-31T23:59:59.999Z' })).key
  const ids = async (within: string) => (await listAll<{ id: string }>(gw, `/admin/keys/expiring?within=${within}`)).map((k) => k.id)
  expect(await ids('7d')).toContain(soon.id)
  expect(await ids('7d')).not.toContain(last.id)
  for (const within of ['420000w', '999999w']) {
    const listed = await ids(within)
    expect({ within, soon: listed.includes(soon.id), last: listed.includes(last.id) }).toEqual({ within, soon: true, last: true })
  }
}

/**
 * /admin/keys/expiring leaves out keys the gateway refuses for their owner or team (owner deleted
 * or disabled; bound team deleted or left), and lists them again once the owner is enabled.
 */
export async function expectExpiringLeavesOutRefusedKeys(gw: AuthGateway, now: number): Promise<void> {
  const expires_at = new Date(now + 2 * 86_400_000).toISOString()
  const kept = await userWithKey(gw, { expires_at })
  const keptInTeam = await userWithKey(gw, { expires_at }, { team: true })
  const deletedOwner = await userWithKey(gw, { expires_at })
  await gw.adminOk('DELETE', `/admin/users/${deletedOwner.userId}`)
  const disabledOwner = await userWithKey(gw, { expires_at })
  await gw.adminOk('PATCH', `/admin/users/${disabledOwner.userId}`, { disabled: true })
  const deletedTeam = await userWithKey(gw, { expires_at }, { team: true })
  await gw.adminOk('DELETE', `/admin/teams/${deletedTeam.teamId}`)
  const leftTeam = await userWithKey(gw, { expires_at }, { team: true })
  await gw.adminOk('DELETE', `/admin/teams/${leftTeam.teamId}/members/${leftTeam.userId}`)
  // The same owner's key not bound to the team it left is not refused.
  const leftTeamUnbound = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: leftTeam.userId, expires_at })

  const listed = new Set((await listAll<{ id: string }>(gw, '/admin/keys/expiring')).map((k) => k.id))
  const shown = (keys: Record<string, { id: string }>) => Object.fromEntries(Object.entries(keys).map(([name, k]) => [name, listed.has(k.id)]))
  expect(
    shown({ kept: kept.key, keptInTeam: keptInTeam.key, leftTeamUnbound, deletedOwner: deletedOwner.key, disabledOwner: disabledOwner.key, deletedTeam: deletedTeam.key, leftTeam: leftTeam.key }),
  ).toEqual({ kept: true, keptInTeam: true, leftTeamUnbound: true, deletedOwner: false, disabledOwner: false, deletedTeam: false, leftTeam: false })

  await gw.adminOk('PATCH', `/admin/users/${disabledOwner.userId}`, { disabled: false })
  expect((await listAll<{ id: string }>(gw, '/admin/keys/expiring')).map((k) => k.id)).toContain(disabledOwner.key.id)
}
