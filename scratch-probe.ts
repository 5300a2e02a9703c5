import { startMockUpstream } from './test/fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey } from './test/support/auth.ts'
import { createLogger } from './src/lib/logger.ts'
const up = await startMockUpstream()
const gw = await startAuthGateway(up.url, { gateway: { logger: createLogger('debug') } })
const { key } = await userWithKey(gw)
for (const [m, p, b] of [['POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: '60' }], ['POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 1.5 }], ['POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: -1 }], ['POST', `/admin/keys/${key.id}/revoke`, { reason: 42 }], ['POST', `/admin/keys/${key.id}/revoke`, { bogus: 42 }], ['GET', '/admin/keys?limit=0'], ['GET', '/admin/keys?limit=501'], ['GET', '/admin/keys?limit=two'], ['GET', '/admin/keys?limit=1.5'], ['GET', '/admin/keys?status=deleted']] as const) {
  const r = await gw.admin(m, p, b)
  console.log(m, p, JSON.stringify(b), r.status, (await r.text()).slice(0, 150))
}
await gw.close(); await up.stop()
