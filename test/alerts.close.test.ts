/**
 * Closing the alert monitor while a delivery runs waits for it at most its timeout, and leaves
 * nothing behind once it has ended: a process that closed its gateway ends then, not a timeout
 * later. In a child process: whether something still holds it is what the test looks at.
 */
import { expect, test } from 'bun:test'

const at = (path: string) => JSON.stringify(new URL(path, import.meta.url).pathname)

/** Run `script` in a child process: whether it ended within 15 s, its exit code and output. */
async function runChild(script: string): Promise<{ ended: boolean; exitCode: number | null; out: string; err: string }> {
  const child = Bun.spawn([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' })
  const ended = await Promise.race([child.exited.then(() => true), Bun.sleep(15_000).then(() => false)])
  if (!ended) child.kill('SIGKILL')
  return { ended, exitCode: child.exitCode, out: (await new Response(child.stdout).text()).trim(), err: await new Response(child.stderr).text() }
}

test('a close that waited for a delivery in flight leaves no timer: the process ends once its delivery ended, not at the close timeout', async () => {
  const script = [
    `import { createDatabase } from ${at('../src/db/index.ts')}`,
    `import { migrateToLatest } from ${at('../src/db/migrate.ts')}`,
    `import { createLogger } from ${at('../src/lib/logger.ts')}`,
    `import { MetricsRegistry } from ${at('../src/metrics.ts')}`,
    `import { UpstreamHealth } from ${at('../src/upstream-health.ts')}`,
    `import { AlertMonitor } from ${at('../plugins/logging/alerts.ts')}`,
    // A receiver that takes a while: the delivery is in flight when close() is called.
    "const receiver = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: async () => { await Bun.sleep(300); return new Response('ok') } })",
    "const handle = await createDatabase('sqlite::memory:')",
    'await migrateToLatest(handle.db)',
    'const past = new Date(Date.now() - 60_000).toISOString()',
    "await handle.db.insertInto('alerts_sent').values({ id: 'test:close', kind: 'budget', subject: 'user:usr_close', threshold: 1, period: 'total', status: 'pending', attempts: 0, payload: JSON.stringify({ id: 'test:close' }), next_attempt_at: past, last_error: null, created_at: past, sent_at: null }).execute()",
    'const metrics = new MetricsRegistry()',
    "const monitor = new AlertMonitor(handle.db, { webhookUrl: `http://127.0.0.1:${receiver.port}/hook`, expiringWithinDays: 7, budgetThresholds: [1], checkMs: 60_000, deadKeyFailures: 1, retryBaseMs: 50, retryMaxMs: 1000, timeoutMs: 5000 }, { now: Date.now, logger: createLogger('silent'), upstreams: new UpstreamHealth(metrics), environment: 'dev', metrics })",
    'monitor.start()',
    'await Bun.sleep(100)',
    // Far longer than the test waits: only a close that leaves nothing lets the process end in time.
    'await monitor.close(60_000)',
    "const row = await handle.db.selectFrom('alerts_sent').select('status').where('id', '=', 'test:close').executeTakeFirst()",
    'await handle.close()',
    'receiver.stop(true)',
    'console.log(row?.status)',
  ].join('\n')
  expect(await runChild(script)).toEqual({ ended: true, exitCode: 0, out: 'sent', err: '' })
}, 30_000)
