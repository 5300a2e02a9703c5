/**
 * `ctx.authenticate(request, requestId)` in a plugin's own route: the authenticate hooks run under
 * the id the client is answered with, so a hook's log line can be found by the `x-request-id` the
 * client quotes.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { GatewayError } from '../src/errors.ts'
import { definePlugin } from '../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID } from './support/http.ts'
import { capturingLogger } from './support/logging.ts'

const log = capturingLogger('info')

/** Knows one service header, and says in the log which request it checked. */
const serviceAuth = definePlugin({
  name: 'service-auth',
  setup: ({ logger }) => ({
    authenticate(req) {
      const service = req.request.headers.get('x-internal-service')
      logger.info('service check', { request_id: req.id, service })
      if (service) req.identity = { keyId: `svc:${service}`, userId: 'svc', teamId: null, environment: 'dev', models: null, scopes: null, attributes: {} }
    },
  }),
})

/** A route of its own that serves key holders only. */
const feedback = definePlugin({
  name: 'feedback',
  setup: ({ authenticate }) => ({
    routes: (app) =>
      app.get('/v1/feedback', async ({ request, set }) => {
        const id = set.headers['x-request-id'] as string
        const caller = await authenticate(request, id)
        if (caller instanceof GatewayError) return caller.toResponse(id)
        return { key: caller.keyId }
      }),
  }),
})

let upstream: MockUpstream
let gw: TestGateway
beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway(upstreamConfig(upstream.url, { plugins: [serviceAuth, feedback] }), { env: { SLUICE_ADMIN_KEY: 'sluice-route-auth-test-admin-key-0123' }, gateway: { logger: log.logger } })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

const checks = () => log.lines.filter((line) => line.msg === 'service check')

test("a hook's log line from ctx.authenticate(request, id) carries the x-request-id the client got, served or refused", async () => {
  const served = await fetch(`${gw.url}/v1/feedback`, { headers: { 'x-internal-service': 'billing' } })
  expect(await served.json()).toEqual({ key: 'svc:billing' })
  const refused = await fetch(`${gw.url}/v1/feedback`)
  expect(refused.status).toBe(401)
  await refused.body?.cancel()

  const ids = [served.headers.get('x-request-id'), refused.headers.get('x-request-id')]
  for (const id of ids) expect(id ?? '').toMatch(REQUEST_ID)
  expect(checks().map((line) => ({ request_id: line.request_id, plugin: line.plugin }))).toEqual(ids.map((id) => ({ request_id: id, plugin: 'service-auth' })))
})
