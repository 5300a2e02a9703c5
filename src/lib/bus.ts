import { Redis, type Cluster } from 'ioredis'
import { watchConnection, type RedisClient } from '../redis.ts'
import { within } from './within.ts'

/** Broadcast between gateway instances (key invalidation, health). Handlers must be cheap. */
export interface MessageBus {
  publish(channel: string, message: string): Promise<void>
  subscribe(channel: string, handler: (message: string) => void): Promise<void>
  /**
   * Run `handler` whenever messages for this instance may have been lost: the subscription is in
   * place again after its connection was down (a Redis restart or failover, a killed connection,
   * a network cut), or for the first time after a boot that found Redis away; also when another
   * instance says, once it reaches Redis again, that messages it published did not go out (it was
   * cut off alone, or Redis hung). Pub/sub keeps nothing for an absent subscriber, and a failed
   * publish is not sent again, so whatever a subscriber derives from messages (caches, a registry)
   * must be rebuilt from the source here. `since` is the ms epoch from about which messages may be
   * missing (when the loss was noticed, or the first failed publish was made; add a margin). It runs after the subscriptions are back, so a change made after a
   * reload it starts is still heard. The in-process bus never loses a message and never runs it.
   * Handlers must be cheap and catch their own errors: start the work, do not await it here.
   */
  onResync(handler: (since: number) => void): void
  close(): Promise<void>
}

/** One process: messages go straight to local handlers. */
export function createLocalBus(): MessageBus {
  const handlers = new Map<string, Set<(m: string) => void>>()
  return {
    async publish(channel, message) {
      for (const h of handlers.get(channel) ?? []) h(message)
    },
    async subscribe(channel, handler) {
      let set = handlers.get(channel)
      if (!set) handlers.set(channel, (set = new Set()))
      set.add(handler)
    },
    onResync() {},
    async close() {
      handlers.clear()
    },
  }
}

/**
 * The channel prefix of a deployment on `client`. Pub/sub channels are server-wide, whatever the
 * database index: deployments kept apart by `redis://host/1` and `redis://host/2` would hear each
 * other's key invalidations, catalog reloads and key health. So the index is part of the prefix,
 * except for 0, which keeps the prefix of versions that had no index in it (a rolling deploy's
 * old and new instances still hear each other; on another index, instances of those versions and
 * of this one do not, until every instance runs this one). A Cluster has database 0 only.
 */
export function busPrefix(client: RedisClient): string {
  const db = client.isCluster ? 0 : ((client as Redis).options.db ?? 0)
  return db === 0 ? 'sluice:' : `sluice:db${db}:`
}

/**
 * How long a publish waits for Redis. The client has no command timeout of its own, so a hung
 * server (or a network that drops packets without a reset) held every admin change that tells the
 * other instances, a revoke included, until Redis answered again.
 */
export const PUBLISH_TIMEOUT_MS = 2000
/**
 * Notices heard within this time of the first make one resync, from the earliest time they name:
 * after an outage every instance whose messages did not go out sends one, within a second or two,
 * and each resync drops the whole key cache (a burst of database reads).
 */
export const NOTICE_COALESCE_MS = 1000
/** How often an instance whose messages did not go out tries again to tell the others to catch up. */
const NOTICE_RETRY_MS = 1000
/**
 * The bus's own channel: `<instance> <ms epoch>`, sent by an instance whose messages from about
 * that time on did not go out; every other instance catches up as after a gap of its own (onResync).
 */
const MISSED = 'bus.missed'

/** `promise`, or a rejection naming `what` once `ms` passed without it settling. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return within(promise, ms, () => new Error(`Redis did not answer within ${ms} ms (${what})`))
}

/** Waits before connecting a Cluster's bus to another node after one could not be used: doubled after each failure, up to the max. */
const RESELECT_MIN_MS = 100
const RESELECT_MAX_MS = 2000

/** Where a bus subscribes: the connection of the moment, null while there is none. */
interface SubscriberSource {
  current(): Redis | null
  /** The connection once it is ready (now, when it is), or null after `ms` without one. */
  whenReady(ms: number): Promise<Redis | null>
  close(): void
}

/** A single node's (or Sentinel's master's): one connection for good, which reconnects by itself. */
function nodeSubscriber(client: Redis, wire: (connection: Redis) => void): SubscriberSource {
  const connection = client.duplicate()
  wire(connection)
  return {
    current: () => connection,
    whenReady: async () => connection,
    close: () => connection.disconnect(),
  }
}

/**
 * A Cluster's: a PUBLISH reaches every node of a cluster, so one plain connection to any node,
 * and once it drops (the node failed, was restarted, the connection was cut) one to a node picked
 * again from the cluster's current ones. Each is a connection of its own, whose loss the bus sees
 * as on a single node: ioredis' own cluster subscriber moved to another node without a word, and
 * what was published in between was lost without the bus ever catching up.
 */
function clusterSubscriber(cluster: Cluster, wire: (connection: Redis) => void): SubscriberSource {
  let connection: Redis | null = null
  let closed = false
  let retryMs = RESELECT_MIN_MS
  let timer: ReturnType<typeof setTimeout> | null = null
  const waiting = new Set<(connection: Redis | null) => void>()
  const later = () => {
    if (closed || timer !== null) return
    timer = setTimeout(select, retryMs)
    timer.unref?.()
    retryMs = Math.min(RESELECT_MAX_MS, retryMs * 2)
  }
  function select(): void {
    timer = null
    if (closed) return
    // Known once the cluster client has its slot map; until then, try again shortly.
    const nodes = cluster.nodes('all')
    const node = nodes[Math.floor(Math.random() * nodes.length)]
    if (!node) return later()
    const next = new Redis({
      ...cluster.options.redisOptions,
      host: node.options.host,
      port: node.options.port,
      // Not this node again and again: another one is picked on 'end'.
      retryStrategy: () => null,
    })
    connection = next
    wire(next)
    next.once('ready', () => {
      retryMs = RESELECT_MIN_MS
      for (const resolve of waiting) resolve(next)
      waiting.clear()
    })
    next.once('end', () => {
      if (connection !== next) return
      connection = null
      later()
    })
  }
  select()
  return {
    current: () => connection,
    whenReady(ms) {
      if (connection?.status === 'ready') return Promise.resolve(connection)
      const { promise, resolve } = Promise.withResolvers<Redis | null>()
      const timeout = setTimeout(() => {
        waiting.delete(settle)
        resolve(null)
      }, ms)
      const settle = (ready: Redis | null) => {
        clearTimeout(timeout)
        resolve(ready)
      }
      waiting.add(settle)
      return promise
    },
    close() {
      closed = true
      if (timer !== null) clearTimeout(timer)
      connection?.disconnect()
      connection = null
      for (const resolve of waiting) resolve(null)
      waiting.clear()
    },
  }
}

/**
 * Many processes over Redis pub/sub. The publishing instance also receives its own
 * message through Redis, so every instance takes the same code path.
 */
export function createRedisBus(client: RedisClient, prefix = busPrefix(client)): MessageBus {
  const handlers = new Map<string, Set<(m: string) => void>>()
  const resyncHandlers = new Set<(since: number) => void>()
  /** When messages may have started to go missing (ms epoch); null while the subscription holds. */
  let missingSince: number | null = null
  /** Counts connection losses: a subscription confirmed for an earlier connection proves nothing about the current one. */
  let losses = 0
  const missing = () => {
    missingSince ??= Date.now()
  }
  const lost = () => {
    losses++
    missing()
  }
  const resync = (since: number) => {
    for (const h of resyncHandlers) {
      try {
        h(since)
      } catch {
        // One handler's fault must not keep the others stale.
      }
    }
  }
  const heard = (channel: string, message: string) => {
    for (const h of handlers.get(channel.slice(prefix.length)) ?? []) h(message)
  }

  // A message this instance could not publish (Redis hung, or this instance cut off from it while
  // the others stay connected) is lost to the others, and nothing of theirs tells them: their
  // connections never dropped. Once this instance reaches Redis again it tells them to catch up.
  const self = crypto.randomUUID()
  /** The earliest time the notices heard in the current window name; null when no window is open. */
  let noticedSince: number | null = null
  let noticeWindow: ReturnType<typeof setTimeout> | null = null
  const heardNotice = (message: string) => {
    const space = message.indexOf(' ')
    const since = Number(message.slice(space + 1))
    if (space <= 0 || message.slice(0, space) === self || !Number.isFinite(since)) return
    noticedSince = Math.min(noticedSince ?? since, since)
    noticeWindow ??= setTimeout(() => {
      const from = noticedSince
      noticedSince = null
      noticeWindow = null
      if (from !== null) resync(from)
    }, NOTICE_COALESCE_MS)
    noticeWindow.unref?.()
  }
  // Subscribed with the others on every 'ready'.
  handlers.set(MISSED, new Set([heardNotice]))
  /** When this instance's first message that did not go out was sent (ms epoch); null when none is owed. */
  let unsentSince: number | null = null
  /** Counts publishes that failed: one failing while a notice is on its way needs another notice. */
  let failures = 0
  let noticeSending = false
  let noticeTimer: ReturnType<typeof setInterval> | null = null
  const sendNotice = () => {
    if (unsentSince === null || noticeSending) return
    noticeSending = true
    const failed = failures
    withTimeout(client.publish(prefix + MISSED, `${self} ${unsentSince}`), PUBLISH_TIMEOUT_MS, 'PUBLISH')
      .then(
        () => {
          if (failures !== failed) return
          unsentSince = null
          if (noticeTimer !== null) clearInterval(noticeTimer)
          noticeTimer = null
        },
        () => {},
      )
      .finally(() => {
        noticeSending = false
      })
  }
  const unsent = (at: number) => {
    failures++
    unsentSince ??= at
    if (noticeTimer === null) {
      noticeTimer = setInterval(sendNotice, NOTICE_RETRY_MS)
      noticeTimer.unref?.()
    }
  }
  client.on('ready', sendNotice)

  /** What a subscriber connection does: a connection in subscriber mode can run no other command, so it is never the client's own. */
  const wire = (connection: Redis) => {
    connection.on('message', heard)
    // Errors surface through the main client's listener; a lost connection reconnects (or is replaced) by itself.
    connection.on('error', () => {})
    // Also emitted when a connection attempt fails: a boot with Redis away starts out missing messages.
    connection.on('close', lost)
    // It only listens: one that died without a reset lost every message while it looked healthy.
    // Dropped and made again, its 'close' and 'ready' make the bus catch up.
    watchConnection(connection)
    // Subscribe again to every channel whenever the connection becomes ready: this covers a Redis
    // that was down at boot (the first SUBSCRIBE failed) as well as reconnects. Once every channel
    // is confirmed on this connection, whoever may have missed messages is told.
    connection.on('ready', () => {
      const lossesThen = losses
      const channels = [...handlers.keys()].map((c) => prefix + c)
      connection.subscribe(...channels).then(
        () => {
          const since = missingSince
          if (since === null || lossesThen !== losses) return
          missingSince = null
          resync(since)
        },
        () => {},
      )
    })
  }
  const subscriber = client.isCluster ? clusterSubscriber(client as Cluster, wire) : nodeSubscriber(client as Redis, wire)
  return {
    async publish(channel, message) {
      const at = Date.now()
      try {
        await withTimeout(client.publish(prefix + channel, message), PUBLISH_TIMEOUT_MS, 'PUBLISH')
      } catch (error) {
        unsent(at)
        throw error
      }
    },
    async subscribe(channel, handler) {
      let set = handlers.get(channel)
      const first = !set
      if (!set) handlers.set(channel, (set = new Set()))
      set.add(handler)
      // With Redis away the subscription is made on the next 'ready'; the boot does not wait for Redis.
      if (!first) return
      // A Cluster's connection is made once the cluster client knows its nodes: waited for once, not again while known to be away.
      const connection = subscriber.current() ?? (missingSince === null ? await subscriber.whenReady(PUBLISH_TIMEOUT_MS) : null)
      if (connection) await connection.subscribe(prefix + channel).catch(missing)
      else missing()
    },
    onResync(handler) {
      resyncHandlers.add(handler)
    },
    async close() {
      client.off('ready', sendNotice)
      if (noticeTimer !== null) clearInterval(noticeTimer)
      if (noticeWindow !== null) clearTimeout(noticeWindow)
      noticeTimer = null
      noticeWindow = null
      handlers.clear()
      resyncHandlers.clear()
      subscriber.close()
    },
  }
}
