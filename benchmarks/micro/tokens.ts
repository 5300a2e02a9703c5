/**
 * Exact prompt counting in process: a ~4 KB chat prompt through the tokens plugin's rules
 * (plugins/tokens/count.ts) with tiktoken's o200k_base and cl100k_base encoders, against the
 * rough estimate the gateway uses without the plugin (the baseline). The cookbook's reference
 * counts are checked before anything is measured.
 *
 *   bun run benchmarks/micro/tokens.ts
 *
 * What this says about the gateway: exact counting costs about this much CPU per request, on
 * the counting worker's thread (never the event loop); see tokens-stall.ts for the loop itself.
 */
import { bench, do_not_optimize, run, summary } from 'mitata'
import { emitBenchJson, fromMitata, resultNamed, target } from './lib/bench-json.ts'
import { Tiktoken } from 'tiktoken/lite'
import { roughPromptTokens } from '../../src/lib/usage.ts'
import { CL100K_TOOLS, O200K_TOOLS, countBody, segmentedEncode, type Encode } from '../../plugins/tokens/count.ts'

interface Ranks {
  bpe_ranks: string
  special_tokens: Record<string, number>
  pat_str: string
}
const build = (r: Ranks): Encode => {
  const t = new Tiktoken(r.bpe_ranks, r.special_tokens, r.pat_str)
  return segmentedEncode((text) => t.encode_ordinary(text).length)
}
let started = performance.now()
const o200k = build((await import('tiktoken/encoders/o200k_base')).default)
const o200kBuildMs = performance.now() - started
started = performance.now()
const cl100k = build((await import('tiktoken/encoders/cl100k_base')).default)
const cl100kBuildMs = performance.now() - started
console.log(`encoder build (once per worker): o200k_base ${o200kBuildMs.toFixed(0)} ms, cl100k_base ${cl100kBuildMs.toFixed(0)} ms`)

// Correctness first: the cookbook's published counts.
const cookbook = {
  messages: [
    { role: 'system', content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.' },
    { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
    { role: 'system', name: 'example_assistant', content: 'Things working well together will increase revenue.' },
    { role: 'system', name: 'example_user', content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage." },
    { role: 'system', name: 'example_assistant', content: "Let's talk later when we're less busy about how to do better." },
    { role: 'user', content: "This late pivot means we don't have time to boil the ocean for the client deliverable." },
  ],
}
const o = countBody('chat.completions', cookbook, o200k, O200K_TOOLS)
const c = countBody('chat.completions', cookbook, cl100k, CL100K_TOOLS)
if (o !== 124 || c !== 129) throw new Error(`reference counts wrong: o200k ${o} (want 124), cl100k ${c} (want 129)`)

// A fixed ~4 KB chat prompt: a system line and a user turn of prose.
const SENTENCE = 'Summarise the following notes about the quarterly release in three bullet points, keeping names and figures exact. '
const body4k = {
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: 'You are a concise assistant.' },
    { role: 'user', content: SENTENCE.repeat(Math.ceil(4096 / SENTENCE.length)).slice(0, 4096) },
  ],
}
const tokens4k = { o200k: countBody('chat.completions', body4k, o200k, O200K_TOOLS), cl100k: countBody('chat.completions', body4k, cl100k, CL100K_TOOLS) }
if (!(tokens4k.o200k > 500 && tokens4k.cl100k > 500)) throw new Error(`4 KB prompt counted implausibly: ${JSON.stringify(tokens4k)}`)
console.log(`4 KB prompt: o200k_base ${tokens4k.o200k} tokens, cl100k_base ${tokens4k.cl100k} tokens, estimate ${roughPromptTokens(body4k)}`)

summary(() => {
  bench('4 KB chat prompt, o200k_base (exact)', () => {
    do_not_optimize(countBody('chat.completions', body4k, o200k, O200K_TOOLS))
  })
  bench('4 KB chat prompt, cl100k_base (exact)', () => {
    do_not_optimize(countBody('chat.completions', body4k, cl100k, CL100K_TOOLS))
  })
  bench('4 KB chat prompt, 4 characters a token (baseline)', () => {
    do_not_optimize(roughPromptTokens(body4k))
  })
})

const results = fromMitata(await run())
const exact = resultNamed(results, '4 KB chat prompt, o200k_base (exact)').value
emitBenchJson({
  bench: 'tokens',
  verified: ["the cookbook's chat example counts 124 (o200k_base) and 129 (cl100k_base)", `the 4 KB prompt counts ${tokens4k.o200k} (o200k_base) and ${tokens4k.cl100k} (cl100k_base) tokens`],
  results,
  // OpenAI's figure for tiktoken is about 0.3 ms per KB; 0.5 leaves room for a slow machine.
  targets: [target('exact count of a 4 KB chat prompt (o200k_base), per KB', exact / 4 / 1e6, 'ms', '<', 0.5)],
  notes: [`encoder build, once per worker: o200k_base ${o200kBuildMs.toFixed(0)} ms, cl100k_base ${cl100kBuildMs.toFixed(0)} ms`],
})
