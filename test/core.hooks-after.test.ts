/**
 * Usage and completion hooks run after the response is written and never hurt a request: a slow
 * completion hook does not delay the client (measured from another process, since the hook blocks
 * this one); a hook that throws, or whose promise fails, or a plan whose release throws, is logged
 * with the plugin's name while the request, its stream and the process go on; an outcome's latency
 * is the request's, not the time the tokenizer took to count a usage the provider did not report.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome, type Usage } from '../src/plugin.ts'
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

async function boot(plugins: unknown[], baseUrl = upstream.url) {
  const { logger, lines } = capturingLogger('warn')
  const gw = await startGateway(upstreamConfig(baseUrl, { plugins }), { gateway: { logger }, env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
  gateways.push(gw)
  return { gw, lines }
}

const post = (gw: TestGateway, body: unknown) =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

async function until(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 3000
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(5)
  }
}

describe('after the response', () => {
  test('a completion hook that blocks for 400 ms does not delay the response (time to headers seen by another process)', async () => {
    const slow = definePlugin({ name: 'slow', setup: () => ({ onComplete: () => Bun.sleepSync(400) }) })
    const { gw } = await boot([slow])
    // Warm up: the first request of a process pays for compiling its path.
    await (await post(gw, chat)).arrayBuffer()
    await Bun.sleep(500)
    const script = `
      const timings = []
      for (const body of [${JSON.stringify(JSON.stringify(chat))}, '{"messages":[]}']) {
        const started = performance.now()
        const res = await fetch(${JSON.stringify(`${gw.url}/v1/chat/completions`)}, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        timings.push(performance.now() - started)
        await res.arrayBuffer()
        await Bun.sleep(600)
      }
      console.log(JSON.stringify(timings))
    `
    const child = Bun.spawn([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' })
    const out = await new Response(child.stdout).text()
    await child.exited
    const [served, refused] = JSON.parse(out) as number[]
    // Before, the hook ran before the response was written: 400 ms or more.
    expect(served!).toBeLessThan(250)
    expect(refused!).toBeLessThan(250)
  })

  test('a completion or usage hook whose promise fails, or that throws, is logged with its plugin; requests go on', async () => {
    const seen: Outcome[] = []
    const failing = definePlugin({
      name: 'flaky-db',
      setup: () => ({
        onUsage: async () => {
          await Bun.sleep(1)
          throw new Error('usage store down')
        },
        onComplete: async () => {
          await Bun.sleep(1)
          throw new Error('database down')
        },
      }),
    })
    const throwing = definePlugin({ name: 'thrower', setup: () => ({ onComplete: () => { throw new Error('boom') } }) })
    const recorder = definePlugin({ name: 'recorder', setup: () => ({ onComplete: (_req, o) => void seen.push(o) }) })
    const { gw, lines } = await boot([failing, throwing, recorder])
    for (let i = 0; i < 2; i++) {
      const res = await post(gw, chat)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    await until(() => seen.length === 2 && lines.filter((l) => l.msg === 'onComplete hook failed').length >= 4, 'the hook failures')
    expect(lines.filter((l) => l.msg === 'onComplete hook failed').map((l) => l.plugin).sort()).toEqual(['flaky-db', 'flaky-db', 'thrower', 'thrower'])
    await until(() => lines.filter((l) => l.msg === 'onUsage hook failed').length === 2, 'the usage hook failures')
    expect(lines.find((l) => l.msg === 'onUsage hook failed')).toMatchObject({ plugin: 'flaky-db', error: 'Error: usage store down' })
  })

  test('a chunk hook that throws: logged with its plugin, the stream goes on to its end', async () => {
    let calls = 0
    const chunky = definePlugin({
      name: 'chunky',
      setup: () => ({
        onStreamChunk: () => {
          if (++calls === 2) throw new Error('bad chunk')
        },
      }),
    })
    const { gw, lines } = await boot([chunky])
    const res = await post(gw, { ...chat, stream: true })
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toContain('[DONE]')
    expect(lines.find((l) => l.msg === 'onStreamChunk hook failed')).toMatchObject({ plugin: 'chunky', error: 'Error: bad chunk' })
  })

  test('a plan whose release throws: the answer is whole, the completion hooks still run, the failure is logged', async () => {
    const seen: Outcome[] = []
    const router = definePlugin({
      name: 'router',
      setup: () => ({
        route: (_req, group) => {
          const target = group.targets[0]!
          let given = false
          return {
            next: () => {
              if (given) return undefined
              given = true
              return { provider: target.provider, model: target.model, key: target.provider.keys[0]!, group: group.name }
            },
            release: () => {
              throw new Error('slot table gone')
            },
          }
        },
        onComplete: (_req, o) => void seen.push(o),
      }),
    })
    const { gw, lines } = await boot([router])
    const res = await post(gw, chat)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { choices: unknown[] }).choices.length).toBe(1)
    await until(() => seen.length === 1, 'the completion')
    expect(seen[0]).toMatchObject({ status: 200, aborted: false })
    expect(lines.some((l) => l.msg === 'route plan release failed')).toBe(true)
  })

  test("an outcome's latency leaves out the time the tokenizer took to count a usage the provider did not report", async () => {
    const bare = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: () => Response.json({ id: 'x', object: 'chat.completion', model: 'mock-gpt', choices: [{ index: 0, message: { role: 'assistant', content: 'hello there' }, finish_reason: 'stop' }] }),
    })
    try {
      const seen: Array<{ outcome: Outcome; usage: Usage | undefined }> = []
      const slowCounter = definePlugin({
        name: 'slow-counter',
        setup: ({ services }) => {
          const inner = services.tokenizer
          services.tokenizer = {
            ...inner,
            name: 'slow',
            countPrompt: async (...args) => {
              await Bun.sleep(600)
              return inner.countPrompt(...args)
            },
          }
          return { onComplete: (req, outcome) => void seen.push({ outcome, usage: req.usage }) }
        },
      })
      const { gw } = await boot([slowCounter], `http://127.0.0.1:${bare.port}/v1`)
      const started = performance.now()
      const res = await post(gw, chat)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      const clientSaw = performance.now() - started
      await until(() => seen.length === 1, 'the completion')
      expect(seen[0]!.usage?.source).toBe('estimated')
      expect(seen[0]!.outcome.latencyMs).toBeLessThan(clientSaw + 50)
      expect(seen[0]!.outcome.latencyMs).toBeLessThan(500)
    } finally {
      bare.stop(true)
    }
  })
})

describe('at shutdown', () => {
  test('an async completion hook still running is waited for (a little) before the plugins close', async () => {
    const order: string[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let started = false
    const billing = definePlugin({
      name: 'billing',
      setup: () => ({
        onComplete: async () => {
          started = true
          await gate
          order.push('usage sent')
        },
        close: () => void order.push('closed'),
      }),
    })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [billing] }), { gateway: { logger: capturingLogger('warn').logger } })
    const res = await post(gw, chat)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    await until(() => started, 'the completion hook')
    const closing = gw.close()
    await Bun.sleep(50)
    expect(order).toEqual([])
    release()
    await closing
    expect(order).toEqual(['usage sent', 'closed'])
  })
})
