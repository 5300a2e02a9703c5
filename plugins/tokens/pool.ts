import { GatewayError } from '../../src/errors.ts'
import type { Logger } from '../../src/lib/logger.ts'
import type { CountJob, CountReply } from './worker.ts'

export interface CountPoolOptions {
  /** Worker threads at most. */
  size: number
  /** Counts waiting or running at once, over all workers; more are refused at once. */
  maxPending: number
  /** A count not answered within this many ms of its worker starting it fails, and its worker is replaced. */
  timeoutMs: number
  logger: Logger
  /** The worker script. @default ./worker.ts */
  script?: URL
}

/** A job as a caller hands it in; the pool gives it its id. */
export type CountRequest = CountJob extends infer J ? (J extends CountJob ? Omit<J, 'id'> : never) : never

interface Pending {
  resolve(tokens: number): void
  reject(error: Error): void
  /** Set while it is its worker's oldest count, the one the worker is on. */
  timer: ReturnType<typeof setTimeout> | undefined
}

/** Bun's Worker: `ref`/`unref` let an idle pool not hold the process open (absent from the DOM typing some files pull in). */
type BunWorker = Worker & { ref(): void; unref(): void }

interface Slot {
  readonly worker: BunWorker
  /** Its counts in the order sent, which is the order the worker runs them. */
  readonly pending: Map<number, Pending>
  readonly index: number
}

/**
 * A small pool of counting workers. Nothing starts until the first count, so a gateway whose
 * providers always report usage never loads the encoders. Each job goes to the least busy
 * worker (a new one is started while there is room and every running one is busy). A worker
 * runs one count at a time, in the order sent; a count's timeout runs from when its worker starts
 * it (the previous one answered), so counts waiting their turn under load do not overrun. The WASM
 * call cannot be interrupted, so a count that overruns its timeout ends its worker, and the counts
 * queued behind it fail with it (callers fall back).
 */
export class CountPool {
  private readonly slots: (Slot | undefined)[]
  private readonly script: URL
  private nextId = 1
  private pendingTotal = 0
  private closed = false
  /** Workers started since boot (restarts included). */
  started = 0

  constructor(private readonly options: CountPoolOptions) {
    this.slots = Array.from({ length: options.size }, () => undefined)
    this.script = options.script ?? new URL('./worker.ts', import.meta.url)
  }

  /** Workers running now. */
  get running(): number {
    return this.slots.filter(Boolean).length
  }

  /** Counts waiting or running now. */
  get pending(): number {
    return this.pendingTotal
  }

  run(request: CountRequest): Promise<number> {
    if (this.closed) return Promise.reject(new GatewayError('internal_error', 'The gateway is shutting down; token counting has stopped.'))
    if (this.pendingTotal >= this.options.maxPending) {
      return Promise.reject(
        new GatewayError('rate_limit_exceeded', `The gateway's token counter is at capacity (${this.options.maxPending} counts pending); retry in a moment.`, {
          headers: { 'retry-after': '1' },
        }),
      )
    }
    return this.enqueue(this.pick(), request)
  }

  /** Start every worker now and build these encoders in each, in the background (the `preload` option). */
  warm(encodings: readonly CountJob['encoding'][]): void {
    for (let i = 0; i < this.slots.length; i++) {
      for (const encoding of encodings) this.enqueue(i, { op: 'text', encoding, text: '' }).catch(() => {})
    }
  }

  private enqueue(index: number, request: CountRequest): Promise<number> {
    const slot = this.slots[index] ?? this.spawn(index)
    const id = this.nextId++
    return new Promise<number>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, timer: undefined })
      this.pendingTotal++
      if (slot.pending.size === 1) {
        slot.worker.ref()
        this.timeHead(slot)
      }
      try {
        slot.worker.postMessage({ ...request, id } as CountJob)
      } catch (error) {
        this.settle(slot, id)?.reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
  }

  /** Stop every worker; counts still pending fail. */
  async close(): Promise<void> {
    this.closed = true
    for (let i = 0; i < this.slots.length; i++) this.stop(i, () => new GatewayError('internal_error', 'The gateway is shutting down; token counting has stopped.'))
  }

  /** The least busy running worker, or a free place for a new one when every running worker is busy. */
  private pick(): number {
    let best = -1
    let free = -1
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i]
      if (!slot) {
        if (free < 0) free = i
        continue
      }
      if (best < 0 || slot.pending.size < this.slots[best]!.pending.size) best = i
    }
    if (best < 0) return free
    return this.slots[best]!.pending.size > 0 && free >= 0 ? free : best
  }

  private spawn(index: number): Slot {
    const worker = new Worker(this.script) as BunWorker
    const slot: Slot = { worker, pending: new Map(), index }
    this.slots[index] = slot
    this.started++
    worker.unref()
    worker.onmessage = (event: MessageEvent<CountReply>) => {
      const reply = event.data
      const pending = this.settle(slot, reply.id)
      if (!pending) return
      if ('error' in reply) pending.reject(new Error(`token counting failed: ${reply.error}`))
      else pending.resolve(reply.tokens)
    }
    worker.onerror = (event) => {
      this.options.logger.error('token counting worker failed; restarting it on the next count', { error: event.message })
      if (this.slots[index] === slot) this.stop(index, () => new Error(`token counting worker failed: ${event.message}`))
    }
    // A worker that ends on its own (exits, or is ended by the runtime) answers nothing more: its counts
    // fail now rather than at their timeout, and the next count starts another. Ended by `stop`, it is gone from its slot.
    worker.addEventListener('close', () => {
      if (this.slots[index] !== slot) return
      this.options.logger.error('token counting worker exited; restarting it on the next count', { pending: slot.pending.size })
      this.stop(index, () => new Error('token counting worker exited before answering'))
    })
    return slot
  }

  /** Forget a job (answered, failed or timed out); the worker may sleep once it has none, else its next count's time starts. */
  private settle(slot: Slot, id: number): Pending | undefined {
    const pending = slot.pending.get(id)
    if (!pending) return undefined
    slot.pending.delete(id)
    clearTimeout(pending.timer)
    this.pendingTotal--
    if (slot.pending.size === 0) slot.worker.unref()
    else if (pending.timer !== undefined) this.timeHead(slot)
    return pending
  }

  /** Starts the timeout of the count a live worker is on now (its oldest), unless started. */
  private timeHead(slot: Slot): void {
    if (this.slots[slot.index] !== slot) return
    const head = slot.pending.entries().next()
    if (head.done || head.value[1].timer !== undefined) return
    const id = head.value[0]
    head.value[1].timer = setTimeout(() => this.overrun(slot, id), this.options.timeoutMs)
  }

  private overrun(slot: Slot, id: number): void {
    const index = slot.index
    if (this.slots[index] !== slot) return
    const ms = this.options.timeoutMs
    this.options.logger.warn('a token count overran its timeout; restarting its worker', { timeout_ms: ms, queued: slot.pending.size - 1 })
    this.stop(index, (jobId) =>
      jobId === id
        ? new GatewayError('rate_limit_exceeded', `Counting the tokens of this request took longer than ${ms} ms (the prompt is very large or the counter is busy); retry later or send a shorter prompt.`, { headers: { 'retry-after': '1' } })
        : new GatewayError('rate_limit_exceeded', `The gateway's token counter was restarted after a count overran ${ms} ms; retry in a moment.`, { headers: { 'retry-after': '1' } }),
    )
  }

  private stop(index: number, reason: (id: number) => Error): void {
    const slot = this.slots[index]
    if (!slot) return
    this.slots[index] = undefined
    for (const id of [...slot.pending.keys()]) this.settle(slot, id)?.reject(reason(id))
    slot.worker.terminate()
  }
}
