import { Elysia, t } from 'elysia'
import type { Services } from '../services.ts'
import { GatewayError } from '../errors.ts'
import { METRICS_CONTENT_TYPE } from '../metrics.ts'

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
        const [database, redis] = await Promise.all([
          services.db.ping().then((ok) => (ok ? 'ok' : 'unreachable')),
          services.redis ? pingRedis(services).then((ok) => (ok ? 'ok' : 'unreachable')) : Promise.resolve('not configured'),
        ])
        const ready = database === 'ok' && redis !== 'unreachable'
        if (ready) return { status: 'ready' as const, checks: { database, redis } }
        // Not ready is an error like any other: the envelope, plus the checks for a probe or a person.
        const down = [database !== 'ok' && 'the database', redis === 'unreachable' && 'Redis'].filter(Boolean).join(' and ')
        const error = new GatewayError('not_ready', `Not ready: ${down} ${down.includes(' and ') ? 'do' : 'does'} not answer.`)
        set.status = 503
        return { ...error.toJSON(), status: 'not_ready' as const, checks: { database, redis } }
      },
      {
        detail: { tags: ['Operations'], summary: 'Readiness: the database and Redis (when configured) answer; 503 otherwise' },
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

async function pingRedis(services: Services): Promise<boolean> {
  try {
    const reply = await Promise.race([services.redis!.ping(), Bun.sleep(1000).then(() => 'timeout')])
    return reply === 'PONG'
  } catch {
    return false
  }
}
