/**
 * SSE parsing on the stream path: what the gateway does to every upstream read of a stream
 * (src/pipeline.ts, tapStream): decode the bytes, split events with SseSplitter, take each
 * event's data with eventData, and parse JSON only for the chunk that carries usage.
 *
 * The stream is a realistic OpenAI chat stream: a role chunk, 300 content chunks (words,
 * punctuation, escapes, non-ASCII), a finish chunk, a usage chunk with `choices: []`, a
 * keep-alive comment and `data: [DONE]`, about 60 KB, cut into network reads three ways:
 * one frame per read (what an upstream writing frame by frame gives), random reads of 1 B to
 * 1.4 KB that split frames and multi-byte characters, and the same with CRLF line ends.
 *
 * Correctness first: every way of cutting must give back exactly the frames, payloads and
 * usage it was built from. Baselines in the same run: decoding the bytes alone (the least any
 * parser must do), and parsing the JSON of every frame (what the gateway avoids).
 *
 *   bun run benchmarks/micro/sse.ts
 */
import { bench, do_not_optimize, run, summary } from 'mitata'
import { SseSplitter, eventData } from '../../src/lib/sse.ts'
import { emitBenchJson, fromMitata, resultNamed, type MicroResult } from './lib/bench-json.ts'

const CONTENT_CHUNKS = 300
const WORDS = [' The', ' release', ' notes', ',', ' in', ' short', ':', ' faster', ' admission', ' (', '≈', '2', '×', ')', ' and', ' “quoted”', ' text', '\n', '-', ' café', ' naïve', ' 🚀', '.', ' "JSON"', ' back\\slash', '\t']

/** Deterministic PRNG (mulberry32), so every run cuts the stream the same way. */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const head = { id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT', object: 'chat.completion.chunk', created: 1741569952, model: 'gpt-4o-2024-08-06', service_tier: 'default', system_fingerprint: 'fp_f9f4fb6dbf' }
const usage = {
  prompt_tokens: 1117,
  completion_tokens: CONTENT_CHUNKS,
  total_tokens: 1117 + CONTENT_CHUNKS,
  prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
}

/** The JSON payloads in order, then the frames as the upstream sends them. */
const payloads: string[] = [JSON.stringify({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }], usage: null })]
for (let i = 0; i < CONTENT_CHUNKS; i++) {
  payloads.push(JSON.stringify({ ...head, choices: [{ index: 0, delta: { content: WORDS[i % WORDS.length] }, logprobs: null, finish_reason: null }], usage: null }))
}
payloads.push(JSON.stringify({ ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], usage: null }))
payloads.push(JSON.stringify({ ...head, choices: [], usage }))
const frames = payloads.map((p) => `data: ${p}\n\n`)
// Some upstreams send comments as keep-alives; they are events without data.
frames.splice(150, 0, ': keep-alive\n\n')
frames.push('data: [DONE]\n\n')
const STREAM = frames.join('')
const EXPECTED_TEXT = payloads.slice(1, 1 + CONTENT_CHUNKS).map((p) => (JSON.parse(p) as { choices: [{ delta: { content: string } }] }).choices[0].delta.content).join('')

const encoder = new TextEncoder()
const bytes = encoder.encode(STREAM)

/** Cuts `data` into reads of 1 to `max` bytes, wherever they fall (inside frames and characters too). */
function randomReads(data: Uint8Array, max: number, seed: number): Uint8Array[] {
  const random = prng(seed)
  const reads: Uint8Array[] = []
  for (let at = 0; at < data.length; ) {
    const size = 1 + Math.floor(random() * max)
    reads.push(data.subarray(at, at + size))
    at += size
  }
  return reads
}

const READS = {
  'one frame per read': frames.map((f) => encoder.encode(f)),
  'random reads (1 B–1.4 KB)': randomReads(bytes, 1400, 7),
  'random reads, CRLF': randomReads(encoder.encode(STREAM.replaceAll('\n', '\r\n')), 1400, 11),
} as const

/** What the gateway's stream tap does with one stream's reads; returns what it saw. */
function tap(reads: readonly Uint8Array[]): { events: number; data: number; usage: unknown; done: boolean } {
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()
  let events = 0
  let data = 0
  let found: unknown = null
  let done = false
  const inspect = (event: string): void => {
    events++
    const d = eventData(event)
    if (d === null) return
    if (d === '[DONE]') {
      done = true
      return
    }
    data++
    // As the pipeline does: parse only the chunk that carries usage; most carry `"usage":null`.
    if (d.includes('"usage":{')) found = (JSON.parse(d) as { usage: unknown }).usage
  }
  for (const read of reads) for (const event of splitter.push(decoder.decode(read, { stream: true }))) inspect(event)
  const rest = splitter.flush()
  if (rest !== null) inspect(rest)
  return { events, data, usage: found, done }
}

/** Correctness first: every cut gives back exactly the frames, payloads and usage. */
const verified: string[] = []
const notes: string[] = []
for (const [name, reads] of Object.entries(READS)) {
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()
  const seen: string[] = []
  for (const read of reads) seen.push(...splitter.push(decoder.decode(read, { stream: true })))
  if (splitter.flush() !== null) throw new Error(`${name}: bytes left over after the last frame`)
  const expectedEvents = frames.map((f) => f.slice(0, -2))
  // A read that ends between \r and \n leaves the \n at the start of the next event (src/lib/sse.ts
  // normalises each buffer on its own). The data is unaffected, which is what is checked for CRLF;
  // how often it happened is printed, since a rewritten stream passes that newline on.
  const crlf = name.includes('CRLF')
  const stray = seen.filter((e) => e.startsWith('\n')).length
  const events = crlf ? seen.map((e) => e.replace(/^\n+/, '')).filter((e) => e !== '') : seen
  if (events.length !== expectedEvents.length) throw new Error(`${name}: ${events.length} events, expected ${expectedEvents.length}`)
  for (let i = 0; i < events.length; i++) if (events[i] !== expectedEvents[i]) throw new Error(`${name}: event ${i} differs: ${JSON.stringify(events[i]!.slice(0, 80))}`)
  if (crlf && stray > 0) notes.push(`${name}: ${stray} events began with a stray \\n (a read ended between \\r and \\n); their data is intact`)
  const datas = seen.map(eventData).filter((d): d is string => d !== null)
  if (datas.length !== payloads.length + 1 || datas.at(-1) !== '[DONE]') throw new Error(`${name}: wrong data payloads`)
  for (let i = 0; i < payloads.length; i++) if (datas[i] !== payloads[i]) throw new Error(`${name}: payload ${i} differs`)
  const text = datas
    .slice(1, 1 + CONTENT_CHUNKS)
    .map((d) => (JSON.parse(d) as { choices: [{ delta: { content: string } }] }).choices[0].delta.content)
    .join('')
  if (text !== EXPECTED_TEXT) throw new Error(`${name}: the content does not reassemble`)
  const tapped = tap(reads)
  if ((!crlf && tapped.events !== frames.length) || tapped.data !== payloads.length || !tapped.done || JSON.stringify(tapped.usage) !== JSON.stringify(usage)) {
    throw new Error(`${name}: the tap saw ${JSON.stringify({ ...tapped, usage: tapped.usage !== null })}`)
  }
  verified.push(`${name} (${reads.length} reads): ${frames.length} events, ${payloads.length} payloads byte for byte, the content, the usage and [DONE]`)
}
// A multi-line data event and the `data:` form without a space (both allowed by the SSE spec).
if (eventData('event: x\ndata: {"a":\ndata:1}') !== '{"a":\n1}') throw new Error('multi-line data event')
verified.push('multi-line data and `data:` without a space join as the spec says')
for (const v of verified) console.log(`verified: ${v}`)
for (const n of notes) console.log(`note: ${n}`)
console.log(`stream: ${frames.length} frames, ${bytes.length.toLocaleString('en-US')} bytes`)

const random = READS['random reads (1 B–1.4 KB)']
summary(() => {
  bench('tap a stream: one frame per read', () => do_not_optimize(tap(READS['one frame per read'])))
  bench('tap a stream: random reads', () => do_not_optimize(tap(random)))
  bench('tap a stream: random reads, CRLF', () => do_not_optimize(tap(READS['random reads, CRLF'])))
  bench('baseline: decode the bytes only', () => {
    const decoder = new TextDecoder()
    let n = 0
    for (const read of random) n += decoder.decode(read, { stream: true }).length
    do_not_optimize(n)
  })
  bench('naive: split + JSON.parse every frame', () => {
    const decoder = new TextDecoder()
    const splitter = new SseSplitter()
    let n = 0
    for (const read of random) {
      for (const event of splitter.push(decoder.decode(read, { stream: true }))) {
        const d = eventData(event)
        if (d !== null && d !== '[DONE]') n += (JSON.parse(d) as { choices: unknown[] }).choices.length
      }
    }
    do_not_optimize(n)
  })
})

const results = fromMitata(await run())
// Per frame, the figure that compares with other per-request costs.
const perFrame: MicroResult[] = ['tap a stream: one frame per read', 'tap a stream: random reads'].map((name) => ({
  name: `${name}, per frame`,
  unit: 'ns/op',
  value: resultNamed(results, name).value / frames.length,
}))
emitBenchJson({ bench: 'sse', verified, results: [...results, ...perFrame], targets: [], notes })
