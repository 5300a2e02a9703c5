/**
 * The counting thread (a Bun Worker started by {@link CountPool}). It alone loads tiktoken's
 * WASM and builds the encoders, each once, on the first job that needs it (o200k_base takes
 * about half a second to build): the gateway's event loop never runs BPE over a prompt.
 */
import { Tiktoken } from 'tiktoken/lite'
import type { Endpoint } from '../../src/plugin.ts'
import { DEFAULT_IMAGE_RULE, IMAGE_RULES, MAX_RUN, countBody, cutsAtCase, segmentedEncode, toolConstantsFor, type Encode, type ImageRuleName } from './count.ts'
import type { EncodingName } from './encodings.ts'

/** A job: the prompt of a request body (with the model's image rule, gpt-4o's if absent), or a text. */
export type CountJob =
  | { id: number; op: 'prompt'; encoding: EncodingName; images?: ImageRuleName; endpoint: Endpoint; body: Record<string, unknown> }
  | { id: number; op: 'text'; encoding: EncodingName; text: string }

export type CountReply = { id: number; tokens: number } | { id: number; error: string }

interface Ranks {
  bpe_ranks: string
  special_tokens: Record<string, number>
  pat_str: string
}

/** Imported only when first needed: each ranks file is 0.5–2.3 MB. */
const RANKS: Record<EncodingName, () => Promise<{ default: Ranks }>> = {
  o200k_base: () => import('tiktoken/encoders/o200k_base'),
  cl100k_base: () => import('tiktoken/encoders/cl100k_base'),
  p50k_base: () => import('tiktoken/encoders/p50k_base'),
  p50k_edit: () => import('tiktoken/encoders/p50k_edit'),
  r50k_base: () => import('tiktoken/encoders/r50k_base'),
  gpt2: () => import('tiktoken/encoders/gpt2'),
}

/** One build per encoding for the life of the worker; the promise is kept so two early jobs share it. */
const encoders = new Map<EncodingName, Promise<Encode>>()

function encoderFor(name: EncodingName): Promise<Encode> {
  let encoder = encoders.get(name)
  if (!encoder) {
    const load = RANKS[name]
    if (!load) return Promise.reject(new Error(`unknown encoding "${name}"`))
    encoder = load().then(({ default: ranks }) => {
      const tiktoken = new Tiktoken(ranks.bpe_ranks, ranks.special_tokens, ranks.pat_str)
      // encode_ordinary: special-token text such as <|endoftext|> is counted as the plain text it is.
      return segmentedEncode((text) => (text.length === 0 ? 0 : tiktoken.encode_ordinary(text).length), MAX_RUN, cutsAtCase(name))
    })
    encoders.set(name, encoder)
  }
  return encoder
}

async function run(job: CountJob): Promise<number> {
  const encode = await encoderFor(job.encoding)
  if (job.op === 'text') return encode(job.text)
  return countBody(job.endpoint, job.body, encode, toolConstantsFor(job.encoding), IMAGE_RULES[job.images ?? DEFAULT_IMAGE_RULE])
}

declare const self: Worker

self.onmessage = (event: MessageEvent<CountJob>) => {
  const job = event.data
  run(job).then(
    (tokens) => self.postMessage({ id: job.id, tokens } satisfies CountReply),
    (error: unknown) => self.postMessage({ id: job.id, error: error instanceof Error ? error.message : String(error) } satisfies CountReply),
  )
}
