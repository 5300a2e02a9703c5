/**
 * A hook before the upstream call (authenticate, admit, route) that does not settle: the gateway
 * waits for it at most `limits.hook_timeout_ms`, then answers 500 `internal_error` naming the
 * plugin in its log, calls no hook after it, and runs the completion hooks once the late hook has
 * settled (or after another hook_timeout_ms), so what the plugins before it took (a `max_parallel`
 * slot of quota's) is given back, where a hook that never settled held its client and that slot forever.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome, type RoutePlan } from '../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { waitFor } from './support/http.ts'
import { capturingLogger } from './support/logging.ts'
import { createKey, createUser, quotaConfig, startQuotaGateway } from './support/quota.ts'

const chat = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }
let upstream: MockUpstream
const gateways: TestGateway[] = []

beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  for (const gw of gateways) await gw.close()
  await upstream?.stop()
})

const never = new Promise<undefined>(() => {})

/** A promise the test settles: `settle()` resolves it with `value`. */
function held<T>(): { promise: Promise<T>; settle(value: T): void } {
  let settle!: (value: T) => void
  const promise = new Promise<T>((resolve) => (settle = resolve))
  return { promise, settle }
}

function post(url: string, headers: Record<string, string> = {}, key?: string): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: JSON.stringify(chat),
  })
}

async function expectInternalError(res: Response): Promise<string> {
  const id = res.headers.get('x-request-id')!
  expect({ status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code }).toEqual({ status: 500, code: 'internal_error' })
  return id
}

describe('a hook that does not settle', () => {
  test("after quota's admit: 500 at hook_timeout_ms naming the plugin, and the key's max_parallel slot is given back", async () => {
    const { logger, lines } = capturingLogger('warn')
    const outcomes: Outcome[] = []
    const stuck = definePlugin({
      name: 'stuck',
      setup: () => ({
        admit: (req) => (req.request.headers.get('x-stuck') ? never : undefined),
        onComplete: (_req, outcome) => void outcomes.push(outcome),
      }),
    })
    const config = quotaConfig(upstream.url)
    const gw = await startQuotaGateway({ ...config, plugins: [...config.plugins!, stuck], limits: { hook_timeout_ms: 200 } }, { gateway: { logger } })
    gateways.push(gw)
    const { key } = await createKey(gw, await createUser(gw), { limits: { max_parallel: 1 } })

    const id = await expectInternalError(await post(gw.url, { 'x-stuck': '1' }, key))
    expect(lines.find((l) => l.msg === 'admit hook failed' && l.request_id === id)).toMatchObject({ plugin: 'stuck' })
    expect(String(lines.find((l) => l.request_id === id)!.error)).toContain('did not settle within 200 ms (limits.hook_timeout_ms)')
    // Its completion runs (quota's settles the request), another hook_timeout_ms on: the hook never settles.
    await waitFor(() => outcomes.length === 1, 'the completion hooks')
    expect(outcomes[0]).toMatchObject({ status: 500, errorCode: 'internal_error' })
    const next = await post(gw.url, {}, key)
    expect(next.status).toBe(200)
    await next.arrayBuffer()
  })

  test('one that settles late: the hooks after it in the stage are not called, the completion hooks run once it settled', async () => {
    const { logger, lines } = capturingLogger('warn')
    const seen: string[] = []
    const late = held<undefined>()
    const slow = definePlugin({
      name: 'slow',
      setup: () => ({
        admit: () => late.promise.then(() => void seen.push('slow settled')),
        onComplete: (_req, outcome) => void seen.push(`complete ${outcome.status}`),
      }),
    })
    const after = definePlugin({ name: 'after', setup: () => ({ admit: () => void seen.push('after called') }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [slow, after], limits: { hook_timeout_ms: 100 } }), { gateway: { logger } })
    gateways.push(gw)

    const id = await expectInternalError(await post(gw.url))
    expect(lines.find((l) => l.request_id === id)).toMatchObject({ msg: 'admit hook failed', plugin: 'slow' })
    await Bun.sleep(20)
    expect(seen).toEqual([])
    late.settle(undefined)
    await waitFor(() => seen.length === 2, 'the completion hook')
    expect(seen).toEqual(['slow settled', 'complete 500'])
  })

  test("a route hook's plan that comes late is released", async () => {
    let released = 0
    const late = held<RoutePlan>()
    const router = definePlugin({ name: 'router', setup: () => ({ route: () => late.promise }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [router], limits: { hook_timeout_ms: 100 } }))
    gateways.push(gw)
    await expectInternalError(await post(gw.url))
    late.settle({ next: () => undefined, release: () => void released++ })
    await waitFor(() => released === 1, "the late plan's release")
  })

  test('an authenticate hook asked before the body (authenticatesBeforeBody) is bounded too', async () => {
    const gate = definePlugin({ name: 'gate', setup: () => ({ authenticate: () => never, authenticatesBeforeBody: true }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [gate], limits: { hook_timeout_ms: 100 } }))
    gateways.push(gw)
    const big = { ...chat, messages: [{ role: 'user', content: 'x'.repeat(20_000) }] }
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(big) })
    await expectInternalError(res)
  })

  test('hook_timeout_ms 0 waits for a hook however long it takes', async () => {
    const late = held<undefined>()
    const slow = definePlugin({ name: 'slow', setup: () => ({ admit: () => late.promise }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [slow], limits: { hook_timeout_ms: 0 } }))
    gateways.push(gw)
    const pending = post(gw.url)
    await Bun.sleep(100)
    late.settle(undefined)
    const res = await pending
    expect(res.status).toBe(200)
    await res.arrayBuffer()
  })
})

test('a describe hook (GET /v1/key) that does not settle is bounded too', async () => {
  const { logger, lines } = capturingLogger('warn')
  const identity = { keyId: 'key_x', userId: 'usr_x', teamId: null, environment: 'dev', models: null, scopes: null, attributes: {} }
  const facts = definePlugin({ name: 'facts', setup: () => ({ authenticate: (req) => void (req.identity = identity), describe: () => new Promise<Record<string, unknown>>(() => {}) }) })
  const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [facts], limits: { hook_timeout_ms: 100 } }), { gateway: { logger } })
  gateways.push(gw)
  const id = await expectInternalError(await fetch(`${gw.url}/v1/key`))
  expect(lines.find((l) => l.request_id === id)).toMatchObject({ msg: 'describe hook failed', plugin: 'facts' })
})

describe("a route hook's plan", () => {
  const leaves = definePlugin({ name: 'leaves', setup: () => ({ route: () => undefined }) })

  test('whose next() does not settle: 500 at hook_timeout_ms naming the plugin whose plan it is', async () => {
    const { logger, lines } = capturingLogger('warn')
    let released = 0
    const router = definePlugin({ name: 'router', setup: () => ({ route: () => ({ next: () => new Promise<undefined>(() => {}), release: () => void released++ }) }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [leaves, router], limits: { hook_timeout_ms: 100 } }), { gateway: { logger } })
    gateways.push(gw)
    const id = await expectInternalError(await post(gw.url))
    expect(lines.find((l) => l.request_id === id)).toMatchObject({ msg: 'route hook failed', plugin: 'router' })
    // Released once its next() has had another hook_timeout_ms to settle.
    await waitFor(() => released === 1, 'the release of the plan')
    await Bun.sleep(150)
    expect(released).toBe(1)
  })

  test('whose next() settles late: the plan is released after it did, so what it picked then is given back too', async () => {
    const order: string[] = []
    const late = held<undefined>()
    const router = definePlugin({
      name: 'router',
      setup: () => ({ route: () => ({ next: () => late.promise.then(() => void order.push('picked')), release: () => void order.push('released') }) }),
    })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [leaves, router], limits: { hook_timeout_ms: 100 } }))
    gateways.push(gw)
    await expectInternalError(await post(gw.url))
    expect(order).toEqual([])
    late.settle(undefined)
    await waitFor(() => order.length === 2, 'the release of the plan')
    expect(order).toEqual(['picked', 'released'])
  })

  test('whose next() throws: 500 naming the plugin, not an unexpected failure of the gateway', async () => {
    const { logger, lines } = capturingLogger('warn')
    const router = definePlugin({
      name: 'router',
      setup: () => ({
        route: async () => ({
          next: () => {
            throw new Error('no region answers')
          },
        }),
      }),
    })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [leaves, router] }), { gateway: { logger } })
    gateways.push(gw)
    const id = await expectInternalError(await post(gw.url))
    expect(lines.find((l) => l.request_id === id)).toMatchObject({ msg: 'route hook failed', plugin: 'router', error: expect.stringContaining('no region answers') })
  })
})
