/**
 * A gateway whose stdout reader goes away (a log shipper that died, `sluice | head`): its log
 * lines are lost and counted, and it keeps serving. A broken pipe is an error event on the
 * stream, which nothing handled: the process exited with EPIPE at the next request line.
 */
import { expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './support/boot-process.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import { freePort } from './support/redis-procs.ts'

test('stdout closed by its reader: the request lines are dropped and counted, the gateway keeps answering', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-stdout-'))
  const port = freePort()
  const proc = Bun.spawn([process.execPath, 'run', join(ROOT, 'src/main.ts')], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'info', SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const stderr = new Response(proc.stderr).text()
  try {
    // Read stdout until the boot line, then stop reading it for good: the pipe's reading end closes.
    const reader = proc.stdout.getReader()
    let out = ''
    const decoder = new TextDecoder()
    while (!out.includes('"sluice listening"')) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`the gateway stopped before listening: ${out}${await stderr}`)
      out += decoder.decode(value, { stream: true })
    }
    await reader.cancel()
    const url = `http://127.0.0.1:${port}`
    // Each refusal is a request line on stdout; the line writer flushes every 25 ms.
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      expect(res.status).toBe(401)
      await res.arrayBuffer()
      await Bun.sleep(60)
    }
    expect([proc.exitCode, (await fetch(`${url}/health`)).status]).toEqual([null, 200])
    expect(sampleValue(await scrape(url), 'sluice_log_lines_dropped_total')).toBeGreaterThanOrEqual(1)
  } finally {
    proc.kill('SIGTERM')
    await proc.exited
    rmSync(dir, { recursive: true, force: true })
  }
  expect(await stderr).not.toContain('EPIPE')
})
