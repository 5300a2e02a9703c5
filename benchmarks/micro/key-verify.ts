/**
 * Warm key verification: what the auth plugin does per request once a key's record is
 * cached (SHA-256 of the presented key, a bounded-cache lookup, the rules). Correctness is
 * checked first; then mitata measures. Target: median under 3 µs.
 *
 *   bun run benchmarks/micro/key-verify.ts
 */
import { bench, do_not_optimize, run, summary } from 'mitata'
import { createDatabase } from '../../src/db/index.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { mintKey } from '../../plugins/auth/key-format.ts'
import { KeyVerifier } from '../../plugins/auth/verify.ts'
import { emitBenchJson, fromMitata, resultNamed, target } from './lib/bench-json.ts'

const KEYS = 10_000
const handle = await createDatabase('sqlite::memory:')
await migrateToLatest(handle.db)
const at = new Date().toISOString()
await handle.db.insertInto('users').values({ id: 'usr_bench', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at }).execute()
const plaintexts: string[] = []
for (let i = 0; i < KEYS; i++) {
  const minted = mintKey('dev')
  plaintexts.push(minted.plaintext)
  await handle.db
    .insertInto('api_keys')
    .values({
      id: `key_${i}`, hash: minted.hash, start: minted.start, end: minted.end, environment: 'dev', user_id: 'usr_bench', team_id: null, name: null,
      models: JSON.stringify(['mock-gpt']), scopes: null, limits: JSON.stringify({ rpm: 600 }), budget: null, status: 'active', expires_at: null,
      created_at: at, updated_at: at, last_used_at: null, revoked_at: null, revoked_reason: null, rotated_from: null, rotated_to: null, grace_until: null, metadata: null,
    })
    .execute()
}

const verifier = new KeyVerifier({ db: handle.db, environment: 'dev', now: Date.now, cacheSize: 100_000, cacheTtlMs: 600_000, negativeTtlMs: 5_000 })
// Warm every key, and check the verdicts before measuring anything.
for (const key of plaintexts) {
  const verdict = await verifier.verify({ key, endpoint: 'chat.completions', model: 'mock-gpt' })
  if (!verdict.ok) throw new Error(`warm-up verdict was a refusal: ${verdict.error.code}`)
}
const sync = verifier.verify({ key: plaintexts[0]!, endpoint: 'chat.completions', model: 'mock-gpt' })
if (sync instanceof Promise || !sync.ok) throw new Error('a warm key must be verified synchronously, from the cache')
const refused = verifier.verify({ key: plaintexts[1]!, endpoint: 'chat.completions', model: 'gpt-4o' })
if (refused instanceof Promise || refused.ok || refused.error.code !== 'model_not_allowed') throw new Error('expected model_not_allowed')
const missesBefore = verifier.misses

let i = 0
summary(() => {
  bench('warm key verification (10k keys cached)', () => {
    do_not_optimize(verifier.verify({ key: plaintexts[i++ % KEYS]!, endpoint: 'chat.completions', model: 'mock-gpt' }))
  })
  bench('sha-256 of a key alone', () => {
    do_not_optimize(new Bun.CryptoHasher('sha256').update(plaintexts[i++ % KEYS]!).digest('hex'))
  })
  bench('malformed key (no hash, no lookup)', () => {
    do_not_optimize(verifier.verify({ key: 'sk-dev-short', endpoint: 'chat.completions', model: 'mock-gpt' }))
  })
})

const results = fromMitata(await run())
if (verifier.misses !== missesBefore) throw new Error(`the measured loop read the database ${verifier.misses - missesBefore} times`)
console.log(`database reads during the measured loop: 0 (cache hits ${verifier.hits})`)
await handle.close()
emitBenchJson({
  bench: 'key-verify',
  verified: [
    `${KEYS} keys warmed, every verdict admitted`,
    'a warm key is verified synchronously, from the cache',
    'a model outside the key is refused with model_not_allowed',
    'the measured loop read the database 0 times',
  ],
  results,
  targets: [target('warm key verification, median', resultNamed(results, 'warm key verification (10k keys cached)').value, 'ns', '<', 3000)],
})
