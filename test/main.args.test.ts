/**
 * `bun run start` (and `bun run dev`) take no arguments: the settings are the environment's and the
 * config file's. `--help` prints them and exits 0; anything else is refused with them, exit 2. Both
 * before anything is created: no database, and no one-time admin or demo key printed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './support/boot-process.ts'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-main-args-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function run(script: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  // Were it to start, it would listen here (a port of this test's range) and be killed.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, PORT: '19498', HOST: '127.0.0.1' }
  const child = Bun.spawn([process.execPath, 'run', join(ROOT, script), ...args], { cwd, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('the gateway’s arguments', () => {
  for (const script of ['src/main.ts', 'src/start.ts']) {
    test(`${script} --help prints the usage and exits 0, creating nothing`, async () => {
      const cwd = mkdtempSync(join(dir, 'help-'))
      for (const help of ['--help', '-h']) {
        const { code, stdout, stderr } = await run(script, [help], cwd)
        expect({ code, stderr }).toEqual({ code: 0, stderr: '' })
        expect(stdout).toStartWith('Usage: bun run start\n')
        expect(stdout).toContain('SLUICE_CONFIG')
      }
      expect(readdirSync(cwd)).toEqual([])
    }, 30_000)

    test(`${script} --help names every variable of the README's Configuration table, as the README says it does`, async () => {
      const readme = await Bun.file(join(ROOT, 'README.md')).text()
      const start = readme.indexOf('## Configuration')
      const rows = readme.slice(start, readme.indexOf('\n## ', start + 1)).split('\n').filter((line) => line.startsWith('| `'))
      const variables = rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)].map((m) => m[1]!))
      expect(variables.length).toBeGreaterThan(10)
      const { stdout } = await run(script, ['--help'], mkdtempSync(join(dir, 'help-vars-')))
      expect(variables.filter((name) => !new RegExp(`\\b${name}\\b`).test(stdout))).toEqual([])
    }, 30_000)

    test(`${script} with an argument refuses it with the usage, exit 2, creating nothing`, async () => {
      const cwd = mkdtempSync(join(dir, 'args-'))
      const { code, stdout, stderr } = await run(script, ['--port', '9000'], cwd)
      expect(code).toBe(2)
      expect(stdout).toBe('')
      expect(stderr).toStartWith('sluice: unknown argument --port 9000; the gateway is configured by its environment and config file\n\nUsage: bun run start\n')
      expect(readdirSync(cwd)).toEqual([])
    }, 30_000)
  }
})
