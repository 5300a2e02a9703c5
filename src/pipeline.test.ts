import { describe, expect, test } from 'bun:test'
import { createLogger } from './lib/logger.ts'
import { roughTokenizer } from './lib/usage.ts'
import { MetricsRegistry } from './metrics.ts'
import { ModelRegistry } from './models.ts'
import { Pipeline, type LoadedPlugin } from './pipeline.ts'
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
