import { Elysia, t } from 'elysia'
import type { Services } from '../services.ts'

/** Liveness and readiness. No plugin hook runs here. */
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
        if (!ready) set.status = 503
        return { status: ready ? ('ready' as const) : ('not_ready' as const), checks: { database, redis } }
      },
      {
        detail: { tags: ['Operations'], summary: 'Readiness: the database and Redis (when configured) answer; 503 otherwise' },
      },
    )
}

async function pingRedis(services: Services): Promise<boolean> {
  try {
    const reply = await Promise.race([services.redis!.ping(), Bun.sleep(1000).then(() => 'timeout')])
    return reply === 'PONG'
  } catch {
    return false
  }
}
