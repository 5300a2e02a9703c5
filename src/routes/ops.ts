import { Elysia, t } from 'elysia'
import type { Services } from '../services.ts'
import { GatewayError } from '../errors.ts'
import { METRICS_CONTENT_TYPE } from '../metrics.ts'
import { checkRedis } from '../redis.ts'
import { ERROR_ENVELOPE_REF, jsonResponse } from './schemas.ts'

/** How long /ready waits for Redis, every node of a cluster included. */
const REDIS_TIMEOUT_MS = 1000

const Checks = t.Object({
  database: t.Union([t.Literal('ok'), t.Literal('unreachable')]),
  redis: t.Union([t.Literal('ok'), t.Literal('unreachable'), t.Literal('not configured')]),
})
const Ready = t.Object({ status: t.Literal('ready'), checks: Checks })
/** The 503 of /ready: the error envelope, with the checks and what did not answer. */
const NotReady = t.Object({
  status: t.Literal('not_ready'),
  checks: Checks,
  details: t.Object({ redis: t.Optional(t.String({ description: 'What did not answer (in a Cluster, which master, with its slots)' })) }),
})

/** Liveness, readiness and metrics. No plugin hook runs here. */
export function opsRoutes({ services }: { services: Services }) {
  return new Elysia({ name: 'sluice.ops' })
    .get('/health', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: { tags: ['Operations'], summary: 'Liveness: the process answers' },
    })
    .get(
      '/ready',
      async ({ set }) => {
        const [database, redisHealth] = await Promise.all([
          services.db.ping().then((ok) => (ok ? 'ok' : 'unreachable')),
          services.redis ? checkRedis(services.redis, REDIS_TIMEOUT_MS) : null,
        ])
        const redis = redisHealth === null ? 'not configured' : redisHealth.ok ? 'ok' : 'unreachable'
        if (database === 'ok' && redis !== 'unreachable') return { status: 'ready' as const, checks: { database, redis } }
        // Not ready is an error like any other: the envelope, plus the checks for a probe or a person.
        const details = redisHealth?.ok === false ? { redis: redisHealth.detail } : {}
        const down = [database !== 'ok' && 'the database does not answer', details.redis && `Redis: ${details.redis}`].filter(Boolean).join('; ')
        const error = new GatewayError('not_ready', `Not ready: ${down}.`)
        set.status = 503
        return { ...error.toJSON(), status: 'not_ready' as const, checks: { database, redis }, details }
      },
      {
        detail: {
          tags: ['Operations'],
          summary: 'Readiness: the database and Redis (when configured; in a Cluster, every master) answer; 503 otherwise',
          description: `Redis is given ${REDIS_TIMEOUT_MS} ms in all. A 503 lists the checks, and under details.redis what did not answer (in a Cluster, which master, with its slots).`,
          responses: {
            ...jsonResponse('Ready', Ready),
            503: {
              description: 'not_ready: the database or Redis does not answer',
              content: { 'application/json': { schema: { allOf: [{ $ref: ERROR_ENVELOPE_REF }, NotReady] } } },
            },
          },
        },
      },
    )
    .get('/metrics', () => new Response(services.metrics.render(), { headers: { 'content-type': METRICS_CONTENT_TYPE } }), {
      detail: {
        tags: ['Operations'],
        summary: 'Prometheus metrics (text format 0.0.4)',
        description:
          'Requests by route and status, latencies, upstream attempts and key health, and whatever plugins register (the logging plugin adds requests by model and provider, tokens, cost, time to first token, and its queue). Unauthenticated; it carries ids and counts, never a secret.',
        responses: { 200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    })
}
