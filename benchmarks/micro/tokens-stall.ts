/**
 * Does exact counting stall the gateway? Latency of small requests through a real gateway
 * (listening on 127.0.0.1, the mock upstream as provider, `plugins: ["tokens"]`), sequentially,
 * in three fixed scenarios:
 *
 *   idle                      nothing else happening (the baseline)
 *   + 1 MB counts (worker)    a client keeps POSTing a 1 MB prompt to /v1/tokens/count
 *   + 1 MB counts (main)      the same 1 MB counted with tiktoken on the main thread — what the
 *                             gateway would do without its worker (for contrast only)
 *
 * Two small requests are measured: a chat completion (provider usage, never touches the
 * counter: shows the event loop) and a small /v1/tokens/count (shares the counting worker
 * with the 1 MB counts: shows the queue; run with --workers 2 to give it its own thread).
 *
 *   bun run benchmarks/micro/tokens-stall.ts [--seconds 3] [--workers 1]
 */
import { parseArgs } from 'node:util'
import { Tiktoken } from 'tiktoken/lite'
import { loadConfig } from '../../src/config/load.ts'
import { createGateway } from '../../src/server.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { startMockUpstream } from '../../test/fixtures/mock-upstream.ts'
import { emitBenchJson, target, type MicroResult } from './lib/bench-json.ts'

const { values } = parseArgs({ args: Bun.argv.slice(2), options: { seconds: { type: 'string', default: '3' }, workers: { type: 'string', default: '1' } } })
// Under `bun run bench --quick` the suite sets BENCH_QUICK: one second per scenario.
const seconds = process.env.BENCH_QUICK === '1' ? 1 : Number(values.seconds)
const workers = Number(values.workers)

const mock = await startMockUpstream()
const config = await loadConfig({
  config: {
    providers: [{ id: 'mock', type: 'openai-compatible', baseUrl: mock.url, keys: [{ id: 'm1', secret: 'sk-bench-0123456789' }] }],
    models: [{ name: 'gpt-4o', targets: [{ provider: 'mock', model: 'mock-gpt' }] }],
    plugins: [{ use: 'tokens', options: { workers, preload: ['o200k_base'] } }],
  },
  env: { DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'error', SLUICE_ADMIN_KEY: 'sluice-bench-admin-key-0123456789abcdef' },
})
const gateway = await createGateway(config, { logger: createLogger('error') })
const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
const base = `http://127.0.0.1:${server.port}`
// `preload` builds the encoder in every worker in the background; measure once that is done.
const tokenStats = () => gateway.plugins.find((p) => p.name === 'tokens')!.hooks.stats!()
while ((tokenStats().pending ?? 0) > 0) await Bun.sleep(20)

const post = (path: string, body: string) => fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
const SMALL_CHAT = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Say hello in five words.' }], max_tokens: 8 })
const SMALL_COUNT = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Say hello in five words.' }] })
const words = 'the quick brown fox jumps over the lazy dog while a gateway counts its tokens'.split(' ')
let big = ''
for (let i = 0; big.length < 1_000_000; i++) big += words[i % words.length] + (i % 19 === 18 ? '.\n' : ' ')
const BIG_COUNT = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: big }] })

// Correctness and warm-up: both paths answer, the worker and its encoder are built.
const chatCheck = (await (await post('/v1/chat/completions', SMALL_CHAT)).json()) as { choices?: unknown[] }
if (!Array.isArray(chatCheck.choices)) throw new Error('the chat through the gateway did not answer a completion')
const bigCheck = (await (await post('/v1/tokens/count', BIG_COUNT)).json()) as { prompt_tokens?: number; encoding?: string }
if (bigCheck.encoding !== 'o200k_base' || !(bigCheck.prompt_tokens! > 200_000)) throw new Error(`unexpected 1 MB count: ${JSON.stringify(bigCheck)}`)
console.log(`1 MB prompt: ${bigCheck.prompt_tokens} tokens (o200k_base)`)

const ranks = (await import('tiktoken/encoders/o200k_base')).default
const mainThread = new Tiktoken(ranks.bpe_ranks, ranks.special_tokens, ranks.pat_str)

/** Latencies (ms) of sequential small requests for `seconds`, while `background` runs. */
async function measure(path: string, body: string, background: 'none' | 'worker' | 'main'): Promise<number[]> {
  let stop = false
  let bigDone = 0
  const loop = (async () => {
    while (!stop) {
      if (background === 'worker') await (await post('/v1/tokens/count', BIG_COUNT)).text()
      else if (background === 'main') {
        mainThread.encode_ordinary(big)
        await Bun.sleep(0)
      } else break
      bigDone++
    }
  })()
  const latencies: number[] = []
  const end = performance.now() + seconds * 1000
  while (performance.now() < end) {
    const t0 = performance.now()
    const res = await post(path, body)
    await res.text()
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}`)
    latencies.push(performance.now() - t0)
  }
  stop = true
  await loop
  if (background !== 'none' && bigDone === 0) throw new Error('no 1 MB count finished during the measurement')
  return latencies
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const row = (label: string, xs: number[]) =>
  `| ${label.padEnd(50)} | ${String(xs.length).padStart(6)} | ${pct(xs, 50).toFixed(2).padStart(7)} | ${pct(xs, 99).toFixed(2).padStart(7)} | ${Math.max(...xs).toFixed(2).padStart(8)} |`

const results: MicroResult[] = []
const record = (label: string, xs: number[]) => {
  results.push({ name: `${label}, latency`, unit: 'ns/op', value: pct(xs, 50) * 1e6, p99: pct(xs, 99) * 1e6, min: Math.min(...xs) * 1e6, max: Math.max(...xs) * 1e6 })
  console.log(row(label, xs))
  return xs
}
const p50 = new Map<string, number>()

console.log(`\nworkers: ${workers}, ${seconds} s per scenario, sequential requests, latency in ms\n`)
console.log(`| ${'scenario'.padEnd(50)} | ${'n'.padStart(6)} | ${'p50'.padStart(7)} | ${'p99'.padStart(7)} | ${'max'.padStart(8)} |`)
console.log(`|${'-'.repeat(52)}|${'-'.repeat(8)}|${'-'.repeat(9)}|${'-'.repeat(9)}|${'-'.repeat(10)}|`)
for (const [path, body, name] of [
  ['/v1/chat/completions', SMALL_CHAT, 'small chat'],
  ['/v1/tokens/count', SMALL_COUNT, 'small count'],
] as const) {
  p50.set(`${name}, idle`, pct(record(`${name}, idle`, await measure(path, body, 'none')), 50))
  p50.set(`${name}, worker`, pct(record(`${name}, + 1 MB counts (worker)`, await measure(path, body, 'worker')), 50))
  record(`${name}, + 1 MB counts (main thread, contrast)`, await measure(path, body, 'main'))
}

await gateway.close()
await mock.stop()
const chatRise = p50.get('small chat, worker')! - p50.get('small chat, idle')!
emitBenchJson({
  bench: 'tokens-stall',
  verified: ['a small chat through the gateway answers a completion', `a 1 MB prompt counts ${bigCheck.prompt_tokens} tokens (o200k_base) through /v1/tokens/count`, 'a 1 MB count finished during each loaded scenario'],
  results,
  targets: [target('small chat p50 rise while 1 MB prompts are counted in the worker', chatRise, 'ms', '<', 1)],
  notes: [
    `workers: ${workers}. The main-thread rows show what counting on the event loop would cost; the gateway never does it.`,
    workers === 1 ? 'With one worker a small /v1/tokens/count waits behind a 1 MB count (same thread); --workers 2 gives it its own.' : 'Two workers: a small count runs beside the 1 MB one.',
  ],
})
