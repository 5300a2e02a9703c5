/**
 * The request-log writer thread makes its own Postgres connection: `?connect_timeout=` of the
 * database URL bounds it as it bounds the gateway's own (src/db/index.ts), so a server that takes
 * the connection and never answers fails a write then, not at the client's own 30 s (nor when the
 * write's time is up and the thread is ended for it).
 */
import { expect, test } from 'bun:test'
import { createDatabase } from '../src/db/index.ts'
import { requestLogSink } from '../plugins/logging/sink.ts'
import { logRow } from './support/logging.ts'

test("a write through the writer thread to a Postgres server that never answers fails at the URL's connect_timeout, with the connection's timeout", async () => {
  const silent = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const url = `postgres://u@127.0.0.1:${silent.port}/app?connect_timeout=1`
  const handle = await createDatabase(url)
  // The write's own time is far longer than the test's: only the connection's bound can end it in time.
  const sink = requestLogSink(handle, { maxRowsPerStatement: 500, databaseUrl: url, thread: true, writeTimeoutMs: 120_000 })
  try {
    expect(sink.mode).toBe('thread')
    const outcome = await sink.write([logRow('req_silent', new Date().toISOString())], AbortSignal.timeout(120_000)).then(
      () => 'written',
      (error: unknown) => String(error),
    )
    expect(outcome).toContain('timeout')
    expect(outcome).not.toContain('unanswered')
  } finally {
    await sink.close()
    await handle.close()
    silent.stop(true)
  }
}, 15_000)
