/**
 * A plugin hook before the upstream call (authenticate, admit, route) that throws, or whose promise
 * fails, answers the client 500 `internal_error` with its request id, and the operator's log names
 * the plugin and the hook, as it does for the hooks after the response: with one plugin in the stage
 * and with several, sync and async, on the model call and on routes that only authenticate.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type GatewayRequest, type Outcome } from '../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { capturingLogger } from './support/logging.ts'

const chat = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }
let upstream: MockUpstream
const gateways: TestGateway[] = []

beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  for (const gw of gateways) await gw.close()
  await upstream?.stop()
})

/** A plugin that fails in the hook the `x-fail` header names as `<plugin>:<hook>[:async]`. */
function failing(name: string, stages: readonly ('authenticate' | 'admit' | 'route')[]) {
  const fails = (req: GatewayRequest, hook: string): 'sync' | 'async' | null => {
    const wanted = req.request.headers.get('x-fail')?.split(':')
    if (wanted?.[0] !== name || wanted[1] !== hook) return null
    return wanted[2] === 'async' ? 'async' : 'sync'
  }
  const hook = (stage: string) => (req: GatewayRequest) => {
    const how = fails(req, stage)
    if (how === 'sync') throw new Error(`${name} broke in ${stage}`)
    if (how === 'async') return Bun.sleep(1).then(() => Promise.reject(new Error(`${name} broke later in ${stage}`)))
    return undefined
  }
  return definePlugin({
    name,
    setup: () => ({
      ...(stages.includes('authenticate') && { authenticate: hook('authenticate') }),
      ...(stages.includes('admit') && { admit: hook('admit') }),
      ...(stages.includes('route') && { route: hook('route') }),
    }),
  })
}

async function boot(plugins: unknown[]) {
  const { logger, lines } = capturingLogger('warn')
  const outcomes: Outcome[] = []
  const recorder = definePlugin({ name: 'recorder', setup: () => ({ onComplete: (_req, o) => void outcomes.push(o) }) })
  const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [...plugins, recorder] }), {
    gateway: { logger },
    env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' },
  })
  gateways.push(gw)
  return { gw, lines, outcomes }
}

async function until(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 3000
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(5)
  }
}

describe('a hook before the upstream call that fails', () => {
  test.each([
    ['alone in its stage, thrown', 'solo', 'admit', ''],
    ['alone in its stage, a failed promise', 'solo', 'admit', ':async'],
    ['second of two in its stage, thrown', 'second', 'admit', ''],
    ['second of two in its stage, a failed promise', 'second', 'admit', ':async'],
    ['authenticate, first of two', 'first', 'authenticate', ''],
    ['route, second of two, a failed promise', 'second', 'route', ':async'],
    ['route, alone, thrown', 'solo', 'route', ''],
  ])('%s: 500 with the request id, the log names plugin and hook', async (_what, plugin, hook, how) => {
    // "solo" holds the only admit hook and, with "second", shares authenticate and route.
    const solo = failing('solo', ['admit', 'route'])
    const first = failing('first', ['authenticate'])
    const second = failing('second', ['authenticate'])
    const plugins = plugin === 'solo' ? [solo] : hook === 'route' ? [solo, failing('second', ['route'])] : hook === 'authenticate' ? [first, second] : [failing('first', ['admit']), failing('second', ['admit'])]
    const { gw, lines, outcomes } = await boot(plugins)
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-fail': `${plugin}:${hook}${how}` },
      body: JSON.stringify(chat),
    })
    expect(res.status).toBe(500)
    const id = res.headers.get('x-request-id')!
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('internal_error')
    expect(body.error.message).toContain(id)
    const line = lines.find((l) => l.msg === `${hook} hook failed`)
    expect(line).toMatchObject({ plugin, request_id: id })
    expect(String(line!.error)).toContain(`${plugin} broke`)
    expect(lines.some((l) => l.msg === 'request failed unexpectedly')).toBe(false)
    await until(() => outcomes.length === 1, 'the completion hook')
    expect(outcomes[0]).toMatchObject({ status: 500, errorCode: 'internal_error' })
    // The next request, without the failure, is served.
    const ok = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat) })
    expect(ok.status).toBe(200)
    await ok.arrayBuffer()
  })

  test('on a route that only authenticates (GET /v1/models), the log names the plugin too', async () => {
    const { gw, lines } = await boot([failing('solo', ['authenticate'])])
    for (const how of ['', ':async']) {
      const res = await fetch(`${gw.url}/v1/models`, { headers: { 'x-fail': `solo:authenticate${how}` } })
      expect(res.status).toBe(500)
      const id = res.headers.get('x-request-id')!
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('internal_error')
      expect(lines.find((l) => l.msg === 'authenticate hook failed' && l.request_id === id)).toMatchObject({ plugin: 'solo' })
    }
  })

  test('a GatewayError a hook throws (not returns) is still its refusal, not a failure', async () => {
    const { GatewayError } = await import('../src/errors.ts')
    const refuser = definePlugin({
      name: 'refuser',
      setup: () => ({
        admit: () => {
          throw new GatewayError('rate_limit_exceeded', 'Slow down.')
        },
      }),
    })
    const { gw, lines } = await boot([failing('other', ['admit']), refuser])
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat) })
    expect(res.status).toBe(429)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded')
    expect(lines.some((l) => String(l.msg).endsWith('hook failed'))).toBe(false)
  })
})
