/**
 * Unit tests of the auth plugin's parts: KeyVerifier (the order of its rules, its caches),
 * LruCache (bound, recency, expiry), and the key format (mint, parse, mask).
 */
import { describe, expect, test } from 'bun:test'
import type { Endpoint } from '../../src/plugin.ts'
import { LruCache } from './cache.ts'
import { displayKey, echo, hashKey, keyEnvironment, maskKey, mintKey, SECRET_LENGTH } from './key-format.ts'
import type { Db, KeyRecord } from './repo.ts'
import { ENDPOINT_SCOPES, KeyVerifier, type Presented } from './verify.ts'

const NOW = Date.parse('2030-06-01T00:00:00Z')
const KEY = 'sk-dev-' + 'A1b2C3d4'.repeat(5) + 'xyz'

type Team = KeyRecord['teams'] extends ReadonlyMap<string, infer T> ? T : never
const team = (id: string, deletedAt: number | null = null): [string, Team] => [id, { id, deletedAt, limits: null, budget: null, models: null }]

function keyRecord(over: Partial<Omit<KeyRecord, 'user'>> & { user?: Partial<KeyRecord['user']> } = {}): KeyRecord {
  const { user, ...rest } = over
  return {
    id: 'key_1',
    lineageId: 'key_1',
    hash: hashKey(KEY),
    start: KEY.slice(0, 12),
    end: KEY.slice(-4),
    environment: 'dev',
    name: 'unit',
    teamId: null,
    models: null,
    scopes: null,
    limits: null,
    budget: null,
    status: 'active',
    expiresAt: null,
    revokedAt: null,
    revokedReason: null,
    rotatedTo: null,
    rotatedToStart: null,
    rotatedToUntil: null,
    graceUntil: null,
    teams: new Map(),
    ...rest,
    user: { id: 'usr_1', disabledAt: null, deletedAt: null, limits: null, budget: null, models: null, ...user },
  }
}

interface Loader {
  load: (hash: string) => Promise<KeyRecord | null>
  calls: string[]
}
/** A loader over a map of records, counting calls (each call is one database read). */
function mapLoader(records: Map<string, KeyRecord>): Loader {
  const calls: string[] = []
  return {
    calls,
    load: async (hash) => {
      calls.push(hash)
      return records.get(hash) ?? null
    },
  }
}

function verifier(options: { load?: Loader['load']; now?: () => number; cacheSize?: number; cacheTtlMs?: number; negativeTtlMs?: number } = {}) {
  return new KeyVerifier({
    db: null as unknown as Db, // never touched: every test passes a loader
    environment: 'dev',
    now: options.now ?? (() => NOW),
    cacheSize: options.cacheSize ?? 100,
    cacheTtlMs: options.cacheTtlMs ?? 30_000,
    negativeTtlMs: options.negativeTtlMs ?? 5_000,
    load: options.load ?? (async () => null),
  })
}

const presented = (over: Partial<Presented> = {}): Presented => ({ key: KEY, endpoint: 'chat.completions', model: 'mock-gpt', team: null, ...over })

function codeOf(v: ReturnType<KeyVerifier['decide']>): string {
  return v.ok ? 'ok' : v.error.code
}

describe('KeyVerifier.decide: the order of the rules', () => {
  const v = verifier()
  // Every fault at once, then peel them off one by one: each step must surface the next rule.
  const faults: Array<[string, Partial<Omit<KeyRecord, 'user'>> & { user?: Partial<KeyRecord['user']> }]> = [
    ['key_revoked', { status: 'revoked', revokedAt: NOW - 10 }],
    ['key_revoked', { graceUntil: NOW - 1, rotatedToStart: 'sk-dev-NEW12' }],
    ['key_expired', { expiresAt: NOW }],
    ['invalid_user_for_key', { user: { deletedAt: NOW - 5 } }],
    ['invalid_user_for_key', { user: { disabledAt: NOW - 5 } }],
    ['invalid_user_for_key', { teamId: 'team_gone' }],
    ['invalid_user_for_key', { teamId: 'team_dead', teams: new Map([team('team_dead', NOW - 1)]) }],
    ['insufficient_permissions', { scopes: ['embeddings'] }],
    ['model_not_allowed', { models: ['other'] }],
  ]

  test('with every fault present, each rule shows up in turn as the earlier faults are removed', () => {
    const messages: string[] = []
    for (let i = 0; i < faults.length; i++) {
      // Earlier faults win where two set the same field (the bound team of step 6 over step 7's).
      const present = faults.slice(i).reverse()
      const merged = Object.assign({}, ...present.map(([, f]) => f)) as Partial<KeyRecord>
      const user = Object.assign({}, ...present.map(([, f]) => f.user ?? {}))
      const verdict = v.decide(KEY, keyRecord({ ...merged, user }), presented())
      expect(codeOf(verdict)).toBe(faults[i]![0])
      if (!verdict.ok) messages.push(verdict.error.message)
    }
    // Nine rules, nine different messages.
    expect(new Set(messages).size).toBe(faults.length)
    expect(codeOf(v.decide(KEY, keyRecord(), presented()))).toBe('ok')
  })

  test('each rule alone', () => {
    for (const [code, fault] of faults) expect(codeOf(v.decide(KEY, keyRecord(fault), presented()))).toBe(code)
  })

  test('no record → invalid_api_key with the masked key', () => {
    const verdict = v.decide(KEY, null, presented())
    expect(codeOf(verdict)).toBe('invalid_api_key')
    if (!verdict.ok) {
      expect(verdict.error.message).toContain(maskKey(KEY))
      expect(verdict.error.message).not.toContain(KEY)
    }
  })

  test('expiry and grace are exclusive bounds: valid until the millisecond before', () => {
    expect(codeOf(v.decide(KEY, keyRecord({ expiresAt: NOW + 1 }), presented()))).toBe('ok')
    expect(codeOf(v.decide(KEY, keyRecord({ expiresAt: NOW }), presented()))).toBe('key_expired')
    expect(codeOf(v.decide(KEY, keyRecord({ graceUntil: NOW + 1 }), presented()))).toBe('ok')
    expect(codeOf(v.decide(KEY, keyRecord({ graceUntil: NOW }), presented()))).toBe('key_revoked')
  })

  test('the named team (OpenAI-Organization) rules', () => {
    const member = keyRecord({ teams: new Map([team('team_a'), team('team_b')]) })
    const ok = v.decide(KEY, member, presented({ team: 'team_a' }))
    expect(ok.ok && ok.identity.teamId).toBe('team_a')
    expect(codeOf(v.decide(KEY, member, presented({ team: 'team_z' })))).toBe('invalid_user_for_key')
    const bound = keyRecord({ teamId: 'team_a', teams: member.teams })
    expect(codeOf(v.decide(KEY, bound, presented({ team: 'team_b' })))).toBe('invalid_user_for_key')
    const same = v.decide(KEY, bound, presented({ team: 'team_a' }))
    expect(same.ok && same.identity.teamId).toBe('team_a')
    const deleted = keyRecord({ teams: new Map([team('team_a', NOW - 1)]) })
    expect(codeOf(v.decide(KEY, deleted, presented({ team: 'team_a' })))).toBe('invalid_user_for_key')
    // An empty header names no team.
    expect(codeOf(v.decide(KEY, keyRecord(), presented({ team: '' })))).toBe('ok')
  })

  test('a key pasted into OpenAI-Organization or the model is not echoed whole', () => {
    const other = mintKey('dev').plaintext
    for (const verdict of [v.decide(KEY, keyRecord(), presented({ team: other })), v.decide(KEY, keyRecord({ models: ['m'] }), presented({ model: other }))]) {
      expect(verdict.ok).toBe(false)
      if (!verdict.ok) expect(verdict.error.message).not.toContain(other)
    }
  })

  test('scopes: each endpoint needs its scope; key introspection needs none', () => {
    const endpoints = Object.keys(ENDPOINT_SCOPES) as Endpoint[]
    for (const endpoint of endpoints) {
      const scope = ENDPOINT_SCOPES[endpoint]
      const none = v.decide(KEY, keyRecord({ scopes: [] }), presented({ endpoint, model: undefined }))
      expect(codeOf(none)).toBe(scope === null ? 'ok' : 'insufficient_permissions')
      if (scope !== null) expect(codeOf(v.decide(KEY, keyRecord({ scopes: [scope] }), presented({ endpoint, model: undefined })))).toBe('ok')
    }
    expect(ENDPOINT_SCOPES.key).toBeNull()
  })

  test('models: null allows all, a list allows those, no model asked is fine', () => {
    expect(codeOf(v.decide(KEY, keyRecord({ models: null }), presented({ model: 'anything' })))).toBe('ok')
    expect(codeOf(v.decide(KEY, keyRecord({ models: ['a'] }), presented({ model: 'a' })))).toBe('ok')
    expect(codeOf(v.decide(KEY, keyRecord({ models: [] }), presented({ model: 'a' })))).toBe('model_not_allowed')
    expect(codeOf(v.decide(KEY, keyRecord({ models: ['a'] }), presented({ model: undefined, endpoint: 'models.list' })))).toBe('ok')
  })

  test('the identity carries key, user, team, environment and limits of all three', () => {
    const rec = keyRecord({
      teamId: 'team_a',
      limits: { rpm: 1 },
      user: { limits: { rpm: 2 } },
      teams: new Map([['team_a', { id: 'team_a', deletedAt: null, limits: { rpm: 3 }, budget: null, models: null }]]),
    })
    const verdict = v.decide(KEY, rec, presented())
    expect(verdict.ok).toBe(true)
    if (verdict.ok) {
      expect(verdict.identity).toMatchObject({ keyId: 'key_1', userId: 'usr_1', teamId: 'team_a', environment: 'dev' })
      expect(verdict.identity.attributes.limits).toEqual({ key: { rpm: 1 }, user: { rpm: 2 }, team: { rpm: 3 } })
    }
  })

  test("the identity of a rotated key names the key itself, and its lineage (the chain's first key) apart", () => {
    const verdict = v.decide(KEY, keyRecord({ id: 'key_2', lineageId: 'key_1' }), presented())
    expect(verdict.ok).toBe(true)
    if (verdict.ok) expect(verdict.identity).toMatchObject({ keyId: 'key_2', keyLineageId: 'key_1' })
  })
})

describe('KeyVerifier.verify: before the database', () => {
  test('missing and malformed keys are refused without a load', async () => {
    const loader = mapLoader(new Map())
    const v = verifier({ load: loader.load })
    const refuse = async (key: string | null) => {
      const verdict = await v.verify(presented({ key }))
      return verdict.ok ? 'ok' : verdict.error.code
    }
    expect(await refuse(null)).toBe('missing_api_key')
    expect(await refuse('')).toBe('missing_api_key')
    expect(await refuse('sk-dev-short')).toBe('invalid_api_key')
    expect(await refuse('Bearer ' + KEY)).toBe('invalid_api_key')
    expect(loader.calls).toEqual([])
    expect(v.misses).toBe(0)
  })

  test('a key of another environment is refused by its prefix, with its record when the database holds one (for the log)', async () => {
    const prodKey = 'sk-prod-' + 'A1b2C3d4'.repeat(5) + 'xyz'
    const prod = keyRecord({ id: 'key_prod', hash: hashKey(prodKey), environment: 'prod', teamId: 'team_1', teams: new Map([team('team_1')]) })
    const loader = mapLoader(new Map([[prod.hash, prod]]))
    const v = verifier({ load: loader.load })
    for (let i = 0; i < 5; i++) {
      const verdict = await v.verify(presented({ key: prodKey }))
      expect(verdict.ok ? 'ok' : verdict.error.code).toBe('environment_mismatch')
      expect(verdict.record?.id).toBe('key_prod')
    }
    // Warm: decided without a promise, and loaded once.
    expect(v.verify(presented({ key: prodKey }))).not.toBeInstanceOf(Promise)
    expect(loader.calls).toEqual([prod.hash])
  })

  test("a stranger's key of another environment: one load, then the negative cache; a failed load still refuses", async () => {
    let now = NOW
    const loader = mapLoader(new Map())
    const v = verifier({ load: loader.load, now: () => now, negativeTtlMs: 5_000 })
    const stranger = 'sk-prod-' + 'x'.repeat(40)
    for (let i = 0; i < 50; i++) {
      const verdict = await v.verify(presented({ key: stranger }))
      expect([verdict.ok ? 'ok' : verdict.error.code, verdict.record]).toEqual(['environment_mismatch', null])
    }
    expect(loader.calls).toHaveLength(1)
    now += 5_001
    await v.verify(presented({ key: stranger }))
    expect(loader.calls).toHaveLength(2)

    const down = verifier({
      load: async () => {
        throw new Error('database down')
      },
    })
    const verdict = await down.verify(presented({ key: stranger }))
    expect([verdict.ok ? 'ok' : verdict.error.code, verdict.record]).toEqual(['environment_mismatch', null])
  })

  test('a known key is loaded once, then served from the cache', async () => {
    const loader = mapLoader(new Map([[hashKey(KEY), keyRecord()]]))
    const v = verifier({ load: loader.load })
    for (let i = 0; i < 10; i++) expect((await v.verify(presented())).ok).toBe(true)
    expect(loader.calls).toHaveLength(1)
    expect({ hits: v.hits, misses: v.misses }).toEqual({ hits: 9, misses: 1 })
    // A warm key is decided synchronously: no promise on the hot path.
    expect(v.verify(presented())).not.toBeInstanceOf(Promise)
  })

  test('concurrent lookups of one cold key share one load', async () => {
    const loader = mapLoader(new Map([[hashKey(KEY), keyRecord()]]))
    const v = verifier({ load: loader.load })
    const verdicts = await Promise.all(Array.from({ length: 20 }, () => v.verify(presented())))
    expect(verdicts.every((x) => x.ok)).toBe(true)
    expect(loader.calls).toHaveLength(1)
  })

  test('unknown keys are cached negatively until negative_ttl passes', async () => {
    let now = NOW
    const loader = mapLoader(new Map())
    const v = verifier({ load: loader.load, now: () => now, negativeTtlMs: 5_000 })
    const unknown = mintKey('dev').plaintext
    for (let i = 0; i < 50; i++) expect(codeOf(await v.verify(presented({ key: unknown })))).toBe('invalid_api_key')
    expect(loader.calls).toHaveLength(1)
    now += 5_001
    await v.verify(presented({ key: unknown }))
    expect(loader.calls).toHaveLength(2)
  })

  test('invalidate(hash) drops a cached record; invalidate(null) drops all', async () => {
    const records = new Map([[hashKey(KEY), keyRecord()]])
    const loader = mapLoader(records)
    const v = verifier({ load: loader.load })
    await v.verify(presented())
    records.set(hashKey(KEY), keyRecord({ status: 'revoked' }))
    expect(codeOf(await v.verify(presented()))).toBe('ok') // cached
    v.invalidate(hashKey(KEY))
    expect(codeOf(await v.verify(presented()))).toBe('key_revoked')
    records.set(hashKey(KEY), keyRecord({ user: { disabledAt: NOW - 1 } }))
    v.invalidate(null)
    expect(codeOf(await v.verify(presented()))).toBe('invalid_user_for_key')
  })

  test('an invalidation during a load: the stale result is neither cached nor handed to later lookups', async () => {
    const hash = hashKey(KEY)
    const pending: Array<(r: KeyRecord | null) => void> = []
    const v = verifier({ load: () => new Promise((resolve) => pending.push(resolve)) })
    const first = v.lookup(hash) as Promise<KeyRecord | null>
    v.invalidate(hash) // the key is revoked while the first read is in flight
    const second = v.lookup(hash) as Promise<KeyRecord | null>
    expect(pending).toHaveLength(2) // the second lookup did not join the stale read
    pending[0]!(keyRecord()) // stale: read before the revoke
    pending[1]!(keyRecord({ status: 'revoked' }))
    expect((await first)?.status).toBe('active')
    expect((await second)?.status).toBe('revoked')
    const third = v.lookup(hash)
    expect(third instanceof Promise ? (await third)?.status : third?.status).toBe('revoked')
  })

  test('a failing load is not cached: the next lookup tries again', async () => {
    let fail = true
    const v = verifier({
      load: async () => {
        if (fail) throw new Error('database down')
        return keyRecord()
      },
    })
    await expect(Promise.resolve(v.verify(presented()))).rejects.toThrow('database down')
    fail = false
    expect((await v.verify(presented())).ok).toBe(true)
  })
})

describe('LruCache', () => {
  test('holds at most `capacity` entries, evicting the least recently used', () => {
    const cache = new LruCache<number>(3, () => NOW)
    cache.set('a', 1, 1000)
    cache.set('b', 2, 1000)
    cache.set('c', 3, 1000)
    expect(cache.get('a')).toBe(1) // a is now the youngest
    cache.set('d', 4, 1000) // evicts b
    expect(cache.size).toBe(3)
    expect(cache.get('b')).toBeUndefined()
    expect([cache.get('a'), cache.get('c'), cache.get('d')]).toEqual([1, 3, 4])
    for (let i = 0; i < 1000; i++) cache.set(`k${i}`, i, 1000)
    expect(cache.size).toBe(3)
    expect(cache.get('k999')).toBe(999)
    expect(cache.get('k996')).toBeUndefined()
  })

  test('re-setting a key refreshes it and does not grow the cache', () => {
    const cache = new LruCache<string>(2, () => NOW)
    cache.set('a', 'x', 1000)
    cache.set('a', 'y', 1000)
    expect(cache.size).toBe(1)
    expect(cache.get('a')).toBe('y')
  })

  test('entries expire after their ttl, and expired entries are dropped on read', () => {
    let now = NOW
    const cache = new LruCache<string>(10, () => now)
    cache.set('short', 's', 100)
    cache.set('long', 'l', 10_000)
    cache.set('zero', 'z', 0)
    expect(cache.get('zero')).toBeUndefined()
    now += 99
    expect(cache.get('short')).toBe('s')
    now += 1
    expect(cache.get('short')).toBeUndefined()
    expect(cache.get('long')).toBe('l')
    expect(cache.size).toBe(1)
  })

  test('null values are cached (a negative entry), distinct from a miss', () => {
    const cache = new LruCache<string | null>(10, () => NOW)
    cache.set('neg', null, 1000)
    expect(cache.get('neg')).toBeNull()
    expect(cache.get('other')).toBeUndefined()
  })

  test('delete and clear', () => {
    const cache = new LruCache<number>(10, () => NOW)
    cache.set('a', 1, 1000)
    cache.set('b', 2, 1000)
    cache.delete('a')
    expect(cache.get('a')).toBeUndefined()
    cache.clear()
    expect(cache.size).toBe(0)
  })
})

describe('key format', () => {
  test('mint: sk-<env>-<43 base62>, its SHA-256, first 12 and last 4', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const minted = mintKey('dev')
      expect(minted.plaintext).toMatch(/^sk-dev-[0-9A-Za-z]{43}$/)
      expect(minted.hash).toBe(new Bun.CryptoHasher('sha256').update(minted.plaintext).digest('hex'))
      expect(minted.hash).toMatch(/^[0-9a-f]{64}$/)
      expect(minted.start).toBe(minted.plaintext.slice(0, 12))
      expect(minted.end).toBe(minted.plaintext.slice(-4))
      seen.add(minted.plaintext)
    }
    expect(seen.size).toBe(200)
    expect(SECRET_LENGTH).toBeGreaterThanOrEqual(32)
    expect(mintKey('prod1').plaintext).toMatch(/^sk-prod1-[0-9A-Za-z]{43}$/)
  })

  test('mint uses every base62 character (no bias toward a subset)', () => {
    const chars = new Set<string>()
    for (let i = 0; i < 100; i++) for (const c of mintKey('dev').plaintext.slice(7)) chars.add(c)
    expect(chars.size).toBe(62)
  })

  test('mint refuses a bad environment slug', () => {
    for (const bad of ['', 'Prod', 'a-b', 'x'.repeat(17), 'dev ']) expect(() => mintKey(bad)).toThrow()
  })

  test('parse: the environment of a well-formed key; null otherwise', () => {
    expect(keyEnvironment(KEY)).toBe('dev')
    expect(keyEnvironment(mintKey('staging').plaintext)).toBe('staging')
    expect(keyEnvironment('sk-dev-' + 'a'.repeat(32))).toBe('dev')
    for (const bad of [
      '',
      'sk-dev-',
      'sk-dev-' + 'a'.repeat(31),
      'sk--' + 'a'.repeat(40),
      'sk-DEV-' + 'a'.repeat(40),
      'sk-' + 'x'.repeat(17) + '-' + 'a'.repeat(40),
      'pk-dev-' + 'a'.repeat(40),
      'sk-dev-' + 'a'.repeat(39) + '_',
      ' ' + KEY,
      KEY + ' ',
      KEY + '\n',
      'sk-dev-' + 'a'.repeat(20) + '-' + 'a'.repeat(20),
      'sk-dev-' + 'a'.repeat(257),
    ]) {
      expect(keyEnvironment(bad)).toBeNull()
    }
  })

  test('hash is the SHA-256 hex of the whole key', () => {
    expect(hashKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  test('mask never returns the whole key, at any length', () => {
    for (let n = 0; n <= 120; n++) {
      for (const key of ['Q'.repeat(n), mintKey('dev').plaintext.slice(0, n), crypto.getRandomValues(new Uint8Array(n)).toHex().slice(0, n)]) {
        const masked = maskKey(key)
        // The length note ("(5 characters)") is words, not key material.
        if (n > 0) expect(masked.replace(/\(\d+ characters\)/, '').includes(key)).toBe(false)
        if (n >= 4) expect(masked.includes(key)).toBe(false)
        // At most 16 characters of the key show, and never more than half of a short one.
        const shown = masked.replace(/…|\(\d+ characters\)/g, '')
        expect(shown.length).toBeLessThanOrEqual(16)
        if (n > 0) expect(shown.length).toBeLessThan(n)
        if (n < 24) expect(shown.length).toBeLessThanOrEqual(n / 2)
      }
    }
    expect(maskKey(KEY)).toBe(`${KEY.slice(0, 12)}…${KEY.slice(-4)}`)
    expect(maskKey('')).toBe('(0 characters)')
  })

  test('displayKey joins start and end; echo masks key-shaped input and cuts long input', () => {
    expect(displayKey('sk-dev-abcde', 'wxyz')).toBe('sk-dev-abcde…wxyz')
    const key = mintKey('dev').plaintext
    expect(echo(key)).toBe(maskKey(key))
    expect(echo('team_a')).toBe('team_a')
    expect(echo('t'.repeat(100))).toBe('t'.repeat(64) + '…')
  })
})
