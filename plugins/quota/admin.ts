import { Type, type Static } from '@sinclair/typebox'
import { Elysia, t } from 'elysia'
import { adminActor, adminGuard } from '../../src/admin-key.ts'
import { audit } from '../../src/db/audit.ts'
import { GatewayError } from '../../src/errors.ts'
import { fromJson } from '../../src/lib/json-text.ts'
import { echo } from '../../src/lib/key-text.ts'
import { budgetPeriod, type Budget, type Limits } from '../../src/limits.ts'
import type { Services } from '../../src/services.ts'
import { adminErrors, QuotaView } from '../../src/routes/schemas.ts'
import { MICRO, subjectItems, type Item, type Scope, type Subject } from './plan.ts'
import type { QuotaStore } from './store.ts'

const tags = ['Admin: quota']

type QuotaViewT = Static<typeof QuotaView>

/**
 * One subject's own limits and budget with what is left of each (`left`: the store's answer for
 * `items`, that subject's items as subjectItems lists them), as the admin API and GET /v1/key show it.
 */
export function quotaView(scope: Scope, subject: Subject, items: readonly Item[], left: readonly number[], now: number, store: QuotaViewT['store']): QuotaViewT {
  const at = (measure: Item['measure']) => items.findIndex((it) => it.measure === measure)
  const bucket = (measure: 'requests' | 'tokens') => {
    const i = at(measure)
    if (i < 0) return null
    const item = items[i]!
    const remaining = left[i]!
    return {
      limit: item.limit,
      remaining: Math.max(0, Math.floor(remaining)),
      full_at: remaining >= item.limit ? null : new Date(now + Math.ceil((item.limit - remaining) / item.rate)).toISOString(),
    }
  }
  const spend = (measure: 'budget_tokens' | 'budget_usd', unit: number) => {
    const i = at(measure)
    if (i < 0) return null
    const limit = items[i]!.limit
    const spent = Math.max(0, limit - left[i]!)
    return { limit: limit / unit, spent: spent / unit, remaining: Math.max(0, limit - spent) / unit }
  }
  const parallel = at('parallel')
  const budget = subject.budget
  const period = budget ? budgetPeriod(budget.period, now) : null
  return {
    object: 'quota',
    subject: scope,
    id: subject.id,
    counted_as: subject.countedAs ?? subject.id,
    store,
    requests: bucket('requests'),
    tokens: bucket('tokens'),
    parallel: parallel < 0 ? null : { limit: items[parallel]!.limit, in_flight: Math.max(0, items[parallel]!.limit - left[parallel]!) },
    budget:
      budget && period
        ? {
            period: budget.period,
            period_start: period.start === null ? null : new Date(period.start).toISOString(),
            resets_at: period.end === null ? null : new Date(period.end).toISOString(),
            tokens: spend('budget_tokens', 1),
            usd: spend('budget_usd', MICRO),
          }
        : null,
  }
}

const ResetBody = t.Optional(
  t.Object(
    {
      // TypeBox's Boolean, not Elysia's `t.Boolean`, which also takes the strings "true" and "false".
      limits: t.Optional(Type.Boolean({ description: 'Refill the requests- and tokens-per-minute buckets. @default true' })),
      budget: t.Optional(Type.Boolean({ description: "Forget what the current budget period has spent. @default true" })),
      parallel: t.Optional(
        Type.Boolean({
          description:
            'Free every `max_parallel` slot: a slot still held by a request whose end was never heard (its gateway crashed) instead of when its lease expires (`lease_ms`). The requests still running then no longer count, so up to twice `max_parallel` may run until they end. @default false',
        }),
      ),
    },
    { additionalProperties: false },
  ),
)

export interface QuotaAdminDeps {
  services: Services
  /** The store admissions use now (Redis, or memory), and the in-process one. */
  primary: QuotaStore
  memory: QuotaStore
  /** What the store in force has left (see the plugin's peekInForce); throws with Redis unreachable and failing closed. */
  peek(items: Item[], now: number): Promise<{ left: number[]; store: QuotaStore }>
  planOptions: { tag: string; leaseMs: number }
  /** The error for an unreachable Redis (logs it); the admin routes answer it as is. */
  unreachable(error: unknown): GatewayError
}

interface Found {
  scope: Scope
  subject: Subject
}

/**
 * `GET /admin/{keys,users,teams}/:id/quota` shows one subject's own counts; `POST …/quota/reset`
 * refills its buckets and forgets its budget period's spend (an operator unblocking someone).
 */
export function quotaAdminRoutes(deps: QuotaAdminDeps) {
  const { services, primary, memory } = deps
  const db = services.db.db
  const guard = adminGuard(services.admin)

  const find = async (scope: Scope, id: string): Promise<Found> => {
    if (scope === 'key') {
      const row = await db.selectFrom('api_keys').select(['id', 'lineage_id', 'limits', 'budget']).where('id', '=', id).executeTakeFirst()
      if (!row) throw notFound(scope, id)
      return { scope, subject: { id: row.id, countedAs: row.lineage_id ?? row.id, limits: fromJson<Limits>(row.limits), budget: fromJson<Budget>(row.budget) } }
    }
    const row = await db.selectFrom(scope === 'user' ? 'users' : 'teams').select(['id', 'limits', 'budget']).where('id', '=', id).executeTakeFirst()
    if (!row) throw notFound(scope, id)
    return { scope, subject: { id: row.id, limits: fromJson<Limits>(row.limits), budget: fromJson<Budget>(row.budget) } }
  }

  /** What the store in force has left of each item, or the admin API's 503. */
  const peek = (items: Item[], now: number): Promise<{ left: number[]; store: QuotaStore }> =>
    deps.peek(items, now).catch((error: unknown) => {
      throw deps.unreachable(error)
    })

  const view = async ({ scope, subject }: Found): Promise<QuotaViewT> => {
    const now = services.now()
    const items = subjectItems(scope, subject, { tokens: 0, microUsd: 0 }, now, deps.planOptions)
    const { left, store } = await peek(items, now)
    return quotaView(scope, subject, items, left, now, store.name)
  }

  const reset = async (found: Found, body: { limits?: boolean; budget?: boolean; parallel?: boolean } | null | undefined, actor: string): Promise<QuotaViewT> => {
    const limits = body?.limits ?? true
    const budget = body?.budget ?? true
    const parallel = body?.parallel ?? false
    const items = subjectItems(found.scope, found.subject, { tokens: 0, microUsd: 0 }, services.now(), deps.planOptions).filter((it) =>
      it.kind === 'bucket' ? limits : it.kind === 'counter' ? budget : parallel,
    )
    // The in-process counts too: they are what a gateway failing open enforces while Redis is away.
    await memory.reset(items)
    if (primary !== memory) {
      try {
        await primary.reset(items)
      } catch (error) {
        throw deps.unreachable(error)
      }
    }
    await audit(db, {
      actor,
      action: 'quota.reset',
      targetType: found.scope,
      targetId: found.subject.id,
      details: { limits, budget, parallel, counted_as: found.subject.countedAs ?? found.subject.id },
    })
    return view(found)
  }

  const scopes = [
    { scope: 'key', path: 'keys', what: 'a key', note: " Counted per rotation chain: every key of the chain shares these counts (see `counted_as`)." },
    { scope: 'user', path: 'users', what: 'a user', note: '' },
    { scope: 'team', path: 'teams', what: 'a team', note: '' },
  ] as const

  const routesOf = ({ scope, path, what, note }: (typeof scopes)[number]) =>
    new Elysia({ name: `sluice.quota.admin.${scope}`, prefix: '/admin' })
      // The admin key before anything else looks at the request (see adminGuard).
      .onParse(guard.parse)
      .onTransform(guard.transform)
      .get(`/${path}/:id/quota`, async ({ params }) => view(await find(scope, params.id)), {
        response: { 200: QuotaView },
        detail: {
          tags,
          summary: `What ${what} has left of its own limits and budget`,
          description: `Its requests and tokens per minute, requests in flight and budget for the current UTC period, as the quota store counts them now. A request also answers to the limits of its key, user and team: \`GET /v1/key\` shows the tightest of them for the calling key.${note}`,
          responses: adminErrors(404),
        },
      })
      .post(`/${path}/:id/quota/reset`, async ({ params, body, request }) => reset(await find(scope, params.id), body, adminActor(request)), {
        body: ResetBody,
        response: { 200: QuotaView },
        detail: {
          tags,
          summary: `Reset ${what}'s rate-limit buckets and budget spend`,
          description: `Refills the requests- and tokens-per-minute buckets (\`limits\`) and forgets what the current budget period has spent (\`budget\`), both unless set to false; audited as \`quota.reset\`. Requests in flight keep their \`max_parallel\` slots unless \`parallel\` is true; when they end, only what they used beyond what they reserved reaches the fresh counts. Without Redis each gateway instance keeps its own counts, and this resets those of the instance that answers. Answers the counts after the reset.${note}`,
          responses: adminErrors(400, 404),
        },
      })
  return new Elysia({ name: 'sluice.quota.admin' }).use(routesOf(scopes[0])).use(routesOf(scopes[1])).use(routesOf(scopes[2]))
}

// A key pasted where its id belongs is masked: messages never carry a whole key.
const notFound = (scope: Scope, id: string) => new GatewayError('not_found', `No ${scope} with id "${echo(id)}".`)
