/**
 * `bun run rotate-encryption-key` as an operator runs it: a child process, in a directory whose
 * config file names the database, the keys in its environment.
 */
import { SQL } from 'bun'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDatabase } from '../db/index.ts'
import { decryptSecret, encryptSecret, envelopeKeyId, masterKey } from '../lib/secrets.ts'
import { startGateway } from '../../test/support/gateway.ts'
import { createTestPostgresDatabase, postgresUrlForTests } from '../../test/support/services.ts'

const SCRIPT = join(import.meta.dir, 'rotate-encryption-key.ts')
const ADMIN = 'rotate-cli-admin-key-0123456789abcdef'
const KEY_A = Buffer.alloc(32, 3).toString('base64')
const KEY_B = Buffer.alloc(32, 4).toString('base64')

interface RunResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

async function runRotate(cwd: string, extraEnv: Record<string, string | undefined> = {}, args: string[] = []): Promise<RunResult> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    DATABASE_URL: undefined,
    SLUICE_CONFIG: undefined,
    SLUICE_ENCRYPTION_KEY: KEY_B,
    SLUICE_ENCRYPTION_KEY_PREVIOUS: KEY_A,
    ...extraEnv,
  }
  const child = Bun.spawn([process.execPath, SCRIPT, ...args], { env, cwd, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  return { code, stdout, stderr }
}

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-rotate-cli-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('rotate-encryption-key finds the database as the gateway does', () => {
  test('without DATABASE_URL it re-seals the secrets of the database the config file names', async () => {
    const cwd = mkdtempSync(join(dir, 'config-'))
    const url = `sqlite://${join(cwd, 'gateway.db')}`
    const gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: url, SLUICE_ENCRYPTION_KEY: KEY_A } })
    try {
      const created = await fetch(`${gw.url}/admin/providers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          id: 'p',
          type: 'openai-compatible',
          base_url: 'http://127.0.0.1:9/v1',
          keys: [{ id: 'k', secret: 'sk-upstream-0123456789' }],
          headers: { 'api-key': 'header-secret-0123456789' },
        }),
      })
      expect(created.status).toBe(201)
    } finally {
      await gw.close()
    }
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url } }))

    const { code, stdout, stderr } = await runRotate(cwd)
    expect(stderr).toBe('')
    expect(code).toBe(0)
    // The key's secret and the provider's sealed headers.
    expect(stdout).toContain(`re-sealed 2 secret(s) under key ${masterKey(KEY_B).id}; 0 already were (${url})`)
    // The old key can go: a gateway with the new one alone opens every secret (it would not boot otherwise).
    const after = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: url, SLUICE_ENCRYPTION_KEY: KEY_B } })
    try {
      const provider = await fetch(`${after.url}/admin/providers/p`, { headers: { authorization: `Bearer ${ADMIN}` } })
      expect(((await provider.json()) as { headers: string[] }).headers).toEqual(['api-key'])
    } finally {
      await after.close()
    }
    const again = await runRotate(cwd)
    expect(again.stdout).toContain('re-sealed 0 secret(s)')

    const handle = await createDatabase(url)
    try {
      const rows = await handle.db.selectFrom('provider_keys').select('key_version').execute()
      expect(rows).toEqual([{ key_version: masterKey(KEY_B).id }])
    } finally {
      await handle.close()
    }
  })

  test('a bad URL, from the file or the variable, is bad config: exit code 2 naming where it came from, password masked', async () => {
    const cwd = mkdtempSync(join(dir, 'bad-'))
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: 'mysql://root:hunter2@localhost/sluice' } }))
    const cases: Record<string, string>[] = [{}, { DATABASE_URL: 'postgres://u:hunter2@h:port/db' }]
    for (const extra of cases) {
      const { code, stdout, stderr } = await runRotate(cwd, extra)
      expect(code).toBe(2)
      expect(stdout).toBe('')
      expect(stderr).toStartWith('rotate-encryption-key: invalid configuration (1 problem):\n')
      expect(stderr).toMatch(/\n {2}- (\/database\/url|DATABASE_URL): .*DATABASE_URL "(mysql:\/\/root|postgres:\/\/u):\*\*\*@/)
      expect(stderr.trim().split('\n')).toHaveLength(2)
      expect(stderr).not.toContain('hunter2')
    }
  })

  test('a config file that cannot be used exits 2 naming the problem', async () => {
    const cwd = mkdtempSync(join(dir, 'bad-config-'))
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: '${NO_SUCH_VARIABLE}' } }))
    const { code, stderr } = await runRotate(cwd)
    expect(code).toBe(2)
    expect(stderr).toContain('/database/url: environment variable NO_SUCH_VARIABLE is not set')
  })
})

describe('rotate-encryption-key and rows an older version wrote', () => {
  test('a deleted provider whose row still holds a base URL with a credential and headers in plain text is left with the masked URL only', async () => {
    const cwd = mkdtempSync(join(dir, 'legacy-deleted-'))
    const url = `sqlite://${join(cwd, 'gateway.db')}`
    const gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: url, SLUICE_ENCRYPTION_KEY: KEY_A } })
    try {
      const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
      const body = JSON.stringify({ id: 'gone', type: 'openai-compatible', base_url: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: 'sk-upstream-0123456789' }] })
      expect((await fetch(`${gw.url}/admin/providers`, { method: 'POST', headers, body })).status).toBe(201)
      expect((await fetch(`${gw.url}/admin/providers/gone`, { method: 'DELETE', headers })).status).toBe(200)
    } finally {
      await gw.close()
    }
    // As an older version left the row of a provider it deleted: its URL, credential and all.
    const handle = await createDatabase(url)
    try {
      await handle.db
        .updateTable('providers')
        .set({ base_url: 'http://proxy:legacy-password@127.0.0.1:9/v1?key=legacy-query', config: JSON.stringify({ headers: { 'api-key': 'legacy-header-value' } }) })
        .where('id', '=', 'gone')
        .execute()
    } finally {
      await handle.close()
    }
    const { code, stderr } = await runRotate(cwd, { DATABASE_URL: url })
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const after = await createDatabase(url)
    try {
      const row = await after.db.selectFrom('providers').select(['base_url', 'config', 'deleted_at']).where('id', '=', 'gone').executeTakeFirstOrThrow()
      expect(row.deleted_at).not.toBeNull()
      expect(`${row.base_url} ${row.config}`).not.toContain('legacy-password')
      expect(`${row.base_url} ${row.config}`).not.toContain('legacy-query')
      expect(row.config).toBe('{}')
    } finally {
      await after.close()
    }
  })

  test('headers and a base URL with a credential stored in plain text are sealed under the new key, the column masked', async () => {
    const cwd = mkdtempSync(join(dir, 'legacy-'))
    const url = `sqlite://${join(cwd, 'gateway.db')}`
    const gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: url, SLUICE_ENCRYPTION_KEY: KEY_A } })
    try {
      const created = await fetch(`${gw.url}/admin/providers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'p', type: 'openai-compatible', base_url: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: 'sk-upstream-0123456789' }] }),
      })
      expect(created.status).toBe(201)
    } finally {
      await gw.close()
    }
    // The row as a version from before headers and URLs were sealed left it.
    const legacyUrl = 'http://proxy:legacy-password@127.0.0.1:9/v1?key=legacy-query'
    const handle = await createDatabase(url)
    try {
      await handle.db.updateTable('providers').set({ base_url: legacyUrl, config: JSON.stringify({ headers: { 'api-key': 'legacy-header-value' }, timeouts: { total_ms: 9000 } }) }).where('id', '=', 'p').execute()
    } finally {
      await handle.close()
    }

    const { code, stdout, stderr } = await runRotate(cwd, { DATABASE_URL: url })
    expect(stderr).toBe('')
    expect(code).toBe(0)
    // The key secret, the headers and the base URL.
    expect(stdout).toContain(`re-sealed 3 secret(s) under key ${masterKey(KEY_B).id}`)
    const after = await createDatabase(url)
    try {
      const row = await after.db.selectFrom('providers').select(['base_url', 'config']).where('id', '=', 'p').executeTakeFirstOrThrow()
      for (const secret of ['legacy-password', 'legacy-query', 'legacy-header-value']) {
        expect(`${row.base_url} ${row.config}`).not.toContain(secret)
      }
      expect(row.base_url).toBe('http://proxy:***@127.0.0.1:9/v1?key=***')
      const stored = JSON.parse(row.config) as { headers_enc: string; base_url_enc: string; timeouts: unknown }
      const b = masterKey(KEY_B)
      expect(JSON.parse(decryptSecret([b], stored.headers_enc, 'p#headers'))).toEqual({ 'api-key': 'legacy-header-value' })
      expect(decryptSecret([b], stored.base_url_enc, 'p#base_url')).toBe(legacyUrl)
      expect(stored.timeouts).toEqual({ total_ms: 9000 })
    } finally {
      await after.close()
    }
    // A gateway with the new key alone serves it as before.
    const served = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: url, SLUICE_ENCRYPTION_KEY: KEY_B } })
    try {
      const view = (await (await fetch(`${served.url}/admin/providers/p`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { base_url: string; headers: string[] }
      expect(view.base_url).toBe('http://proxy:***@127.0.0.1:9/v1?key=***')
      expect(view.headers).toEqual(['api-key'])
    } finally {
      await served.close()
    }
    expect((await runRotate(cwd, { DATABASE_URL: url })).stdout).toContain('re-sealed 0 secret(s)')
  })
})

describe('rotate-encryption-key arguments', () => {
  test('an unknown argument exits 2 with the usage, before any database is opened', async () => {
    const cwd = mkdtempSync(join(dir, 'args-'))
    for (const args of [['--dry-run'], ['postgres://elsewhere/db'], ['--help-me']]) {
      const { code, stdout, stderr } = await runRotate(cwd, {}, args)
      expect(code).toBe(2)
      expect(stdout).toBe('')
      expect(stderr).toStartWith(`rotate-encryption-key: unknown argument ${args.join(' ')}\n`)
      expect(stderr).toContain('Usage: SLUICE_ENCRYPTION_KEY=<new key> SLUICE_ENCRYPTION_KEY_PREVIOUS=<old key>')
    }
    // The default database (./data/sluice.db) was not created.
    expect(readdirSync(cwd)).toEqual([])
  })

  test('a key that is not 32 bytes of base64 exits 2 naming its variable (and its place in the list), before any database is opened', async () => {
    const cwd = mkdtempSync(join(dir, 'bad-keys-'))
    const current = await runRotate(cwd, { SLUICE_ENCRYPTION_KEY: 'short' })
    expect(current.code).toBe(2)
    expect(current.stderr.trim()).toBe('rotate-encryption-key: SLUICE_ENCRYPTION_KEY: must be 32 bytes, base64-encoded (try: openssl rand -base64 32)')
    const previous = await runRotate(cwd, { SLUICE_ENCRYPTION_KEY_PREVIOUS: `${KEY_A},oops` })
    expect(previous.code).toBe(2)
    expect(previous.stderr.trim()).toBe(
      'rotate-encryption-key: SLUICE_ENCRYPTION_KEY_PREVIOUS: its key 2 is not 32 bytes, base64-encoded (each key of the comma-separated list is one, as SLUICE_ENCRYPTION_KEY is)',
    )
    expect(readdirSync(cwd)).toEqual([])
  })

  test('--help prints the usage and exits 0, keys set or not', async () => {
    const cwd = mkdtempSync(join(dir, 'help-'))
    for (const extra of [{}, { SLUICE_ENCRYPTION_KEY: undefined, SLUICE_ENCRYPTION_KEY_PREVIOUS: undefined }]) {
      const { code, stdout, stderr } = await runRotate(cwd, extra, ['--help'])
      expect(code).toBe(0)
      expect(stderr).toBe('')
      expect(stdout).toStartWith('Usage: ')
      expect(stdout).toContain('--help')
    }
    expect(readdirSync(cwd)).toEqual([])
  })
})

const postgresUrl = await postgresUrlForTests('src/cli/rotate-encryption-key.test.ts')

describe.skipIf(postgresUrl === null)('rotate-encryption-key while a gateway changes a provider (Postgres)', () => {
  test('a key secret and headers written by an admin PATCH while it runs are kept (and re-sealed), not overwritten with the old ones', async () => {
    const database = await createTestPostgresDatabase(postgresUrl ?? '', 'rotate-race')
    const a = masterKey(KEY_A)
    const b = masterKey(KEY_B)
    const gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: database.url, SLUICE_ENCRYPTION_KEY: KEY_A } })
    try {
      const created = await fetch(`${gw.url}/admin/providers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'p', type: 'openai-compatible', base_url: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: 'sk-old-secret-0123456789' }], headers: { 'api-key': 'old-header-0123456789' } }),
      })
      expect(created.status).toBe(201)
    } finally {
      await gw.close()
    }
    const admin = new SQL(database.url, { max: 2 })
    const cwd = mkdtempSync(join(dir, 'race-'))
    try {
      const [keyRow] = await admin<{ id: string }[]>`select id from provider_keys`
      const keyId = keyRow?.id ?? ''
      // The admin's change, as a gateway (still on the old key) writes it: its transaction holds
      // the tables while the rotation, having read the rows, waits to write them.
      const reserved = await admin.reserve()
      try {
        await reserved`begin`
        await reserved`lock table provider_keys, providers in share mode`
        let ended: RunResult | undefined
        const run = runRotate(cwd, { DATABASE_URL: database.url }).then((result) => (ended = result))
        for (;;) {
          const waiting = await admin`select 1 from pg_stat_activity where datname = ${database.name} and wait_event_type = 'Lock' and query ilike 'update%'`
          if (waiting.length > 0) break
          // It cannot have ended without waiting for the lock: say how it did.
          if (ended) throw new Error(`the rotation ended before writing: ${JSON.stringify(ended)}`)
          await Bun.sleep(20)
        }
        await reserved`update provider_keys set secret_enc = ${encryptSecret(a, 'sk-new-secret-0123456789', keyId)} where id = ${keyId}`
        const config = JSON.stringify({ headers_enc: encryptSecret(a, JSON.stringify({ 'api-key': 'new-header-0123456789' }), 'p#headers') })
        await reserved`update providers set config = ${config} where id = 'p'`
        await reserved`commit`
        const { code, stderr } = await run
        expect(stderr).toBe('')
        expect(code).toBe(0)
      } finally {
        reserved.release()
      }
      const [key] = await admin<{ secret_enc: string }[]>`select secret_enc from provider_keys`
      const [provider] = await admin<{ config: string }[]>`select config from providers where id = 'p'`
      const secretEnc = key?.secret_enc ?? ''
      const headersEnc = (JSON.parse(provider?.config ?? '{}') as { headers_enc: string }).headers_enc
      expect(decryptSecret([a, b], secretEnc, keyId)).toBe('sk-new-secret-0123456789')
      expect(JSON.parse(decryptSecret([a, b], headersEnc, 'p#headers'))).toEqual({ 'api-key': 'new-header-0123456789' })
      // And under the new key: the old one can go.
      expect([envelopeKeyId(secretEnc), envelopeKeyId(headersEnc)]).toEqual([b.id, b.id])
    } finally {
      await admin.close()
      await database.drop()
    }
  }, 30_000)
})
