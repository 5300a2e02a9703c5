/**
 * The quota plugin through a real listening gateway (auth + quota in front of mock
 * upstreams), twice: with the quota in process, and in Redis (REDIS_URL, keys under a hash
 * tag unique to this run, deleted afterwards). What a client sees: 429s that name the scope
 * and measure, Retry-After, OpenAI's x-ratelimit-* headers, budgets that renew at UTC
 * midnight, leases for requests in flight, reservations settled to real usage.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import {
  PRICING,
  createKey,
  createTeam,
  createUser,
  eventually,
  expectQuotaError,
  quotaConfig,
  rateLimitHeaders,
  startQuotaGateway,
  type QuotaGateway,
  quotaBackends,
} from './support/quota.ts'

// bun test's default is 5 s per test (bunfig cannot change it); these start servers and wait on real time.
setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.test.ts')

let upstream: MockUpstream
let streamUpstream: MockUpstream

beforeAll(async () => {
  upstream = await startMockUpstream()
  // 16 words, one chunk each, 150 ms apart: a stream that lasts over 2 s, long enough to cut.
  streamUpstream = await startMockUpstream({ chunkDelayMs: 150 })
})
afterAll(async () => {
  await upstream?.stop()
  await streamUpstream?.stop()
})

const SLOW_MS = 600
const SLOW_MODEL = `mock-slow-${SLOW_MS}`

const backends = quotaBackends(redisUrl)

for (const backend of backends) {
  describe.skipIf(!backend.available)(`quota (${backend.name})`, () => {
    const tag = uniqueTestName('quota')
    let gw: QuotaGateway

    beforeAll(async () => {
      gw = await startQuotaGateway(quotaConfig(upstream.url, { streamUpstreamUrl: streamUpstream.url, quota: { hash_tag: tag }, slowMs: SLOW_MS }), {
        redisUrl: backend.redis,
      })
    })
    afterAll(async () => {
      await gw?.close()
      if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
    })

    describe('requests per minute', () => {
      test('admits rpm requests with x-ratelimit-*-requests headers counting down, then 429 rate_limit_exceeded naming key and requests, with Retry-After', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { rpm: 3 } })
        const seen = []
        for (let i = 0; i < 3; i++) {
          const res = await gw.chat(key)
          expect(res.status).toBe(200)
          seen.push(rateLimitHeaders(res, 'requests'))
          await res.arrayBuffer()
        }
        expect(seen.map((h) => [h?.limit, h?.remaining])).toEqual([
          [3, 2],
          [3, 1],
          [3, 0],
        ])
        // Reset: time until the bucket is full again, one request per 20 s.
        expect(seen[0]!.resetMs).toBeGreaterThan(19_000)
        expect(seen[0]!.resetMs).toBeLessThanOrEqual(20_000)
        expect(seen[2]!.resetMs).toBeGreaterThan(59_000)
        expect(seen[2]!.resetMs).toBeLessThanOrEqual(60_000)

        const refused = await gw.chat(key)
        const retryAfter = refused.headers.get('retry-after')
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain(`key ${id}`)
        expect(message).toContain('requests per minute')
        expect(message).toContain('3 per minute')
        // The next token comes 20 s after the first admission, minus the little time this test took.
        expect(retryAfter).toMatch(/^\d+$/)
        expect(Number(retryAfter)).toBeGreaterThanOrEqual(18)
        expect(Number(retryAfter)).toBeLessThanOrEqual(20)
        expect(message).toContain(`Retry after ${retryAfter} s`)
        // The refusal carries the headers too, with nothing remaining.
        expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0')
        expect(upstream.stats.requests).toBeGreaterThan(0)
      })

      test('a refused request does not reach the upstream', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { rpm: 1 } })
        expect((await gw.chat(key)).status).toBe(200)
        const before = upstream.stats.requests
        const refused = await gw.chat(key)
        await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(upstream.stats.requests).toBe(before)
      })

      test("the user's rpm applies across all keys of the user, and the message names the user", async () => {
        const user = await createUser(gw, { limits: { rpm: 2 } })
        const a = await createKey(gw, user)
        const b = await createKey(gw, user)
        expect((await gw.chat(a.key)).status).toBe(200)
        const second = await gw.chat(b.key)
        expect(second.status).toBe(200)
        expect(rateLimitHeaders(second, 'requests')).toMatchObject({ limit: 2, remaining: 0 })
        const refused = await gw.chat(a.key)
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain(`user ${user}`)
        expect(message).toContain('requests per minute')
        expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      })

      test("the team's rpm applies across keys of different members, and the message names the team", async () => {
        const alice = await createUser(gw)
        const bob = await createUser(gw)
        const team = await createTeam(gw, [alice, bob], { limits: { rpm: 3 } })
        const a = await createKey(gw, alice, { team_id: team })
        const b = await createKey(gw, bob, { team_id: team })
        expect((await gw.chat(a.key)).status).toBe(200)
        expect((await gw.chat(a.key)).status).toBe(200)
        expect((await gw.chat(b.key)).status).toBe(200)
        const message = await expectQuotaError(await gw.chat(b.key), 'rate_limit_exceeded')
        expect(message).toContain(`team ${team}`)
        expect(message).toContain('requests per minute')
      })

      test('a team named by OpenAI-Organization is billed too: its limit covers unbound keys that name it', async () => {
        const carol = await createUser(gw)
        const dave = await createUser(gw)
        const team = await createTeam(gw, [carol, dave], { limits: { rpm: 2 } })
        const c = await createKey(gw, carol)
        const d = await createKey(gw, dave)
        const org = { headers: { 'openai-organization': team } }
        expect((await gw.chat(c.key, {}, org)).status).toBe(200)
        expect((await gw.chat(d.key, {}, org)).status).toBe(200)
        expect(await expectQuotaError(await gw.chat(c.key, {}, org), 'rate_limit_exceeded')).toContain(`team ${team}`)
        // Without the header the team is not billed, so the same key is admitted.
        expect((await gw.chat(c.key)).status).toBe(200)
      })

      test('key, user and team limits together: the tightest refuses', async () => {
        const user = await createUser(gw, { limits: { rpm: 5 } })
        const team = await createTeam(gw, [user], { limits: { rpm: 4 } })
        const { key } = await createKey(gw, user, { team_id: team, limits: { rpm: 10 } })
        for (let i = 0; i < 4; i++) expect((await gw.chat(key)).status).toBe(200)
        expect(await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')).toContain(`team ${team}`)
      })
      test('a raised limit keeps what was used, not the time to refill: after one request, rpm 1 → 1000 leaves 998 for the next, tpm 100 → 100000 nearly all', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { rpm: 1, tpm: 100 } })
        const first = await gw.chat(key, { max_tokens: 40 })
        expect(first.status).toBe(200)
        const used = ((await first.json()) as { usage: { total_tokens: number } }).usage.total_tokens
        await gw.adminOk('PATCH', `/admin/keys/${id}`, { limits: { rpm: 1000, tpm: 100_000 } })
        // Once the gateway sees the new limits (its key cache is told at once; a refused try takes nothing).
        const next = await eventually(async () => {
          const res = await gw.chat(key, { max_tokens: 40 })
          if (res.status !== 200) {
            await res.arrayBuffer()
            return undefined
          }
          return res
        }, 5000, 'the raised limit to admit')
        const requests = rateLimitHeaders(next, 'requests')!
        const tokens = rateLimitHeaders(next, 'tokens')!
        const second = ((await next.json()) as { usage: { total_tokens: number } }).usage.total_tokens
        expect(requests.limit).toBe(1000)
        // Two requests taken (plus a sliver refilled), where the old bucket's "full in a minute" would have left none.
        expect(requests.remaining).toBeGreaterThanOrEqual(997)
        expect(requests.remaining).toBeLessThanOrEqual(998)
        expect(tokens.limit).toBe(100_000)
        expect(tokens.remaining).toBeGreaterThanOrEqual(100_000 - used - second - 10)
      })
    })

    describe('tokens per minute', () => {
      test('x-ratelimit-*-tokens headers show the reservation (prompt + max_tokens); a request that does not fit is refused naming tokens', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { tpm: 1000 } })
        const res = await gw.chat(key, { max_tokens: 400 })
        expect(res.status).toBe(200)
        const tokens = rateLimitHeaders(res, 'tokens')!
        expect(tokens.limit).toBe(1000)
        // 400 for max_tokens plus a few for the prompt.
        expect(tokens.remaining).toBeLessThanOrEqual(600)
        expect(tokens.remaining).toBeGreaterThan(580)
        expect(tokens.resetMs).toBeGreaterThan(0)
        expect(res.headers.get('x-ratelimit-limit-requests')).toBeNull()
        await res.arrayBuffer()

        const refused = await gw.chat(key, { max_tokens: 900 })
        const retryAfter = refused.headers.get('retry-after')
        // Waiting cures this one: SDKs may retry it.
        expect(refused.headers.get('x-should-retry')).toBeNull()
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain(`key ${id}`)
        expect(message).toContain('tokens per minute')
        expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
        expect(Number(retryAfter)).toBeLessThanOrEqual(60)
      })

      test('a request that needs more tokens than the limit can ever hold: no Retry-After, x-should-retry false, and the message says to lower max_tokens', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 100 } })
        const refused = await gw.chat(key, { max_tokens: 500 })
        expect(refused.headers.get('retry-after')).toBeNull()
        // The official clients retry a 429 twice unless told not to.
        expect(refused.headers.get('x-should-retry')).toBe('false')
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain('max_tokens')
        expect(message).toContain('tokens per minute')
        // Nothing was taken: a small request still fits.
        expect((await gw.chat(key, { max_tokens: 10 })).status).toBe(200)
      })

      test('a request without max_tokens that does not fit is told to set it, and what was reserved without it', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 200 } })
        // No max_tokens: completion_estimate (256) is reserved, more than the limit holds.
        const refused = await gw.chat(key)
        expect(((await refused.clone().json()) as { error: { param: string | null } }).error.param).toBe('max_tokens')
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain('set max_tokens')
        expect(message).toContain('none was sent, so 256 tokens were reserved for each completion')
        expect(message).not.toContain('lower max_tokens')
      })

      test('the refusal names the field the body carried: max_completion_tokens, or an embeddings request\'s input', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 100 }, budget: { tokens: 50, period: 'day' } })
        const refused = await gw.chat(key, { max_completion_tokens: 500 })
        const body = (await refused.clone().json()) as { error: { param: string | null } }
        expect(body.error.param).toBe('max_completion_tokens')
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain('lower max_completion_tokens')
        expect(message).not.toContain('max_tokens ')

        // Within the tpm limit, over the whole budget: the budget's refusal names it too.
        const budget = await gw.chat(key, { max_completion_tokens: 80 })
        expect(((await budget.clone().json()) as { error: { param: string | null } }).error.param).toBe('max_completion_tokens')
        expect(await expectQuotaError(budget, 'insufficient_quota')).toContain('lower max_completion_tokens')

        const embeddings = await fetch(`${gw.url}/v1/embeddings`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'mock-gpt', input: 'many words '.repeat(200) }),
        })
        expect(((await embeddings.clone().json()) as { error: { param: string | null } }).error.param).toBe('input')
        expect(await expectQuotaError(embeddings, 'rate_limit_exceeded')).toContain('shorten the input')
      })

      test('a request asking for n completions reserves max_tokens for each of them', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 1000 } })
        const res = await gw.chat(key, { max_tokens: 100, n: 8 })
        expect(res.status).toBe(200)
        const tokens = rateLimitHeaders(res, 'tokens')!
        // 8 × 100 for the completions plus a few for the prompt.
        expect(tokens.remaining).toBeLessThanOrEqual(200)
        expect(tokens.remaining).toBeGreaterThan(180)
        await res.arrayBuffer()
        // Ten such requests cannot all be admitted at once against 1,000 tokens a minute.
        const second = await gw.chat(key, { max_tokens: 100, n: 8 })
        await expectQuotaError(second, 'rate_limit_exceeded')
      })

      test('an image reserves what an image costs, not its base64 text: a 400 KB data URL takes about 765 tokens, not 100,000', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 50_000 } })
        const url = `data:image/png;base64,${'A'.repeat(400_000)}`
        const content = [{ type: 'text', text: 'what is this' }, { type: 'image_url', image_url: { url } }]
        const res = await gw.chat(key, { max_tokens: 10, messages: [{ role: 'user', content }] })
        expect(res.status).toBe(200)
        const reserved = 50_000 - rateLimitHeaders(res, 'tokens')!.remaining
        expect(reserved).toBeGreaterThan(765)
        expect(reserved).toBeLessThan(1000)
        await res.arrayBuffer()
      })

      test('audio and file parts reserve nothing for their base64 data, as the exact counter counts them: a 400 KB clip or PDF is not refused under 50,000 tpm', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 50_000 } })
        const data = 'A'.repeat(400_000)
        const parts = [
          { type: 'input_audio', input_audio: { data, format: 'wav' } },
          { type: 'file', file: { filename: 'a.pdf', file_data: `data:application/pdf;base64,${data}` } },
        ]
        for (const part of parts) {
          const res = await gw.chat(key, { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, part] }] })
          expect(res.status).toBe(200)
          expect(rateLimitHeaders(res, 'tokens')!.remaining).toBeGreaterThan(49_000)
          await res.arrayBuffer()
        }
      })

      test("a legacy completion's n and best_of are checked at OpenAI's bounds: a best_of of 1e300 is a 400, not a cost so large that no limit or budget counted it", async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { tpm: 1000 }, budget: { tokens: 100, period: 'day' } })
        const complete = (body: Record<string, unknown>) =>
          fetch(`${gw.url}/v1/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'mock-gpt', prompt: 'x', max_tokens: 2_000_000_000, ...body }),
          })
        for (const [body, param] of [[{ best_of: 1e300 }, 'best_of'], [{ best_of: 21 }, 'best_of'], [{ n: 1e300 }, 'n'], [{ n: 129 }, 'n']] as const) {
          const res = await complete(body)
          expect(res.status).toBe(400)
          expect(((await res.json()) as { error: { param: string | null } }).error.param).toBe(param)
        }
        const view = await gw.adminOk<{ tokens: { remaining: number }; budget: { tokens: { spent: number } } }>('GET', `/admin/keys/${id}/quota`)
        expect(view.tokens.remaining).toBe(1000)
        expect(view.budget.tokens.spent).toBe(0)
      })

      test("a chat request's best_of (a legacy completion's field, which chat does not take) multiplies nothing: 1e300 of it neither refuses a small request nor lets a huge one past the limit", async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 1000 } })
        const small = await gw.chat(key, { max_tokens: 100, best_of: 1e300 })
        expect(small.status).toBe(200)
        const left = rateLimitHeaders(small, 'tokens')!.remaining
        // 100 for max_tokens plus a few for the prompt.
        expect(left).toBeLessThanOrEqual(900)
        expect(left).toBeGreaterThan(880)
        await small.arrayBuffer()
        // 1e300 × 2e9 is past any number: counted, it would have been taken for nothing.
        const huge = await gw.chat(key, { max_tokens: 2_000_000_000, best_of: 1e300 })
        expect(await expectQuotaError(huge, 'rate_limit_exceeded')).toContain('about 2000000')
      })

      test('a prompt or input sent as token ids reserves one token an id, not the characters of its digits', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { tpm: 10_000 } })
        // 8,000 ids of 5 digits (as LangChain's embeddings send them): 48,000 characters of JSON.
        const ids = Array.from({ length: 8000 }, (_, i) => 10_000 + i)
        const embed = (input: unknown) =>
          fetch(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mock-gpt', input }) })
        const res = await embed([ids])
        expect(res.status).toBe(200)
        expect(rateLimitHeaders(res, 'tokens')!.remaining).toBe(2000)
        await res.arrayBuffer()
      })

      test('both measures on one key: success carries both header sets', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { rpm: 50, tpm: 50_000 } })
        const res = await gw.chat(key, { max_tokens: 20 })
        expect(res.status).toBe(200)
        expect(rateLimitHeaders(res, 'requests')).toMatchObject({ limit: 50, remaining: 49 })
        expect(rateLimitHeaders(res, 'tokens')?.limit).toBe(50_000)
        await res.arrayBuffer()
      })
    })

    describe('reservation and settlement', () => {
      test('tokens are reserved (prompt + estimate) and settled to the real usage afterwards', async () => {
        const user = await createUser(gw)
        // 600 tpm refills 0.01 token per ms, slow enough to see the settlement.
        const { key } = await createKey(gw, user, { limits: { tpm: 600 }, budget: { tokens: 100_000, period: 'day' } })
        // No max_tokens: the plugin reserves completion_estimate (256); the mock answers 16 words.
        const res = await gw.chat(key)
        expect(res.status).toBe(200)
        const reservedLeft = rateLimitHeaders(res, 'tokens')!.remaining
        expect(reservedLeft).toBeLessThanOrEqual(600 - 256)
        const body = (await res.json()) as { usage: { total_tokens: number } }
        const real = body.usage.total_tokens
        expect(real).toBeLessThan(100)

        // The budget counter does not refill: after settlement it shows exactly the real usage.
        const info = await eventually(async () => {
          const i = await gw.keyInfo(key)
          return i.remaining.budget_tokens === 100_000 - real ? i : undefined
        }, 5000, 'budget settled to real usage')
        // The bucket got the difference back (plus a little refill, capped at capacity).
        expect(info.remaining.tokens!).toBeGreaterThanOrEqual(600 - real - 1)
        expect(info.remaining.tokens!).toBeGreaterThan(reservedLeft + 200)
      })

      test('a failed upstream call gives the reserved tokens back (the request still counts)', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { rpm: 10 }, budget: { tokens: 10_000, period: 'day' } })
        upstream.setFailure({ status: 500, times: 1 })
        const res = await gw.chat(key, { max_tokens: 1000 })
        expect(res.status).toBe(502)
        await res.arrayBuffer()
        const info = await eventually(async () => {
          const i = await gw.keyInfo(key)
          return i.remaining.budget_tokens === 10_000 ? i : undefined
        }, 5000, 'reservation refunded')
        expect(info.remaining.requests).toBe(9)
      })

      test('a stream cut off by the client still settles: tokens come back and its lease is released', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { max_parallel: 1 }, budget: { tokens: 10_000, period: 'day' } })
        const controller = new AbortController()
        const res = await gw.chat(key, { model: 'stream-gpt', stream: true, max_tokens: 2000 }, { signal: controller.signal })
        expect(res.status).toBe(200)
        const reader = res.body!.getReader()
        const first = await reader.read()
        expect(first.done).toBe(false)

        // While it streams: the reservation (prompt + 2000) is taken and the only slot is held.
        const during = await gw.keyInfo(key)
        expect(during.remaining.budget_tokens!).toBeLessThanOrEqual(10_000 - 2000)
        await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')

        controller.abort()
        await reader.cancel().catch(() => {})

        const after = await eventually(async () => {
          const i = await gw.keyInfo(key)
          return i.remaining.budget_tokens! > 10_000 - 100 ? i : undefined
        }, 5000, 'the cut stream to settle')
        // Settled to what was used (prompt and the words sent so far), not to the reservation.
        expect(after.remaining.budget_tokens!).toBeLessThan(10_000)
        await eventually(async () => {
          const next = await gw.chat(key)
          if (next.status !== 200) {
            await next.arrayBuffer()
            return undefined
          }
          await next.arrayBuffer()
          return true
        }, 5000, 'the lease to be released')
      })

      test('a client that leaves before the upstream answers does not get its request for free: the upstream had the prompt, so the reservation stands', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 }, budget: { tokens: 100_000, period: 'day' } })
        const before = upstream.stats.requests
        const controller = new AbortController()
        const pending = gw.chat(key, { model: SLOW_MODEL, max_tokens: 500 }, { signal: controller.signal }).catch(() => null)
        // The upstream has the request (it answers only after SLOW_MS): what it was sent is reserved.
        await eventually(async () => (upstream.stats.requests > before ? true : undefined), 5000, 'the request upstream')
        const during = (await gw.keyInfo(key)).remaining.budget_tokens!
        expect(during).toBeLessThanOrEqual(100_000 - 500)
        controller.abort()
        expect(await pending).toBeNull()

        // Settled once its slot is free (the settlement releases it).
        await eventually(async () => {
          const view = await gw.adminOk<{ parallel: { in_flight: number } }>('GET', `/admin/keys/${id}/quota`)
          return view.parallel.in_flight === 0 ? true : undefined
        }, 5000, 'the abandoned request to settle')
        // Nothing says what the upstream used, at most what was reserved: that stays spent, where it was all given back.
        expect((await gw.keyInfo(key)).remaining.budget_tokens).toBe(during)
      })

      test('a complete stream settles from the usage chunk', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { budget: { tokens: 10_000, period: 'day' } })
        const res = await gw.chat(key, { stream: true, max_tokens: 8, stream_options: { include_usage: true } })
        expect(res.status).toBe(200)
        const text = await res.text()
        const usage = text
          .split('\n\n')
          .filter((f) => f.startsWith('data: {'))
          .map((f) => JSON.parse(f.slice(6)) as { usage?: { total_tokens: number } | null })
          .find((c) => c.usage)?.usage
        expect(usage?.total_tokens).toBeGreaterThan(8)
        await eventually(async () => ((await gw.keyInfo(key)).remaining.budget_tokens === 10_000 - usage!.total_tokens ? true : undefined), 5000, 'stream settlement')
      })
    })

    describe('max_parallel', () => {
      test('refuses the (N+1)th concurrent request with rate_limit_exceeded, and admits again once one finishes', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { max_parallel: 2 } })
        const slow = () => gw.chat(key, { model: SLOW_MODEL })
        const before = upstream.stats.requests
        const first = slow()
        const second = slow()
        // Both were admitted once the mock has them (it holds them SLOW_MS); only then the third goes.
        await eventually(async () => (upstream.stats.requests >= before + 2 ? true : undefined), 5000, 'two requests upstream')
        const third = await slow()
        const retryAfter = third.headers.get('retry-after')
        const message = await expectQuotaError(third, 'rate_limit_exceeded')
        expect(message).toContain(`key ${id}`)
        expect(message).toContain('in flight')
        expect(message).toContain('at most 2')
        expect(retryAfter).toBe('1')
        const [a, b] = await Promise.all([first, second])
        expect([a.status, b.status]).toEqual([200, 200])
        await Promise.all([a.arrayBuffer(), b.arrayBuffer()])
        // The leases go back once the responses are done (settlement is just after the last byte).
        await eventually(async () => {
          const pair = await Promise.all([slow(), slow()])
          await Promise.all(pair.map((r) => r.arrayBuffer()))
          return pair.every((r) => r.status === 200) ? true : undefined
        }, 8000, 'two slots free again')
      })

      test("the team's max_parallel holds across keys of different members", async () => {
        const u1 = await createUser(gw)
        const u2 = await createUser(gw)
        const team = await createTeam(gw, [u1, u2], { limits: { max_parallel: 1 } })
        const k1 = await createKey(gw, u1, { team_id: team })
        const k2 = await createKey(gw, u2, { team_id: team })
        const before = upstream.stats.requests
        const first = gw.chat(k1.key, { model: SLOW_MODEL })
        await eventually(async () => (upstream.stats.requests >= before + 1 ? true : undefined), 5000, 'the first request upstream')
        const message = await expectQuotaError(await gw.chat(k2.key, { model: SLOW_MODEL }), 'rate_limit_exceeded')
        expect(message).toContain(`team ${team}`)
        const done = await first
        expect(done.status).toBe(200)
        await done.arrayBuffer()
      })
    })

    describe('budgets', () => {
      /** The first refusal of `key` whose message says its budget is spent (the gateway may take a moment to see a PATCH). */
      const spentRefusal = (key: string, body: Record<string, unknown>) =>
        eventually(async () => {
          const res = await gw.chat(key, body)
          const text = await res.text()
          return res.status === 429 && text.includes('is spent') ? new Response(text, { status: res.status, headers: res.headers }) : undefined
        }, 5000, 'the budget refusing as spent')

      test('a spent token budget refuses with insufficient_quota, naming it and when it renews (next UTC midnight), with x-should-retry false', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { budget: { tokens: 300, period: 'day' } })
        const ok = await gw.chat(key, { max_tokens: 200 })
        expect(ok.status).toBe(200)
        await ok.arrayBuffer()
        // Lowered below what was spent: nothing is left.
        await gw.adminOk('PATCH', `/admin/keys/${id}`, { budget: { tokens: 150, period: 'day' } })
        const refused = await spentRefusal(key, { max_tokens: 1 })
        const retryAfter = refused.headers.get('retry-after')
        expect(refused.headers.get('x-should-retry')).toBe('false')
        const message = await expectQuotaError(refused, 'insufficient_quota')
        const now = new Date()
        const midnight = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)).toISOString()
        expect(message).toContain('token budget of 150')
        expect(message).toContain(`key ${id}`)
        expect(message).toContain(`renews at ${midnight}`)
        // Retry-After points at the renewal.
        const secondsToMidnight = (Date.parse(midnight) - Date.now()) / 1000
        expect(Math.abs(Number(retryAfter) - secondsToMidnight)).toBeLessThan(5)
      })

      test('once the budget is exhausted, even a tiny request is refused', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { budget: { tokens: 60, period: 'month' } })
        // The mock answers exactly max_tokens words; prompt and answer use (almost) all of the budget.
        const res = await gw.chat(key, { max_tokens: 51 })
        expect(res.status).toBe(200)
        const used = ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens
        expect(used).toBeGreaterThanOrEqual(55)
        await eventually(async () => ((await gw.keyInfo(key)).remaining.budget_tokens === Math.max(0, 60 - used) ? true : undefined), 5000, 'settled')
        const message = await expectQuotaError(await gw.chat(key, { max_tokens: 1 }), 'insufficient_quota')
        expect(message).toContain('token budget')
      })

      test('a total budget says it does not renew, and gives no Retry-After', async () => {
        const user = await createUser(gw, { budget: { tokens: 50, period: 'total' } })
        const { key } = await createKey(gw, user)
        const ok = await gw.chat(key, { max_tokens: 30 })
        expect(ok.status).toBe(200)
        await ok.arrayBuffer()
        const refused = await gw.chat(key, { max_tokens: 30 })
        expect(refused.headers.get('retry-after')).toBeNull()
        expect(refused.headers.get('x-should-retry')).toBe('false')
        const message = await expectQuotaError(refused, 'insufficient_quota')
        expect(message).toContain(`user ${user}`)
        expect(message).toContain('does not renew')
      })

      test('a request that alone reserves more than the whole budget is told so (lower max_tokens), not that the budget is spent', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { budget: { tokens: 50, period: 'day' } })
        const refused = await gw.chat(key, { max_tokens: 100 })
        expect(refused.headers.get('retry-after')).toBeNull()
        expect(refused.headers.get('x-should-retry')).toBe('false')
        const message = await expectQuotaError(refused, 'insufficient_quota')
        expect(message).toContain(`more than the whole token budget of 50 for key ${id}`)
        expect(message).toContain('lower max_tokens')
        expect(message).not.toContain('is spent')
        // Nothing was taken: a request that fits is admitted.
        const ok = await gw.chat(key, { max_tokens: 10 })
        expect(ok.status).toBe(200)
        await ok.arrayBuffer()
      })

      test('a rate limit that refills sooner does not hide a spent budget: insufficient_quota with Retry-After at the renewal', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { limits: { rpm: 1 }, budget: { tokens: 300, period: 'day' } })
        const ok = await gw.chat(key, { max_tokens: 250 })
        expect(ok.status).toBe(200)
        await ok.arrayBuffer()
        await gw.adminOk('PATCH', `/admin/keys/${id}`, { budget: { tokens: 200, period: 'day' } })
        // Both the rpm bucket (about 60 s) and the spent budget (until midnight) refuse this one.
        const refused = await spentRefusal(key, { max_tokens: 100 })
        const retryAfter = Number(refused.headers.get('retry-after'))
        const message = await expectQuotaError(refused, 'insufficient_quota')
        expect(message).toContain('token budget of 200')
        const now = new Date()
        const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)
        const secondsToMidnight = (midnight - Date.now()) / 1000
        // Unless the test runs in the last minute of a UTC day, the budget's wait is the longer one.
        if (secondsToMidnight > 70) expect(Math.abs(retryAfter - secondsToMidnight)).toBeLessThan(5)
      })

      test('a budget with some left that this request does not fit says what is left and that a smaller max_tokens fits, with no Retry-After; a smaller request then passes', async () => {
        const user = await createUser(gw)
        const { id, key } = await createKey(gw, user, { budget: { tokens: 300, period: 'day' } })
        const first = await gw.chat(key, { max_tokens: 200 })
        expect(first.status).toBe(200)
        const used = ((await first.json()) as { usage: { total_tokens: number } }).usage.total_tokens
        await eventually(async () => ((await gw.keyInfo(key)).remaining.budget_tokens === 300 - used ? true : undefined), 5000, 'settled')
        const refused = await gw.chat(key, { max_tokens: 200 })
        expect(refused.headers.get('retry-after')).toBeNull()
        expect(refused.headers.get('x-should-retry')).toBe('false')
        const text = await refused.clone().text()
        expect((JSON.parse(text) as { error: { param: string | null } }).error.param).toBe('max_tokens')
        const message = await expectQuotaError(refused, 'insufficient_quota')
        expect(message).toContain(`The token budget of 300 for key ${id} has ${300 - used} tokens left for this period`)
        expect(message).toContain('lower max_tokens or shorten the prompt to fit')
        expect(message).not.toContain('is spent')
        const now = new Date()
        expect(message).toContain(`renews at ${new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)).toISOString()}`)
        const smaller = await gw.chat(key, { max_tokens: 20 })
        expect(smaller.status).toBe(200)
        await smaller.arrayBuffer()
      })

      test('a USD budget with 0.016 left refusing a request that reserves a little more says so, with no Retry-After', async () => {
        const user = await createUser(gw)
        // mock-gpt: $1000 a million prompt tokens, $2000 a million completion tokens.
        const { id, key } = await createKey(gw, user, { budget: { usd: 0.1, period: 'total' } })
        const first = await gw.chat(key, { max_tokens: 30 })
        expect(first.status).toBe(200)
        const { usage } = (await first.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }
        // In micro-dollars: USD per million tokens times tokens.
        const spent = usage.prompt_tokens * PRICING.input + usage.completion_tokens * PRICING.output
        // Set to leave exactly $0.016 of it, and ask for a completion that reserves about $0.018.
        await gw.adminOk('PATCH', `/admin/keys/${id}`, { budget: { usd: (spent + 16_000) / 1_000_000, period: 'total' } })
        const completion = Math.round((18_000 - usage.prompt_tokens * PRICING.input) / PRICING.output)
        const refused = await eventually(async () => {
          const res = await gw.chat(key, { max_tokens: completion })
          const body = await res.text()
          return body.includes('0.016 USD left') ? new Response(body, { status: res.status, headers: res.headers }) : undefined
        }, 5000, 'the new budget refusing')
        expect(refused.headers.get('retry-after')).toBeNull()
        const message = await expectQuotaError(refused, 'insufficient_quota')
        const reserves = new RegExp(`for key ${id} has 0\\.016 USD left for this period, and this request reserves about (0\\.\\d+) USD`).exec(message)
        expect(reserves).not.toBeNull()
        // About 0.018 (the gateway's own prompt count differs a little from the mock's).
        expect(Number(reserves![1])).toBeGreaterThan(0.016)
        expect(Number(reserves![1])).toBeLessThan(0.021)
        expect(message).toContain('does not renew')
      })

      test("a team's USD budget is shared by its members' keys", async () => {
        const u1 = await createUser(gw)
        const u2 = await createUser(gw)
        // mock-gpt costs $1000 per million prompt tokens and $2000 per million completion tokens.
        const team = await createTeam(gw, [u1, u2], { budget: { usd: 0.5, period: 'week' } })
        const k1 = await createKey(gw, u1, { team_id: team })
        const k2 = await createKey(gw, u2, { team_id: team })
        // 100 completion tokens reserve ≈ $0.2 each.
        const a = await gw.chat(k1.key, { max_tokens: 100 })
        expect(a.status).toBe(200)
        await a.arrayBuffer()
        const b = await gw.chat(k2.key, { max_tokens: 100 })
        expect(b.status).toBe(200)
        await b.arrayBuffer()
        await eventually(async () => {
          const left = (await gw.keyInfo(k1.key)).remaining.budget_usd!
          return left < 0.1 ? left : undefined
        }, 5000, 'USD settled')
        const message = await expectQuotaError(await gw.chat(k1.key, { max_tokens: 100 }), 'insufficient_quota')
        expect(message).toContain(`team ${team}`)
        expect(message).toContain('USD budget of 0.5')
      })
    })

    test('requests cheaper than a micro-dollar still spend a USD budget: each takes one, and the budget runs out', async () => {
      const user = await createUser(gw)
      // cheap-gpt: $0.04 a million tokens; a request of about 10 tokens costs $0.0000004.
      const { key } = await createKey(gw, user, { budget: { usd: 0.00001, period: 'day' } })
      const statuses: number[] = []
      for (let i = 0; i < 12; i++) {
        const res = await gw.chat(key, { model: 'cheap-gpt', max_tokens: 1 })
        statuses.push(res.status)
        await res.arrayBuffer()
      }
      // Rounded to the nearest micro-dollar, each took nothing and all twelve went through.
      expect(statuses.filter((s) => s === 200)).toHaveLength(10)
      expect(statuses.slice(10)).toEqual([429, 429])
      expect((await gw.keyInfo(key)).remaining.budget_usd).toBe(0)
    })

    describe('GET /v1/key', () => {
      test('remaining shows requests, tokens, budget_tokens and budget_usd (the least over key, user and team)', async () => {
        const user = await createUser(gw, { limits: { rpm: 7 } })
        const team = await createTeam(gw, [user], { budget: { usd: 2, period: 'day' } })
        const { key } = await createKey(gw, user, { team_id: team, limits: { rpm: 20, tpm: 5000 }, budget: { tokens: 9000, period: 'month' } })
        const before = await gw.keyInfo(key)
        expect(before.remaining).toEqual({ requests: 7, tokens: 5000, budget_tokens: 9000, budget_usd: 2 })
        expect(before.limits).toEqual({ rpm: 20, tpm: 5000 })
        expect(before.budget).toEqual({ tokens: 9000, period: 'month' })

        const res = await gw.chat(key, { max_tokens: 30 })
        expect(res.status).toBe(200)
        const { usage } = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } }
        const cost = (usage.prompt_tokens * PRICING.input + usage.completion_tokens * PRICING.output) / 1_000_000
        const after = await eventually(async () => {
          const i = await gw.keyInfo(key)
          return i.remaining.budget_tokens === 9000 - usage.total_tokens ? i : undefined
        }, 5000, 'settled')
        expect(after.remaining.requests).toBe(6)
        expect(after.remaining.tokens!).toBeGreaterThanOrEqual(5000 - usage.total_tokens - 1)
        expect(after.remaining.tokens!).toBeLessThanOrEqual(5000)
        expect(after.remaining.budget_usd!).toBeCloseTo(2 - cost, 6)
      })

      test("quota says which level holds each limit: the key's, its owner's and its team's own, with what is left of each", async () => {
        const user = await createUser(gw, { limits: { rpm: 7 } })
        const team = await createTeam(gw, [user], { budget: { tokens: 100_000, period: 'day' } })
        const { key, id } = await createKey(gw, user, { team_id: team, limits: { rpm: 20 } })
        const res = await gw.chat(key, { max_tokens: 30 })
        expect(res.status).toBe(200)
        const { usage } = (await res.json()) as { usage: { total_tokens: number } }
        const info = await eventually(async () => {
          const i = await gw.keyInfo(key)
          return i.remaining.budget_tokens === 100_000 - usage.total_tokens ? i : undefined
        }, 5000, 'settled')
        expect(info.quota?.key).toMatchObject({ object: 'quota', subject: 'key', id, requests: { limit: 20, remaining: 19 }, tokens: null, budget: null })
        expect(info.quota?.user).toMatchObject({ subject: 'user', id: user, requests: { limit: 7, remaining: 6 }, budget: null })
        expect(info.quota?.team).toMatchObject({
          subject: 'team',
          id: team,
          requests: null,
          budget: { period: 'day', tokens: { limit: 100_000, spent: usage.total_tokens, remaining: 100_000 - usage.total_tokens }, usd: null },
        })
        // The least of them is what remaining says; the key's own limits and budget stay its own.
        expect(info.remaining).toMatchObject({ requests: 6, budget_tokens: 100_000 - usage.total_tokens })
        expect(info.budget).toBeNull()
        // A level without limits or budget is null.
        const { key: free } = await createKey(gw, await createUser(gw))
        expect((await gw.keyInfo(free)).quota).toEqual({ key: null, user: null, team: null })
      })

      test('a key without limits or budgets has null everywhere in remaining', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user)
        expect((await gw.keyInfo(key)).remaining).toEqual({ requests: null, tokens: null, budget_tokens: null, budget_usd: null })
      })

      test('GET /v1/key itself takes nothing', async () => {
        const user = await createUser(gw)
        const { key } = await createKey(gw, user, { limits: { rpm: 2 } })
        for (let i = 0; i < 5; i++) expect((await gw.keyInfo(key)).remaining.requests).toBe(2)
      })

      test("GET /v1/key carries the rate-limit headers of the key's tightest buckets, as its body counts them (a model call's answer does the same)", async () => {
        const user = await createUser(gw, { limits: { tpm: 900 } })
        const { key } = await createKey(gw, user, { limits: { rpm: 4 } })
        const rateHeaders = (res: Response) => Object.fromEntries([...res.headers].filter(([name]) => name.startsWith('x-ratelimit-')))
        const info = await fetch(`${gw.url}/v1/key`, { headers: { authorization: `Bearer ${key}` } })
        expect(info.status).toBe(200)
        expect(rateHeaders(info)).toEqual({
          'x-ratelimit-limit-requests': '4',
          'x-ratelimit-remaining-requests': '4',
          'x-ratelimit-reset-requests': '0s',
          'x-ratelimit-limit-tokens': '900',
          'x-ratelimit-remaining-tokens': '900',
          'x-ratelimit-reset-tokens': '0s',
        })
        expect(((await info.json()) as { remaining: unknown }).remaining).toMatchObject({ requests: 4, tokens: 900 })
        // A key no limit applies to: none, as on its model calls.
        const { key: free } = await createKey(gw, await createUser(gw))
        expect(rateHeaders(await fetch(`${gw.url}/v1/key`, { headers: { authorization: `Bearer ${free}` } }))).toEqual({})
      })
    })
  })
}

describe.each(backends.filter((b) => b.available))('budget period rollover with an injected clock ($name)', (backend) => {
  const tag = uniqueTestName('quota_clock')
  let gw: QuotaGateway
  // A fixed UTC day in the future, so Redis expiries computed from it lie ahead of Redis' own clock.
  const dayEnd = Date.UTC(new Date().getUTCFullYear() + 1, 2, 31)
  let now = dayEnd - 60_000

  beforeAll(async () => {
    gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: tag } }), { redisUrl: backend.redis, gateway: { now: () => now } })
  })
  afterAll(async () => {
    await gw?.close()
    if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
  })

  test('spent on day D → refused until 23:59:59.999; at D+1 00:00:00.000Z admitted again', async () => {
    const user = await createUser(gw)
    const { id, key } = await createKey(gw, user, { budget: { tokens: 100, period: 'day' } })
    const first = await gw.chat(key, { max_tokens: 60 })
    expect(first.status).toBe(200)
    await first.arrayBuffer()
    // Lowered below what was spent: nothing is left.
    await gw.adminOk('PATCH', `/admin/keys/${id}`, { budget: { tokens: 50, period: 'day' } })
    await eventually(async () => ((await gw.keyInfo(key)).remaining.budget_tokens === 0 ? true : undefined), 5000, 'spent')

    const refused = await gw.chat(key, { max_tokens: 30 })
    const retryAfter = refused.headers.get('retry-after')
    const message = await expectQuotaError(refused, 'insufficient_quota')
    expect(message).toContain(`renews at ${new Date(dayEnd).toISOString()}`)
    expect(retryAfter).toBe('60')

    now = dayEnd - 1
    await expectQuotaError(await gw.chat(key, { max_tokens: 30 }), 'insufficient_quota')

    now = dayEnd
    expect((await gw.keyInfo(key)).remaining.budget_tokens).toBe(50)
    const renewed = await gw.chat(key, { max_tokens: 30 })
    expect(renewed.status).toBe(200)
    await renewed.arrayBuffer()
  })
})
