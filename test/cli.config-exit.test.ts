/**
 * `bun run migrate` and `bun run rotate-encryption-key` read the database URL as the gateway does,
 * and a URL the gateway refuses as bad config (exit 2) is bad config for them too: exit 2, where
 * they exited 1 as for a database that failed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './support/boot-process.ts'

const MIGRATE = join(ROOT, 'src/cli/migrate.ts')
const ROTATE = join(ROOT, 'src/cli/rotate-encryption-key.ts')

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-cli-exit-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function run(script: string, databaseUrl: string): Promise<{ code: number; stderr: string }> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    DATABASE_URL: databaseUrl,
    SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'),
    SLUICE_ENCRYPTION_KEY_PREVIOUS: Buffer.alloc(32, 2).toString('base64'),
  }
  const child = Bun.spawn([process.execPath, script], { cwd: dir, env, stdout: 'ignore', stderr: 'pipe' })
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited])
  return { code, stderr }
}

describe('an unsupported DATABASE_URL', () => {
  for (const url of ['mysql://x', 'sqlite:rel.db', '']) {
    test(`${JSON.stringify(url)}: exit 2 from migrate and rotate-encryption-key, naming DATABASE_URL, nothing created`, async () => {
      for (const [script, name] of [[MIGRATE, 'migrate'], [ROTATE, 'rotate-encryption-key']] as const) {
        const { code, stderr } = await run(script, url)
        expect(code).toBe(2)
        expect(stderr).toStartWith(`${name}: invalid configuration (1 problem):\n  - DATABASE_URL: `)
      }
      expect(readdirSync(dir)).toEqual([])
      expect(existsSync(join(dir, 'rel.db'))).toBe(false)
    })
  }
})
