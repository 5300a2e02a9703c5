import { describe, expect, test } from 'bun:test'
import { createLogger } from './lib/logger.ts'
import { roughTokenizer } from './lib/usage.ts'
import { MetricsRegistry } from './metrics.ts'
import { ModelRegistry } from './models.ts'
import { CallGuard, CallList, Pipeline, type LoadedPlugin } from './pipeline.ts'
import type { PluginHooks } from './plugin.ts'
import { UpstreamHealth } from './upstream-health.ts'

/** A pipeline over the given hooks, whose client-address lookups are counted. */
function pipelineWith(hooks: PluginHooks[]) {
  const asked: Request[] = []
  const plugins: LoadedPlugin[] = hooks.map((h, i) => ({ name: `p${i}`, hooks: h }))
  const pipeline = new Pipeline({
    plugins,
    models: new ModelRegistry([], []),
    logger: createLogger('silent'),
    services: { tokenizer: roughTokenizer, upstreams: new UpstreamHealth(new MetricsRegistry()) },
    clientAddress: (request) => {
      asked.push(request)
      return '127.0.0.1'
    },
  })
  const open = () => pipeline.createRequest('chat.completions', new Request('http://gateway/v1/chat/completions', { method: 'POST' }), 'req-1')
  return { asked, open }
}

describe('the client address', () => {
  test('is asked for while the request is open when a completion hook may read it', () => {
    const { asked, open } = pipelineWith([{ onComplete: () => {} }])
    const req = open()
    expect(asked.length).toBe(1)
    expect(req.clientIp).toBe('127.0.0.1')
    expect(asked.length).toBe(1)
  })

  test('is not asked for when every completion hook says it never reads it, until a hook reads it', () => {
    const { asked, open } = pipelineWith([{ onComplete: () => {}, readsClientIpOnComplete: false }, { admit: () => {} }])
    const req = open()
    expect(asked.length).toBe(0)
    // An earlier hook reading it (while the request is open) asks once, and the answer is kept.
    expect(req.clientIp).toBe('127.0.0.1')
    expect(req.clientIp).toBe('127.0.0.1')
    expect(asked.length).toBe(1)
  })

  test('one completion hook that may read it is enough to ask for it up front', () => {
    const { asked, open } = pipelineWith([{ onComplete: () => {}, readsClientIpOnComplete: false }, { onComplete: () => {} }])
    open()
    expect(asked.length).toBe(1)
  })

  test('a plugin without a completion hook does not make it asked for', () => {
    const { asked, open } = pipelineWith([{ admit: () => {}, readsClientIpOnComplete: true }])
    open()
    expect(asked.length).toBe(0)
  })
})

describe('CallList (the calls a shutdown past its grace aborts)', () => {
  test('abortAll reaches every call still in the list, and none taken out of it, wherever it stood', () => {
    const client = new AbortController().signal
    const calls = new CallList()
    const guards = Array.from({ length: 5 }, () => new CallGuard(client))
    for (const guard of guards) calls.add(guard)
    // The newest (the list's head), one in the middle and the oldest (its tail) leave.
    for (const i of [4, 2, 0]) calls.remove(guards[i]!)
    calls.remove(guards[2]!) // twice: nothing changes
    calls.abortAll(new DOMException('the gateway is shutting down', 'AbortError'))
    expect(guards.map((g) => g.controller.signal.aborted)).toEqual([false, true, false, true, false])
    for (const guard of guards) guard.detach()
  })
})
