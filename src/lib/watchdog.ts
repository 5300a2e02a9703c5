/**
 * Idle and total timeouts for upstream bodies that are already flowing to a client.
 *
 * A timer per chunk would cost a timer reset on every read; instead each body records when its
 * last chunk came, and one shared interval (running only while some body is watched) aborts the
 * upstream call of every body that went quiet for too long or ran past its deadline. The check is
 * as precise as the tick, which is a quarter of the shortest timeout watched (1 s at most).
 */

import { RETRY_UPSTREAM } from '../errors.ts'

/** Why a watched body was cut off: its idle or total timeout, or the gateway shutting down with it still running. */
export type TimeoutKind = 'idle' | 'total' | 'shutdown'

/** One upstream body under watch. */
export class BodyWatch {
  /** `performance.now()` of the last chunk (or of the start). */
  last: number
  /** Set when the watchdog aborted the call. */
  timedOut: TimeoutKind | null = null
  /** The body ended (Watchdog.end). */
  ended = false

  constructor(
    readonly controller: AbortController,
    readonly idleMs: number,
    /** `performance.now()` past which the call is cut off. */
    readonly deadline: number,
    now: number,
  ) {
    this.last = now
  }

  /** A chunk arrived. */
  touch(): void {
    this.last = performance.now()
  }

  /** How the cut-off reads to a client and in logs. */
  describe(provider: string): string {
    if (this.timedOut === 'shutdown') return 'The gateway is shutting down and its grace period for requests in flight is over; the answer was cut off. Retry the request.'
    return this.timedOut === 'idle'
      ? `Upstream provider "${provider}" sent nothing for ${this.idleMs} ms; the answer was cut off. ${RETRY_UPSTREAM}`
      : `Upstream provider "${provider}" did not finish its answer in time; the answer was cut off. ${RETRY_UPSTREAM}`
  }

  /** The error code the cut-off is reported with: a timeout's, or the gateway's own when it shut down. */
  get code(): 'upstream_timeout' | 'not_ready' {
    return this.timedOut === 'shutdown' ? 'not_ready' : 'upstream_timeout'
  }
}

const MAX_TICK_MS = 1000
const MIN_TICK_MS = 5

export class Watchdog {
  private readonly watches = new Set<BodyWatch>()
  /** Bodies watched and not ended yet, also those cut off (still ending): what a shutdown waits for. */
  private running = 0
  private timer: ReturnType<typeof setInterval> | null = null
  private tickMs = MAX_TICK_MS

  /** Watch a body whose upstream call `controller` aborts. */
  watch(controller: AbortController, idleMs: number, deadline: number): BodyWatch {
    const now = performance.now()
    const watch = new BodyWatch(controller, idleMs, deadline, now)
    this.watches.add(watch)
    this.running++
    const tick = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, Math.floor(Math.min(idleMs, deadline - now) / 4)))
    if (this.timer === null || tick < this.tickMs) this.start(tick)
    return watch
  }

  /** The body ended (finished, failed or cancelled): stop watching it. */
  end(watch: BodyWatch): void {
    this.watches.delete(watch)
    if (watch.ended) return
    watch.ended = true
    this.running--
  }

  /** Bodies watched right now. */
  get size(): number {
    return this.watches.size
  }

  /** Bodies not ended yet, watched or already cut off. */
  get open(): number {
    return this.running
  }

  /**
   * The gateway is shutting down with these bodies still running: each upstream call is aborted as
   * a timeout would be, so the streams the gateway writes end with an error event, not a reset.
   */
  shutdown(): void {
    for (const watch of this.watches) {
      watch.timedOut = 'shutdown'
      watch.controller.abort(new DOMException('the gateway is shutting down', 'AbortError'))
    }
    this.watches.clear()
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.watches.clear()
    this.running = 0
  }

  private start(tickMs: number): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.tickMs = tickMs
    this.timer = setInterval(() => this.check(), tickMs)
    // Never what keeps a process alive.
    this.timer.unref?.()
  }

  private check(): void {
    if (this.watches.size === 0) {
      // Stopped here rather than in end(): under load the set empties and fills many times a second.
      if (this.timer !== null) clearInterval(this.timer)
      this.timer = null
      return
    }
    const now = performance.now()
    for (const watch of this.watches) {
      const kind: TimeoutKind | null = now >= watch.deadline ? 'total' : now - watch.last >= watch.idleMs ? 'idle' : null
      if (kind === null) continue
      watch.timedOut = kind
      this.watches.delete(watch)
      watch.controller.abort(new DOMException(kind === 'idle' ? 'upstream went quiet' : 'upstream took too long', 'TimeoutError'))
    }
  }
}
