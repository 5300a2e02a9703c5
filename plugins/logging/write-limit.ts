/**
 * How a request-log write on Postgres keeps to `write_timeout_ms` so that its outcome is the
 * database's: its INSERTs run in one transaction whose statements the server itself stops when
 * the write's time is up. A write the gateway gave up on therefore cannot commit later (an
 * INSERT left waiting for a lock would otherwise run, and commit, once the lock went), and the
 * writer hears how each write really ended. Shared by the gateway's connection (sink.ts) and
 * the writer thread (sink-worker.ts), so it holds no code of either.
 */

/**
 * Run before each statement of a write's transaction with the time left, in ms, as its one
 * parameter: a statement running (or waiting for a lock) past it is cancelled by the server,
 * which fails the transaction; and a transaction left idle that long (its client gone between
 * two statements) is ended by the server too, instead of holding the locks of the rows it wrote.
 */
export const LIMIT_STATEMENT = "select set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $1, true)"

/**
 * After the writer stopped waiting for a write (its `write_timeout_ms` passed), how long its
 * answer may still take before the connection is given up for dead. The server stops the
 * write on its own at about the same moment, so an answer normally follows within a round trip.
 */
export const ANSWER_GRACE_MS = 2000

/**
 * The time left before `deadline` (epoch ms, set when the writer handed the batch over, so the
 * wait for a connection counts too and the main thread and the writer thread agree on it) as
 * the parameter of LIMIT_STATEMENT; throws once it has passed.
 */
export function timeLeft(deadline: number): string {
  const left = Math.ceil(deadline - Date.now())
  if (left <= 0) throw new Error('the request-log write ran out of its write_timeout_ms and was rolled back')
  return String(left)
}
