import { RedisClient as NativeRedis } from 'bun'
import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from '../../src/redis.ts'
import { waitAtMost, within } from '../../src/lib/within.ts'

/** A script argument: a key or a number, or binary (a packed batch, see pack.ts). */
export type ScriptArg = string | number | Buffer

/** What the Redis quota store sends: scripts, and plain ZREMs. Every call fails fast. */
export interface ScriptConnection {
  /** ms after which a call is given up on (it may still run in Redis); undefined: never. */
  readonly timeoutMs?: number
  evalsha(sha: string, args: readonly ScriptArg[]): Promise<unknown>
  eval(script: string, args: readonly ScriptArg[]): Promise<unknown>
  zrem(key: string, member: string): Promise<unknown>
  close(): void
}

/**
 * A call that never left this process (the connection was down): running it again cannot apply
 * it twice, where a call that timed out may still run in Redis.
 */
export class NotSentError extends Error {
  override readonly name = 'NotSentError'
}

/**
 * A call that got no answer in time: it may still run in Redis. `late` is its reply, should one
 * come (the connection stayed up while Redis was stalled): what the call did, known after the fact.
 */
export class TimedOutError extends Error {
  override readonly name = 'TimedOutError'
  constructor(
    message: string,
    readonly late: Promise<unknown>,
  ) {
    super(message)
  }
}

/** ioredis refuses a command up front, unsent, when it is offline and may not queue it. */
function unsent(error: unknown): never {
  if (error instanceof Error && error.message.includes('enableOfflineQueue')) throw new NotSentError(error.message)
  throw error
}

/** Over an ioredis client (single node or Cluster), which brings its own command timeout. */
export class IoredisConnection implements ScriptConnection {
  readonly timeoutMs: number | undefined
  constructor(private readonly client: RedisClient) {
    // A Cluster's nodes take theirs under redisOptions (see failFastClient in index.ts).
    this.timeoutMs = client.isCluster ? (client as Cluster).options.redisOptions?.commandTimeout : (client as Redis).options.commandTimeout
  }
  evalsha(sha: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.client.evalsha(sha, ...(args as [number, ...ScriptArg[]])).catch(unsent)
  }
  eval(script: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.client.eval(script, ...(args as [number, ...ScriptArg[]])).catch(unsent)
  }
  zrem(key: string, member: string): Promise<unknown> {
    return this.client.zrem(key, member)
  }
  close(): void {
    this.client.disconnect()
  }
}

const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 2000

/**
 * Over Bun's native Redis client (single node): several times less CPU per call than ioredis on
 * Bun, whose socket writes go through the node:net layer. No offline queue: while disconnected a
 * call fails at once. A call that gets no answer within `timeoutMs` (a hung server) is rejected
 * with a TimedOutError, which still hands on its reply if it ever comes. Reconnects on its own, forever,
 * with a capped backoff, until closed.
 */
export class NativeConnection implements ScriptConnection {
  private readonly client: NativeRedis
  private closed = false
  private retryMs = RECONNECT_MIN_MS
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private readonly waiting: (() => void)[] = []
  /** A call timed out and whether the connection is dead is being found out. */
  private probing = false
  /** Counts connects: a probe judges the connection it began on, not one made since. */
  private connects = 0

  constructor(
    private readonly url: string,
    readonly timeoutMs: number,
    private readonly onError: (error: unknown) => void = () => {},
  ) {
    this.client = new NativeRedis(url, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      autoReconnect: false,
      connectionTimeout: Math.max(timeoutMs, 1000),
    })
    this.client.onconnect = () => {
      this.connects++
      this.retryMs = RECONNECT_MIN_MS
      for (const resolve of this.waiting.splice(0)) resolve()
    }
    this.client.onclose = (error) => {
      if (this.closed) return
      this.onError(error)
      this.scheduleReconnect()
    }
    this.connect()
  }

  private connect(): void {
    this.client.connect().catch((error: unknown) => {
      if (this.closed) return
      this.onError(error)
      this.scheduleReconnect()
    })
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer !== null) return
    const wait = this.retryMs
    this.retryMs = Math.min(RECONNECT_MAX_MS, this.retryMs * 2)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (!this.client.connected) this.connect()
    }, wait)
    this.retryTimer.unref?.()
  }

  /** Resolves once connected, or after `maxMs` (calls fail fast until a retry connects). */
  whenConnected(maxMs: number): Promise<void> {
    if (this.client.connected) return Promise.resolve()
    // waitAtMost(), not a race with a sleep: the timer goes once connected.
    return waitAtMost(new Promise<void>((resolve) => this.waiting.push(resolve)), maxMs)
  }

  /** Whether the connection is up now. */
  get connected(): boolean {
    return this.client.connected
  }

  private send(command: string, args: readonly ScriptArg[]): Promise<unknown> {
    if (!this.client.connected) return Promise.reject(new NotSentError(`Redis is not connected (${command})`))
    // Bun's client sends a Buffer as binary, though its typings name only strings.
    const out = new Array<string | Buffer>(args.length)
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!
      out[i] = typeof a === 'object' ? a : String(a)
    }
    const reply = this.client.send(command, out as string[]) as Promise<unknown>
    return within(reply, this.timeoutMs, () => {
      this.probe()
      return new TimedOutError(`Redis did not answer ${command} within ${this.timeoutMs} ms`, reply)
    })
  }

  /**
   * After a call timed out: a connection that died without a reset (its peer gone, a firewall or
   * NAT that dropped it) is closed by no one, and every call on it times out until TCP gives up
   * on it, many minutes later if ever, while Redis answers any other connection. So this one and a
   * new one are asked PING: when the new one answers within the timeout and this one does not,
   * this one is dead, and is closed to be made again (its calls in flight will never be answered).
   * When neither answers, Redis itself is slow or away: the connection stays, and the late replies
   * of its calls still come (what a call that timed out did is learned from them).
   */
  private probe(): void {
    if (this.probing || this.closed || !this.client.connected) return
    this.probing = true
    const fresh = new NativeRedis(this.url, { enableOfflineQueue: false, autoReconnect: false, connectionTimeout: this.timeoutMs })
    // within(): the timer goes with the answer, so a probe that ends early leaves none behind (one
    // held the process, and a probe's worth of memory, for the whole timeout).
    const answers = (ping: () => Promise<unknown>): Promise<boolean> =>
      within(ping(), this.timeoutMs, () => null).then(
        (reply) => reply === 'PONG',
        () => false,
      )
    const current = this.client
    const connection = this.connects
    void Promise.all([answers(() => current.send('PING', [])), answers(() => fresh.connect().then(() => fresh.send('PING', [])))])
      .then(([alive, reachable]) => {
        if (!alive && reachable && !this.closed && this.client.connected && this.connects === connection) {
          this.onError(new Error(`the Redis connection answered nothing for ${this.timeoutMs} ms while a new one did; it is made again`))
          // Its onclose reconnects.
          this.client.close()
        }
      })
      .finally(() => {
        this.probing = false
        fresh.close()
      })
  }

  evalsha(sha: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.send('EVALSHA', [sha, ...args])
  }
  eval(script: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.send('EVAL', [script, ...args])
  }
  zrem(key: string, member: string): Promise<unknown> {
    return this.send('ZREM', [key, member])
  }
  close(): void {
    this.closed = true
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.client.close()
  }
}
