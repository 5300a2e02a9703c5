/**
 * Upstream calls stopped when their client goes away.
 *
 * Bun marks a request's `signal` aborted when its client disconnects, listener or not. Adding an
 * `abort` listener to every request's signal before the upstream call and removing it after the
 * body took 2-3 % of the serving thread's samples in a profile of the full stack (about 1.5 % of
 * its CPU a request, measured: benchmarks/README.md). Here the calls in flight sit in a set
 * instead, and one shared interval, running only while some call is in flight, stops each call
 * whose client is gone. A client that leaves is noticed within `everyMs`.
 */

/** A call that can be stopped for its client. */
export interface ClientBound {
  /** The client request's signal (set by Bun when the client goes away). */
  readonly clientSignal: AbortSignal
  /** The client is gone: stop the call. Called once, after which the call is no longer watched. */
  clientGone(): void
}

/** How often calls in flight are checked, by default. */
export const CLIENT_CHECK_MS = 50

export class ClientWatch {
  private readonly calls = new Set<ClientBound>()
  private timer: ReturnType<typeof setInterval> | null = null

  constructor(private readonly everyMs = CLIENT_CHECK_MS) {}

  /** Watch a call until `delete` (or until its client goes). */
  add(call: ClientBound): void {
    this.calls.add(call)
    if (this.timer !== null) return
    this.timer = setInterval(() => this.check(), this.everyMs)
    // Never what keeps a process alive.
    this.timer.unref?.()
  }

  delete(call: ClientBound): void {
    this.calls.delete(call)
  }

  /** Calls watched right now. */
  get size(): number {
    return this.calls.size
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.calls.clear()
  }

  private check(): void {
    if (this.calls.size === 0) {
      // Stopped here rather than in delete(): under load the set empties and fills many times a second.
      if (this.timer !== null) clearInterval(this.timer)
      this.timer = null
      return
    }
    for (const call of this.calls) {
      if (!call.clientSignal.aborted) continue
      this.calls.delete(call)
      call.clientGone()
    }
  }
}
