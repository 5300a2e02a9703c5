import { startMockUpstream } from '/work/main/test/fixtures/mock-upstream.ts'
import { startAuthGateway } from '/work/main/test/support/auth.ts'
const up = await startMockUpstream()
const gw = await startAuthGateway(up.url)
for (const p of ['/admin/keys/expiring?within=forever', '/admin/keys?status=x', '/admin/keys?user_id=' + 'x'.repeat(100)]) {
  const r = await gw.admin('GET', p); console.log(p.slice(0, 40), r.status, await r.text())
}
await gw.close(); await up.stop()
