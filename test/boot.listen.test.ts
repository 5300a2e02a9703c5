/**
 * Where the gateway listens: a port another process holds stops the boot before anything is
 * created (the one-time keys would go out with a boot that cannot serve), saying so plainly.
 */
import { describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { bootProcess } from './support/boot-process.ts'
import { freePort } from './support/redis-procs.ts'

describe('a port in use', () => {
  test('exit 1 naming the port and host, before the database is created or a key printed', async () => {
    const busy = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('another process') })
    // Read now: a stopped server's port reads 0.
    const port = busy.port
    try {
      const result = await bootProcess({ env: { PORT: String(port), HOST: '127.0.0.1' } })
      expect(result.code).toBe(1)
      expect(result.stderr.trim()).toBe(`sluice: port ${port} on 127.0.0.1 is in use (another process listens there); stop it, or set PORT to a free port`)
      expect(result.stdout).not.toContain('sluice-admin-')
      expect(existsSync(join(result.dir, 'data'))).toBe(false)

      // Once the port is free, the first start is still the first: the keys are printed then.
      busy.stop(true)
      const again = await bootProcess({ dir: result.dir, env: { PORT: String(port), HOST: '127.0.0.1' } })
      expect(again.listening).not.toBeNull()
      expect(again.stdout).toContain('sluice-admin-')
    } finally {
      busy.stop(true)
    }
  }, 30_000)

  test('SLUICE_REUSE_PORT=1 skips the check: gateways share the port', async () => {
    const port = freePort()
    const first = Bun.serve({ port, hostname: '127.0.0.1', reusePort: true, fetch: () => new Response('first') })
    try {
      const result = await bootProcess({ env: { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', SLUICE_REUSE_PORT: '1' } })
      expect(result.listening).not.toBeNull()
    } finally {
      first.stop(true)
    }
  }, 30_000)

  test('SLUICE_REUSE_PORT=true is refused naming the variable (exit 2), where it was taken for unset and the port then reported in use', async () => {
    const port = freePort()
    const first = Bun.serve({ port, hostname: '127.0.0.1', reusePort: true, fetch: () => new Response('first') })
    try {
      const result = await bootProcess({ env: { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', SLUICE_REUSE_PORT: 'true' } })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain('SLUICE_REUSE_PORT: "true" is neither 1')
    } finally {
      first.stop(true)
    }
  }, 30_000)
})

describe('a database that cannot be reached', () => {
  test('exit 1 naming the database (its password masked), where the line said only "Failed to connect"', async () => {
    const port = freePort()
    const result = await bootProcess({ env: { PORT: String(freePort()), HOST: '127.0.0.1', DATABASE_URL: `postgres://sluice:hunter2@127.0.0.1:${port}/sluice` } })
    expect(result.code).toBe(1)
    expect(result.stderr).toStartWith(`sluice: failed to start: cannot use the database postgres://sluice:***@127.0.0.1:${port}/sluice: `)
    expect(result.stderr).toContain('ERR_POSTGRES_CONNECTION_REFUSED')
    expect(result.stderr).not.toContain('hunter2')
  }, 30_000)
})
