import { describe, expect, test } from 'bun:test'
import { DEFAULT_HEADROOM_TTL_MS, available, availableAt, modelHealthOf, coolingUntil, forgetStaleLatency, halfOpen, headroomFrom, newHealth, openUntil, recordLatency, resetAt, stateOf } from './health.ts'

const NOW = Date.parse('2025-06-01T12:00:00Z')

describe('headroomFrom: OpenAI headers', () => {
  test('remaining over limit, the tighter of requests and tokens, until that window resets', () => {
    const headers = new Headers({
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '400',
      'x-ratelimit-reset-requests': '12ms',
      'x-ratelimit-limit-tokens': '200000',
      'x-ratelimit-remaining-tokens': '50000',
      'x-ratelimit-reset-tokens': '6m0s',
    })
    expect(headroomFrom(headers, NOW)).toEqual({ share: 0.25, until: NOW + 360_000 })
  })

  test('remaining 0 is no headroom, until the reset the provider names', () => {
    const headers = new Headers({ 'x-ratelimit-limit-requests': '60', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' })
    expect(headroomFrom(headers, NOW)).toEqual({ share: 0, until: NOW + 1000 })
  })

  test('remaining without a limit: some or none', () => {
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': '7' }), NOW)?.share).toBe(1)
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': '0' }), NOW)?.share).toBe(0)
  })

  test('without a reset header the learned headroom is trusted for a default while', () => {
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-limit-tokens': '10' }), NOW)).toEqual({ share: 0, until: NOW + DEFAULT_HEADROOM_TTL_MS })
  })

  test('clamped to 0..1 and garbage ignored', () => {
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': '900', 'x-ratelimit-limit-requests': '100' }), NOW)?.share).toBe(1)
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': '-5', 'x-ratelimit-limit-requests': '100' }), NOW)?.share).toBe(0)
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': 'lots' }), NOW)).toBeNull()
    expect(headroomFrom(new Headers({ 'x-ratelimit-remaining-requests': '' }), NOW)).toBeNull()
  })

  test('no rate-limit headers: unknown', () => {
    expect(headroomFrom(new Headers({ 'content-type': 'application/json' }), NOW)).toBeNull()
  })
})

describe('headroomFrom: Anthropic headers', () => {
  test('requests, tokens, input and output tokens; the tightest wins, with its RFC 3339 reset', () => {
    const headers = new Headers({
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '49',
      'anthropic-ratelimit-requests-reset': '2025-06-01T12:00:01Z',
      'anthropic-ratelimit-input-tokens-limit': '40000',
      'anthropic-ratelimit-input-tokens-remaining': '4000',
      'anthropic-ratelimit-input-tokens-reset': '2025-06-01T12:00:30Z',
      'anthropic-ratelimit-output-tokens-limit': '8000',
      'anthropic-ratelimit-output-tokens-remaining': '4000',
      'anthropic-ratelimit-output-tokens-reset': '2025-06-01T12:00:05Z',
    })
    expect(headroomFrom(headers, NOW)).toEqual({ share: 0.1, until: NOW + 30_000 })
  })

  test('tokens exhausted', () => {
    const headers = new Headers({
      'anthropic-ratelimit-tokens-limit': '100000',
      'anthropic-ratelimit-tokens-remaining': '0',
      'anthropic-ratelimit-tokens-reset': '2025-06-01T12:01:00Z',
    })
    expect(headroomFrom(headers, NOW)).toEqual({ share: 0, until: NOW + 60_000 })
  })
})

describe('resetAt', () => {
  test.each([
    ['1s', 1000],
    ['20ms', 20],
    ['6m0s', 360_000],
    ['1h2m3.5s', 3_723_500],
    ['2', 2000],
    ['0.5', 500],
    ['1m', 60_000],
    ['1.5m30s', 120_000],
  ])('%p is %p ms from now', (value, ms) => {
    expect(resetAt(value, NOW)).toBe(NOW + ms)
  })

  test('an RFC 3339 time is taken as is; nonsense is unknown', () => {
    expect(resetAt('2025-06-01T12:00:10Z', NOW)).toBe(NOW + 10_000)
    expect(resetAt('soon', NOW)).toBeNull()
    for (const bad of ['', 'ms', '5x', '2s3', '1..5s', '-1s']) expect(resetAt(bad, NOW)).toBeNull()
    expect(resetAt(null, NOW)).toBeNull()
  })

  test('a reset further than 2147483647 ms (about 24 days) is that far, where a date past what an ISO string holds failed the health view', () => {
    expect(resetAt('9999999999999s', NOW)).toBe(NOW + 2_147_483_647)
    expect(resetAt('+100000-01-01T00:00:00Z', NOW)).toBe(NOW + 2_147_483_647)
  })
})

describe('available and stateOf', () => {
  test('a new key is healthy and available', () => {
    const h = newHealth('p', 'k')
    const m = modelHealthOf(h, 'model-a')
    expect(available(h, m, NOW)).toBe(true)
    expect(stateOf(h, NOW)).toBe('healthy')
    expect(availableAt(h, m, NOW)).toBe(NOW)
  })

  test('cooling for one model until its time, then available again; the key\'s other models are not cooling', () => {
    const h = newHealth('p', 'k')
    const a = modelHealthOf(h, 'model-a')
    const b = modelHealthOf(h, 'model-b')
    a.until = NOW + 1000
    expect(available(h, a, NOW)).toBe(false)
    expect(availableAt(h, a, NOW)).toBe(NOW + 1000)
    expect(available(h, b, NOW)).toBe(true)
    expect(availableAt(h, b, NOW)).toBe(NOW)
    expect(stateOf(h, NOW)).toBe('cooling')
    expect(coolingUntil(h, NOW)).toBe(NOW + 1000)
    expect(available(h, a, NOW + 1000)).toBe(true)
    expect(stateOf(h, NOW + 1000)).toBe('healthy')
    expect(coolingUntil(h, NOW + 1000)).toBe(0)
  })

  test('one record per model: asking again gives the same record', () => {
    const h = newHealth('p', 'k')
    expect(modelHealthOf(h, 'model-a')).toBe(modelHealthOf(h, 'model-a'))
    expect(modelHealthOf(h, 'model-a')).not.toBe(modelHealthOf(h, 'model-b'))
    expect(h.models.size).toBe(2)
  })

  test('the key cools until the last of its models is back', () => {
    const h = newHealth('p', 'k')
    modelHealthOf(h, 'model-a').until = NOW + 1000
    modelHealthOf(h, 'model-b').until = NOW + 3000
    expect(coolingUntil(h, NOW)).toBe(NOW + 3000)
    expect(coolingUntil(h, NOW + 2000)).toBe(NOW + 3000)
    expect(stateOf(h, NOW + 2000)).toBe('cooling')
  })

  test('dead stays dead, whatever the time and for every model', () => {
    const h = newHealth('p', 'k')
    const m = modelHealthOf(h, 'model-a')
    h.dead = 'refused (HTTP 401)'
    expect(available(h, m, NOW + 86_400_000)).toBe(false)
    expect(stateOf(h, NOW + 86_400_000)).toBe('dead')
    expect(availableAt(h, m, NOW)).toBe(Infinity)
  })

  test('open circuit: unavailable for its model while open, the key\'s other models untouched; half-open lets exactly one trial through', () => {
    const h = newHealth('p', 'k')
    const m = modelHealthOf(h, 'model-a')
    const other = modelHealthOf(h, 'model-b')
    m.openUntil = NOW + 500
    expect(available(h, m, NOW)).toBe(false)
    expect(availableAt(h, m, NOW)).toBe(NOW + 500)
    expect(available(h, other, NOW)).toBe(true)
    expect(availableAt(h, other, NOW)).toBe(NOW)
    expect(stateOf(h, NOW)).toBe('open')
    expect(openUntil(h, NOW)).toBe(NOW + 500)
    expect(halfOpen(m, NOW)).toBe(false)

    const later = NOW + 500
    expect(halfOpen(m, later)).toBe(true)
    expect(halfOpen(other, later)).toBe(false)
    expect(openUntil(h, later)).toBe(0)
    expect(available(h, m, later)).toBe(true)
    m.trial = true
    expect(available(h, m, later)).toBe(false)
    // Another model's trial is its own: model-b was never open, and stays available.
    expect(available(h, other, later)).toBe(true)
    // The trial succeeded: the circuit closes.
    m.trial = false
    m.openUntil = 0
    expect(halfOpen(m, later)).toBe(false)
    expect(available(h, m, later)).toBe(true)
  })

  test('the key is open until the last of its open circuits ends', () => {
    const h = newHealth('p', 'k')
    modelHealthOf(h, 'model-a').openUntil = NOW + 1000
    modelHealthOf(h, 'model-b').openUntil = NOW + 3000
    expect(openUntil(h, NOW)).toBe(NOW + 3000)
    expect(stateOf(h, NOW + 2000)).toBe('open')
    // Past every open period, no trial has closed them yet.
    expect(stateOf(h, NOW + 3000)).toBe('half_open')
  })

  test('half_open while a circuit is past its open period and no trial closed it, trial in flight or not; healthy once one has', () => {
    const h = newHealth('p', 'k')
    const m = modelHealthOf(h, 'model-a')
    m.openUntil = NOW + 500
    m.failures = 5
    expect(stateOf(h, NOW)).toBe('open')
    expect(stateOf(h, NOW + 500)).toBe('half_open')
    m.trial = true
    expect(stateOf(h, NOW + 600)).toBe('half_open')
    // Another model open is the worse: the key is open.
    modelHealthOf(h, 'model-b').openUntil = NOW + 1000
    expect(stateOf(h, NOW + 600)).toBe('open')
    modelHealthOf(h, 'model-b').openUntil = 0
    // A cooldown on another model is the lighter: the key stays half_open.
    modelHealthOf(h, 'model-b').until = NOW + 1000
    expect(stateOf(h, NOW + 600)).toBe('half_open')
    // The trial succeeded: the circuit closes.
    m.trial = false
    m.openUntil = 0
    m.failures = 0
    expect(stateOf(h, NOW + 600)).toBe('cooling')
    expect(stateOf(h, NOW + 1000)).toBe('healthy')
  })

  test('the worst state wins: dead over open over half_open over cooling', () => {
    const h = newHealth('p', 'k')
    const m = modelHealthOf(h, 'model-a')
    m.until = NOW + 1000
    m.openUntil = NOW + 2000
    expect(stateOf(h, NOW)).toBe('open')
    expect(availableAt(h, m, NOW)).toBe(NOW + 2000)
    h.dead = 'refused'
    expect(stateOf(h, NOW)).toBe('dead')
  })
})

describe('recordLatency', () => {
  test('first sample as is, then an exponentially weighted moving average', () => {
    const h = newHealth('p', 'k')
    recordLatency(h, 100, 0.5, 1000)
    expect(h.latencyEwma).toBe(100)
    recordLatency(h, 200, 0.5, 2000)
    expect(h.latencyEwma).toBe(150)
    recordLatency(h, 150, 0.5, 3000)
    expect(h.latencyEwma).toBe(150)
    expect(h.latencyAt).toBe(3000)
  })

  test('an average no sample refreshed for the ttl is forgotten (unknown again); a fresher one is kept', () => {
    const h = newHealth('p', 'k')
    recordLatency(h, 900, 0.5, 10_000)
    forgetStaleLatency(h, 10_000 + 60_000, 60_000)
    expect(h.latencyEwma).toBe(900)
    forgetStaleLatency(h, 10_000 + 60_001, 60_000)
    expect([h.latencyEwma, h.latencyAt]).toEqual([0, 0])
    // Unknown, the next sample is taken as is.
    recordLatency(h, 40, 0.5, 80_000)
    expect(h.latencyEwma).toBe(40)
  })
})
