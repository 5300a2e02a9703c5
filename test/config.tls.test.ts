/**
 * SLUICE_TLS_CERT and SLUICE_TLS_KEY are checked with the config: each file must hold PEM, and
 * the key must be the certificate's, or the boot stops (exit 2, naming the variable) before the
 * database is created and the one-time keys printed. The pair in test/fixtures/tls is for tests
 * only: `cert.pem` is self-signed for 127.0.0.1 and localhost (100 years), issued for `key.pem`;
 * `other-key.pem` belongs to no certificate.
 */
import { describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { bootProcess } from './support/boot-process.ts'
import { freePort } from './support/redis-procs.ts'

const TLS = join(import.meta.dir, 'fixtures/tls')
const CERT = join(TLS, 'cert.pem')
const KEY = join(TLS, 'key.pem')
const OTHER_KEY = join(TLS, 'other-key.pem')
/** A readable file that is not PEM. */
const NOT_PEM = join(import.meta.dir, 'config.tls.test.ts')

async function tlsProblems(cert: string, key: string): Promise<string[]> {
  const error = await loadConfig({ env: { SLUICE_TLS_CERT: cert, SLUICE_TLS_KEY: key }, config: {} }).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}

describe('the certificate and key are checked at load', () => {
  test('a key that is not the certificate’s is named by SLUICE_TLS_KEY', async () => {
    expect(await tlsProblems(CERT, OTHER_KEY)).toEqual([
      `SLUICE_TLS_KEY: ${OTHER_KEY} is not the private key of the certificate in ${CERT} (SLUICE_TLS_CERT); give the key the certificate was issued for`,
    ])
  })

  test('files that are not PEM are named by their variables, both at once; cert and key swapped too', async () => {
    expect(await tlsProblems(NOT_PEM, NOT_PEM)).toEqual([
      `SLUICE_TLS_CERT: ${NOT_PEM} holds no PEM certificate (a block beginning -----BEGIN CERTIFICATE-----)`,
      `SLUICE_TLS_KEY: ${NOT_PEM} holds no PEM private key the gateway can use (a block beginning -----BEGIN PRIVATE KEY-----, not protected by a passphrase)`,
    ])
    expect((await tlsProblems(KEY, CERT)).map((p) => p.slice(0, p.indexOf(':')))).toEqual(['SLUICE_TLS_CERT', 'SLUICE_TLS_KEY'])
  })

  test('the pair that belongs together loads', async () => {
    const config = await loadConfig({ env: { SLUICE_TLS_CERT: CERT, SLUICE_TLS_KEY: KEY }, config: {} })
    expect(config.tls).toEqual({ cert: CERT, key: KEY })
  })
})

describe('as the gateway boots', () => {
  test('a mismatched key stops it with exit 2, before the database is created', async () => {
    const result = await bootProcess({ env: { PORT: String(freePort()), HOST: '127.0.0.1', SLUICE_TLS_CERT: CERT, SLUICE_TLS_KEY: OTHER_KEY } })
    expect(result.code).toBe(2)
    expect(result.stderr.trim()).toBe(
      `sluice: invalid configuration (1 problem):\n  - SLUICE_TLS_KEY: ${OTHER_KEY} is not the private key of the certificate in ${CERT} (SLUICE_TLS_CERT); give the key the certificate was issued for`,
    )
    expect(result.stdout).not.toContain('sluice-admin-')
    expect(existsSync(join(result.dir, 'data'))).toBe(false)
  }, 30_000)

  test('the right pair serves HTTPS', async () => {
    let status = 0
    const result = await bootProcess({
      env: { PORT: String(freePort()), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', SLUICE_TLS_CERT: CERT, SLUICE_TLS_KEY: KEY },
      whileUp: async (url) => {
        expect(url).toStartWith('https://127.0.0.1:')
        status = (await fetch(`${url}/health`, { tls: { ca: await Bun.file(CERT).text() } })).status
      },
    })
    expect(result.listening).not.toBeNull()
    expect(status).toBe(200)
  }, 30_000)
})
