/**
 * The counting pool with its real worker: lazy start, one encoder build per worker, a bounded
 * queue, a timeout that replaces the worker.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { GatewayError } from '../../src/errors.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { CountPool } from './pool.ts'

const logger = createLogger('silent')
const pools: CountPool[] = []
const pool = (options: Partial<ConstructorParameters<typeof CountPool>[0]> = {}) => {
  const p = new CountPool({ size: 1, maxPending: 100, timeoutMs: 30_000, logger, ...options })
  pools.push(p)
  return p
}
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close()
})

const COOKBOOK = {
  messages: [
    { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
    { role: 'user', content: "What's the weather like in San Francisco?" },
  ],
}

describe('CountPool', () => {
  test('starts no worker until the first count, then counts prompts and texts in it', async () => {
    const p = pool()
    expect(p.running).toBe(0)
    expect(p.started).toBe(0)
    const [prompt, text] = await Promise.all([
      p.run({ op: 'prompt', encoding: 'o200k_base', endpoint: 'chat.completions', body: COOKBOOK }),
      p.run({ op: 'text', encoding: 'o200k_base', text: 'tiktoken is great!' }),
    ])
    expect(text).toBe(6)
    expect(prompt).toBeGreaterThan(20)
    expect(p.running).toBe(1)
    expect(p.pending).toBe(0)
  })

  test('the encoder is built once per worker: later counts are fast', async () => {
    const p = pool()
    await p.run({ op: 'text', encoding: 'cl100k_base', text: 'warm up' })
    const started = performance.now()
    for (let i = 0; i < 50; i++) await p.run({ op: 'text', encoding: 'cl100k_base', text: `count number ${i}` })
    expect((performance.now() - started) / 50).toBeLessThan(20)
  })

  test('spreads jobs over more workers when the running ones are busy, up to its size', async () => {
    const p = pool({ size: 2 })
    await Promise.all(Array.from({ length: 4 }, (_, i) => p.run({ op: 'text', encoding: 'cl100k_base', text: `job ${i}` })))
    expect(p.started).toBe(2)
  })

  test('warm starts every worker and builds the encoders in each, so no later count waits for a build', async () => {
    const p = pool({ size: 2 })
    p.warm(['cl100k_base'])
    expect(p.running).toBe(2)
    while (p.pending > 0) await Bun.sleep(10)
    const started = performance.now()
    await Promise.all([p.run({ op: 'text', encoding: 'cl100k_base', text: 'a' }), p.run({ op: 'text', encoding: 'cl100k_base', text: 'b' })])
    expect(performance.now() - started).toBeLessThan(50)
    expect(p.started).toBe(2)
  })

  test('a full queue refuses at once with rate_limit_exceeded and a Retry-After', async () => {
    const p = pool({ maxPending: 2 })
    const first = p.run({ op: 'text', encoding: 'cl100k_base', text: 'one' })
    const second = p.run({ op: 'text', encoding: 'cl100k_base', text: 'two' })
    const third = p.run({ op: 'text', encoding: 'cl100k_base', text: 'three' }).catch((e: unknown) => e)
    const refused = await third
    expect(refused).toBeInstanceOf(GatewayError)
    expect((refused as GatewayError).code).toBe('rate_limit_exceeded')
    expect((refused as GatewayError).headers?.['retry-after']).toBe('1')
    expect(await first).toBe(1)
    expect(await second).toBe(1)
  })

  test('a count that overruns its timeout fails, its worker is replaced, and the next count works', async () => {
    // Building the o200k encoder alone takes longer than 50 ms.
    const p = pool({ timeoutMs: 50 })
    const error = await p.run({ op: 'text', encoding: 'o200k_base', text: 'slow start' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(GatewayError)
    expect((error as GatewayError).message).toContain('longer than 50 ms')
    expect(p.running).toBe(0)
    expect(p.pending).toBe(0)
    const patient = pool({ timeoutMs: 30_000 })
    expect(await patient.run({ op: 'text', encoding: 'o200k_base', text: 'tiktoken is great!' })).toBe(6)
  })

  test('a worker that exits fails its counts at once (not at the timeout) and a new one takes the next count', async () => {
    // A stand-in worker: exits on the text "exit", else answers the text's length.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pool-'))
    const script = join(dir, 'exiting-worker.ts')
    writeFileSync(
      script,
      'declare const self: Worker\nself.onmessage = (e: MessageEvent) => { if (e.data.text === "exit") process.exit(1); self.postMessage({ id: e.data.id, tokens: e.data.text.length }) }\n',
    )
    const p = pool({ script: pathToFileURL(script), timeoutMs: 20_000 })
    expect(await p.run({ op: 'text', encoding: 'o200k_base', text: 'abc' })).toBe(3)
    const queued = p.run({ op: 'text', encoding: 'o200k_base', text: 'queued' }).catch((e: unknown) => e)
    const error = await p.run({ op: 'text', encoding: 'o200k_base', text: 'exit' }).catch((e: unknown) => e)
    // The count queued after it on the same worker answered first (its worker was alive then).
    expect(await queued).toBe(6)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toContain('exited')
    expect(p.running).toBe(0)
    expect(p.pending).toBe(0)
    expect(await p.run({ op: 'text', encoding: 'o200k_base', text: 'again' })).toBe(5)
    expect(p.started).toBe(2)
  }, 30_000)

  test('under load a count’s timeout runs from when its worker starts it, not while it waits its turn', async () => {
    // A stand-in worker that spends the given ms on each count (as a long prompt would), then answers.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pool-'))
    const script = join(dir, 'busy-worker.ts')
    writeFileSync(
      script,
      'declare const self: Worker\nself.onmessage = (e: MessageEvent) => { const end = Date.now() + Number(e.data.text); while (Date.now() < end) {} self.postMessage({ id: e.data.id, tokens: 1 }) }\n',
    )
    // 12 counts of 200 ms each queued at once on one worker: 2.4 s in all, each well within 1.5 s.
    const p = pool({ script: pathToFileURL(script), timeoutMs: 1500 })
    const results = await Promise.all(Array.from({ length: 12 }, () => p.run({ op: 'text', encoding: 'o200k_base', text: '200' }).catch((e: unknown) => String(e))))
    expect(results).toEqual(Array.from({ length: 12 }, () => 1))
    expect(p.started).toBe(1)
  }, 30_000)

  test('closing fails what is pending and refuses new counts', async () => {
    const p = pool()
    const pending = p.run({ op: 'text', encoding: 'o200k_base', text: 'never answered' }).catch((e: unknown) => e)
    await p.close()
    expect(await pending).toBeInstanceOf(GatewayError)
    expect(await p.run({ op: 'text', encoding: 'o200k_base', text: 'x' }).catch((e: unknown) => e)).toBeInstanceOf(GatewayError)
  })
})
