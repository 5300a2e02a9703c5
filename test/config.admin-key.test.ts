/**
 * SLUICE_ADMIN_KEY as it arrives from a secret file (docker secrets, env files, kubectl
 * --from-file): white space around the key is not part of it, and a value of white space alone is
 * no key at all.
 */
import { describe, expect, test } from 'bun:test'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { bootProcess } from './support/boot-process.ts'
import { freePort } from './support/redis-procs.ts'

const KEY = 'my-admin-key-0123456789abcdefXYZ'

async function adminKeyOf(value: string): Promise<string | null | string[]> {
  try {
    return (await loadConfig({ env: { SLUICE_ADMIN_KEY: value }, config: {} })).adminKey
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
}

describe('SLUICE_ADMIN_KEY', () => {
  test('white space around the key is dropped; the length is counted without it', async () => {
    expect(await adminKeyOf(`${KEY}\n`)).toBe(KEY)
    expect(await adminKeyOf(` ${KEY}\r\n`)).toBe(KEY)
    expect(await adminKeyOf(`${'a'.repeat(23)}\n`)).toEqual([
      'SLUICE_ADMIN_KEY: 23 characters is too short to guard the admin API; use at least 24 random ones (openssl rand -hex 24), or leave it unset to have one generated',
    ])
  })

  test('white space alone is refused, as is white space inside the key; empty is unset', async () => {
    expect(await adminKeyOf(' '.repeat(24))).toEqual(['SLUICE_ADMIN_KEY: holds only white space; set the key itself, or leave it unset to have one generated'])
    expect(await adminKeyOf('\n')).toEqual(['SLUICE_ADMIN_KEY: holds only white space; set the key itself, or leave it unset to have one generated'])
    expect(await adminKeyOf('my admin key 0123456789abcdef')).toEqual([
      'SLUICE_ADMIN_KEY: holds white space, which a bearer token cannot carry (Authorization: Bearer <key>); use letters, digits and -._~+/ only (openssl rand -hex 24)',
    ])
    expect(await adminKeyOf('')).toBeNull()
  })

  test('a key read from a file with its trailing newline opens the admin API', async () => {
    let status = 0
    const result = await bootProcess({
      env: { PORT: String(freePort()), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', SLUICE_ADMIN_KEY: `${KEY}\n` },
      whileUp: async (url) => {
        status = (await fetch(`${url}/admin/users`, { headers: { authorization: `Bearer ${KEY}` } })).status
      },
    })
    expect(result.listening).not.toBeNull()
    expect(status).toBe(200)
  }, 30_000)

  test('white space alone stops the boot with exit 2', async () => {
    const result = await bootProcess({ env: { PORT: String(freePort()), HOST: '127.0.0.1', SLUICE_ADMIN_KEY: ' '.repeat(24) } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('SLUICE_ADMIN_KEY: holds only white space')
  }, 30_000)
})
