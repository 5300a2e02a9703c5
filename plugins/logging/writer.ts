import { BoundedQueue } from './queue.ts'

/**
 * Writes one batch; throws when the backend did not take it (the rows are then kept and retried).
 * `signal` aborts when the write has taken `writeTimeoutMs`: the sink then stops the write and
 * settles as it really ended, so that a batch counted as failed (or, at shutdown, as dropped)
 * is never stored later.
 */
export type BatchSink<T> = (rows: T[], signal: AbortSignal) => Promise<void>

export interface BatchWriterOptions {
  /** Most rows waiting; beyond it new rows are dropped and counted. */
  queueSize: number
  /** Most rows per write. */
  batchSize: number
  /** A partial batch is written this long after its first row arrived. */
  flushMs: number
  /** First wait after a failed write; doubled on each failure in a row, with ±20 % jitter. */
  retryBaseMs: number
  /** Longest wait between retries. */
  retryMaxMs: number
  /** A write taking longer than this counts as failed (its rows are retried; the sink must be idempotent). */
  writeTimeoutMs: number
}

/** What the writer tells its owner (metrics, logs). */
export interface BatchWriterEvents {
  written?(rows: number, ms: number): void
  failed?(error: unknown, failuresInARow: number, retryInMs: number): void
  recovered?(failuresInARow: number): void
  dropped?(reason: 'queue_full' | 'shutdown', rows: number): void
}

/**
 * Rows in, batches out: a bounded queue drained by one writer at a time. Full batches are
 * written back to back; a partial batch waits `flushMs`. A failed write keeps its rows at the
 * head of the queue and is retried with capped exponential backoff, so an outage of the
 * backend delays rows, and loses them only when the queue bound is reached (drop-newest,
 * counted) or when `close` runs out of time (counted).
 */
export class BatchWriter<T> {
  readonly queue: BoundedQueue<T>
  /** Rows written since start. */
  written = 0
  /** Rows dropped since start, by reason. */
  readonly dropped = { queue_full: 0, shutdown: 0 }
  /** Failed writes since start. */
  errors = 0
  private failuresInARow = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private writing: Promise<void> | null = null
  /** Rows of the batch being written now (still at the head of the queue until it succeeds). */
  private inFlight = 0
  private closing = false
  private closed = false

  constructor(
    private readonly sink: BatchSink<T>,
    private readonly options: BatchWriterOptions,
    private readonly events: BatchWriterEvents = {},
  ) {
    this.queue = new BoundedQueue<T>(options.queueSize)
  }

  /** Queue a row. False when it was dropped (queue full, or the writer is closed). */
  push(row: T): boolean {
    if (this.closed || !this.queue.push(row)) {
      const reason = this.closed ? 'shutdown' : 'queue_full'
      this.dropped[reason]++
      this.events.dropped?.(reason, 1)
      return false
    }
    this.schedule()
    return true
  }

  /** Whether the last write failed and the writer is waiting to retry. */
  get failing(): boolean {
    return this.failuresInARow > 0
  }

  /**
   * Write everything that waits, retrying failed writes until `timeoutMs` has passed. Rows still
   * waiting then are dropped and counted (reason `shutdown`). Rows pushed afterwards are dropped too.
   */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true
    this.clearTimers()
    const deadline = performance.now() + timeoutMs
    const left = () => Math.max(0, deadline - performance.now())
    while (left() > 0) {
      if (!this.writing) {
        if (this.queue.size === 0) break
        this.start()
      }
      await Promise.race([this.writing, Bun.sleep(left())])
      if (this.failuresInARow > 0 && this.queue.size > 0 && !this.writing) await Bun.sleep(Math.min(this.backoff(), left()))
    }
    this.closed = true
    this.clearTimers()
    // A batch still being written is counted when its write ends: written, or dropped if it fails.
    this.dropShutdown(this.queue.truncate(this.writing ? this.inFlight : 0))
  }

  /**
   * Resolves once no write is under way, or after `maxMs`. After close, and once the sink is closed
   * (which ends a write it still held), the batch that was being written is then counted.
   */
  async settled(maxMs: number): Promise<void> {
    if (this.writing) await Promise.race([this.writing, Bun.sleep(maxMs)])
  }

  private dropShutdown(lost: number): void {
    if (lost > 0) {
      this.dropped.shutdown += lost
      this.events.dropped?.('shutdown', lost)
    }
  }

  private schedule(): void {
    if (this.writing || this.retryTimer || this.closing) return
    if (this.queue.size >= this.options.batchSize) this.start()
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.start()
      }, this.options.flushMs)
      this.timer.unref?.()
    }
  }

  private start(): void {
    if (this.writing) return
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.writing = this.drain().finally(() => {
      this.writing = null
      if (this.queue.size > 0 && !this.retryTimer) this.schedule()
    })
  }

  /** Write the head batch, then more while full batches wait (or everything, when closing). */
  private async drain(): Promise<void> {
    let first = true
    while (this.queue.size > 0 && (first || this.closing || this.queue.size >= this.options.batchSize)) {
      first = false
      const batch = this.queue.peek(this.options.batchSize)
      const started = performance.now()
      this.inFlight = batch.length
      try {
        await this.sink(batch, AbortSignal.timeout(this.options.writeTimeoutMs))
      } catch (error) {
        this.inFlight = 0
        // Closed while it was being written: nothing will retry it.
        if (this.closed) {
          this.errors++
          this.dropShutdown(this.queue.clear())
          return
        }
        this.errors++
        this.failuresInARow++
        const wait = this.backoff()
        this.events.failed?.(error, this.failuresInARow, wait)
        if (!this.closing) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined
            this.start()
          }, wait)
          this.retryTimer.unref?.()
        }
        return
      }
      this.inFlight = 0
      this.queue.shift(batch.length)
      this.written += batch.length
      if (this.failuresInARow > 0) {
        this.events.recovered?.(this.failuresInARow)
        this.failuresInARow = 0
      }
      this.events.written?.(batch.length, performance.now() - started)
    }
  }

  private backoff(): number {
    const exp = this.options.retryBaseMs * 2 ** Math.min(30, Math.max(0, this.failuresInARow - 1))
    return Math.round(Math.min(this.options.retryMaxMs, exp) * (0.8 + Math.random() * 0.4))
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    this.timer = undefined
    this.retryTimer = undefined
  }
}
