/**
 * Idle and total timeouts for upstream bodies that are already flowing to a client.
 *
 * A timer per chunk would cost a timer reset on every read; instead each body records when its
 * last chunk came, and one shared interval (running only while some body is watched) aborts the
 * upstream call of every body that went quiet for too long or ran past its deadline. The check is
 * as precise as the tick, which is a quarter of the shortest timeout watched (1 s at most).
 */

/** Why a watched body was cut off. */
export type TimeoutKind = 'idle' | 'total'

/** One upstream body under watch. */
export class BodyWatch {
  /** `performance.now()` of the last chunk (or of the start). */
  last: number
  /** Set when the watchdog aborted the call. */
  timedOut: TimeoutKind | null = null

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
    return this.timedOut === 'idle'
      ? `Upstream provider "${provider}" sent nothing for ${this.idleMs} ms; the answer was cut off.`
      : `Upstream provider "${provider}" did not finish its answer in time; the answer was cut off.`
  }
}

const MAX_TICK_MS = 1000
const MIN_TICK_MS = 5

export class Watchdog {
  private readonly watches = new Set<BodyWatch>()
  private timer: ReturnType<typeof setInterval> | null = null
  private tickMs = MAX_TICK_MS

  /** Watch a body whose upstream call `controller` aborts. */
  watch(controller: AbortController, idleMs: number, deadline: number): BodyWatch {
    const now = performance.now()
    const watch = new BodyWatch(controller, idleMs, deadline, now)
    this.watches.add(watch)
    const tick = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, Math.floor(Math.min(idleMs, deadline - now) / 4)))
    if (this.timer === null || tick < this.tickMs) this.start(tick)
    return watch
  }

  /** The body ended (finished, failed or cancelled): stop watching it. */
  end(watch: BodyWatch): void {
    this.watches.delete(watch)
  }

  /** Bodies watched right now. */
  get size(): number {
    return this.watches.size
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.watches.clear()
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
