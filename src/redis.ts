import { Cluster, Redis } from 'ioredis'
import { decodePercent } from './lib/percent.ts'

/** A single-node client or a cluster client; both speak the same commands. */
export type RedisClient = Redis | Cluster

/**
 * Parse `redis://…`, `rediss://…`, `redis+cluster://h1:p1,h2:p2` or
 * `redis+sentinel://h1:p1,h2:p2/<master name>` into a client that connects and reconnects by
 * itself. Connection errors are reported through `onError` (rate-limited by the caller), never as
 * unhandled error events.
 */
export function createRedis(url: string, onError: (error: Error) => void = () => {}): RedisClient {
  const client = connect(url)
  client.on('error', onError)
  if (client instanceof Cluster) watchClusterNodes(client)
  else watchConnection(client)
  return client
}

/** How often a watched connection is asked PING (watchConnection). */
export const PING_EVERY_MS = 5000
/** How long a watched connection, and then a new one, have to answer PING (watchConnection). */
export const PING_TIMEOUT_MS = 2000

/**
 * Ask `connection` PING every PING_EVERY_MS while it is ready. Nothing else finds out about a
 * connection that died without a reset (its peer gone, a firewall or NAT that dropped it): every
 * command on it waits, and TCP gives up on it after many minutes, if ever (never behind a relay or
 * proxy that keeps answering). Meanwhile /ready answered 503 and no message went out, while Redis
 * answered any new connection. A PING missed for PING_TIMEOUT_MS alone cannot tell that from a
 * Redis that answers nobody for a while (a fork, a slow script), where dropping would only fail the
 * commands in flight and make every instance reconnect and resync at once: so a new connection is
 * asked PING too, and this one is dropped (it reconnects by itself, or is replaced: its 'close'
 * says so) only when the new one answers within PING_TIMEOUT_MS and this one still has not. When
 * neither answers, Redis is slow or away, and the connection stays. An error reply (BUSY from a
 * script past its time limit) is an answer. Stops at the connection's 'end'.
 */
export function watchConnection(connection: Redis): void {
  let asking = false
  const timer = setInterval(() => {
    if (asking || connection.status !== 'ready') return
    asking = true
    let answered = false
    // The connection asked: one made again since (it dropped and reconnected) is not judged by this PING.
    const stream = connection.stream
    connection.ping().then(
      () => (answered = true),
      (error: unknown) => (answered ||= isReply(error)),
    )
    const stillSilent = (): boolean => !answered && connection.status === 'ready' && connection.stream === stream
    const check = (armed: number, wait: number): void => {
      const pending = setTimeout(() => {
        if (!stillSilent()) {
          asking = false
          return
        }
        // Late itself: the event loop was held (a long task), and the answer may be waiting to be read. Look once more.
        if (performance.now() - armed > wait + LATE_CHECK_MS) return check(performance.now(), LATE_CHECK_MS)
        void newConnectionAnswers(connection).then((reachable) => {
          asking = false
          // Destroyed, not ended: an end waits for a peer that may be gone.
          if (reachable && stillSilent()) connection.stream.destroy()
        })
      }, wait)
      pending.unref?.()
    }
    check(performance.now(), PING_TIMEOUT_MS)
  }, PING_EVERY_MS)
  timer.unref?.()
  connection.once('end', () => clearInterval(timer))
}

/** Whether a rejected command was answered by the server (an error reply), not failed without one. */
const isReply = (error: unknown): boolean => error instanceof Error && error.name === 'ReplyError'

/** Whether a new connection made as `connection` was (Sentinel's master asked again) answers PING within PING_TIMEOUT_MS. */
function newConnectionAnswers(connection: Redis): Promise<boolean> {
  const fresh = connection.duplicate({
    lazyConnect: true,
    connectTimeout: PING_TIMEOUT_MS,
    commandTimeout: undefined,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: null,
    enableOfflineQueue: true,
    enableReadyCheck: false,
    autoResubscribe: false,
  })
  fresh.on('error', () => {})
  const { promise, resolve } = Promise.withResolvers<boolean>()
  const timer = setTimeout(resolve, PING_TIMEOUT_MS, false)
  timer.unref?.()
  fresh.ping().then(
    () => resolve(true),
    (error: unknown) => resolve(isReply(error)),
  )
  return promise.finally(() => {
    clearTimeout(timer)
    fresh.disconnect()
  })
}

/** How late a watchConnection check may fire before it takes the event loop, not the connection, for slow. */
const LATE_CHECK_MS = 250

/**
 * Watch every node connection of a Cluster client (watchConnection), those it makes later too. One
 * that is dropped ends (a Cluster's node connections do not reconnect by themselves), and the
 * client connects to that node again for the next command on its slots.
 */
export function watchClusterNodes(cluster: Cluster): void {
  for (const node of cluster.nodes('all')) watchConnection(node)
  cluster.on('+node', (node: Redis) => watchConnection(node))
}

/** `host`, `host:port`, `[ipv6]` or `[ipv6]:port`. */
function hostPort(text: string, defaultPort: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text)
  if (bracketed) return { host: bracketed[1]!, port: Number(bracketed[2] ?? defaultPort) }
  const colon = text.lastIndexOf(':')
  if (colon < 0) return { host: text || '127.0.0.1', port: Number(defaultPort) }
  return { host: text.slice(0, colon) || '127.0.0.1', port: Number(text.slice(colon + 1) || defaultPort) }
}

/** The parts of a `redis+cluster://` or `redis+sentinel://` URL: credentials, a host list, and the path and query. */
export function hostList(url: string, scheme: string, defaultPort: string) {
  const rest = url.slice(scheme.length)
  const at = rest.lastIndexOf('@')
  const auth = at >= 0 ? rest.slice(0, at) : ''
  const afterAuth = at >= 0 ? rest.slice(at + 1) : rest
  const slash = afterAuth.search(/[/?]/)
  const hosts = slash >= 0 ? afterAuth.slice(0, slash) : afterAuth
  const tail = new URL(`x://h${slash >= 0 ? afterAuth.slice(slash) : ''}`)
  const nodes = hosts.split(',').map((h) => hostPort(h, defaultPort))
  const colon = auth.indexOf(':')
  const user = decodePercent(colon >= 0 ? auth.slice(0, colon) : auth)
  const password = colon >= 0 ? decodePercent(auth.slice(colon + 1)) : ''
  return { nodes, username: user || undefined, password: password || undefined, path: decodePercent(tail.pathname.replace(/^\//, '')), query: tail.searchParams }
}

function connect(url: string): RedisClient {
  if (url.startsWith('redis+cluster://')) {
    const { nodes, username, password } = hostList(url, 'redis+cluster://', '6379')
    return new Cluster(nodes, {
      redisOptions: { username, password, maxRetriesPerRequest: 1 },
      enableOfflineQueue: true,
      enableAutoPipelining: true,
    })
  }
  if (url.startsWith('redis+sentinel://')) {
    // The sentinels tell where the master of that name is, and again after a failover. The URL's
    // credentials are the data nodes'; `sentinel_password` (and `sentinel_username`) the sentinels'.
    const { nodes, username, password, path, query } = hostList(url, 'redis+sentinel://', '26379')
    if (!path) throw new Error(`REDIS_URL "${maskUrl(url)}" must name the master after the hosts: redis+sentinel://h1:26379,h2:26379/<master name>`)
    const db = query.get('db')
    return new Redis({
      sentinels: nodes,
      name: path,
      username,
      password,
      sentinelUsername: query.get('sentinel_username') ?? undefined,
      sentinelPassword: query.get('sentinel_password') ?? undefined,
      db: db === null ? undefined : Number(db),
      maxRetriesPerRequest: 1,
      enableAutoPipelining: true,
    })
  }
  if (!url.startsWith('redis://') && !url.startsWith('rediss://')) {
    throw new Error(`REDIS_URL "${maskUrl(url)}" must start with redis://, rediss://, redis+cluster:// or redis+sentinel://`)
  }
  return new Redis(url, { maxRetriesPerRequest: 1, enableAutoPipelining: true })
}

/** Mask the passwords of a connection URL for logs (the data nodes', and a sentinel_password). */
export const maskUrl = (url: string): string => url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@').replace(/([?&]sentinel_password=)[^&]*/, '$1***')

/** What a readiness check found in Redis: everything that must answer did, or what did not and why. */
export type RedisHealth = { ok: true } | { ok: false; detail: string }

/** The slots of a Redis Cluster: 0 to 16383. */
const CLUSTER_SLOTS = 16_384

/**
 * Whether Redis answers, within about `timeoutMs` in all. A single node, or the master Sentinel
 * names, must answer PING. A PING through a Cluster client reaches one node, any node, while the
 * quota's keys (their hash tag is an option) and everything else may live on another: there every
 * master holding slots must answer, and every slot must have a master. `detail` names what did not
 * answer (a cluster node with its slots) and why.
 */
export async function checkRedis(client: RedisClient, timeoutMs: number): Promise<RedisHealth> {
  if (!(client instanceof Cluster)) {
    const deadline = Date.now() + timeoutMs
    let failure = await pingFailure(client, timeoutMs)
    // PING answers on any database: one the server does not have (redis://host/99 on a server of
    // 16) failed its SELECT at connect, and every other command with it. SELECT again tells.
    const db = Number(client.options.db ?? 0)
    if (failure === null && db !== 0) failure = await selectFailure(client, db, Math.max(Math.round(deadline - Date.now()), 100))
    return failure === null ? { ok: true } : { ok: false, detail: `${nodeName(client)} ${failure}` }
  }
  const deadline = Date.now() + timeoutMs
  // Half the time for the slot map, so a node that hangs on CLUSTER SLOTS leaves time for the PINGs.
  const owners = await slotOwners(client, Math.round(timeoutMs / 2))
  if (owners.size === 0) return { ok: false, detail: 'no node of the cluster answers, and no slot map is known' }
  const problems: string[] = []
  const uncovered = missingRanges([...owners.values()].flat())
  if (uncovered.length > 0) problems.push(`cluster slots ${formatRanges(uncovered)} have no master`)
  const pings = [...owners].map(async ([address, ranges]) => {
    const failure = await pingClusterNode(client, address, Math.max(Math.round(deadline - Date.now()), 100))
    return failure === null ? null : `cluster master ${address} (slots ${formatRanges(ranges)}) ${failure}`
  })
  for (const failure of await Promise.all(pings)) if (failure !== null) problems.push(failure)
  return problems.length === 0 ? { ok: true } : { ok: false, detail: problems.join('; ') }
}

/** Null when `node` answers PING within `ms`, else how it failed. Never rejects, even after the time is up. */
function pingFailure(node: Redis, ms: number): Promise<string | null> {
  const { promise, resolve } = Promise.withResolvers<string | null>()
  const timer = setTimeout(() => resolve(`did not answer within ${ms} ms`), ms)
  node.ping().then(
    (reply) => resolve(reply === 'PONG' ? null : `answered ${JSON.stringify(reply)} to PING`),
    // ioredis gives up on a command after its retries with a message about the option, not the node.
    (error: unknown) => resolve(`does not answer (${error instanceof Error && error.name !== 'MaxRetriesPerRequestError' ? error.message : `connection ${node.status}`})`),
  )
  return promise.finally(() => clearTimeout(timer))
}

/** Null when `node` selects database `db` within `ms` (as it does at every connect), else why not. Never rejects. */
function selectFailure(node: Redis, db: number, ms: number): Promise<string | null> {
  const { promise, resolve } = Promise.withResolvers<string | null>()
  const timer = setTimeout(() => resolve(`did not answer SELECT ${db} within ${ms} ms`), ms)
  node.select(db).then(
    () => resolve(null),
    (error: unknown) => resolve(`cannot use database ${db} (${error instanceof Error ? error.message : String(error)})`),
  )
  return promise.finally(() => clearTimeout(timer))
}

/** How a detail names a single node or Sentinel's master. */
function nodeName(client: Redis): string {
  const { sentinels, name, host, port } = client.options
  return sentinels?.length ? `the master "${name}" that Sentinel names` : `${host}:${port}`
}

/**
 * The masters of the cluster and the slot ranges each holds: from CLUSTER SLOTS asked now, since
 * the client's own map is refreshed only on a redirection; from that map when no node answers.
 */
async function slotOwners(cluster: Cluster, ms: number): Promise<Map<string, [number, number][]>> {
  const owners = new Map<string, [number, number][]>()
  const add = (address: string, from: number, to: number) => {
    const ranges = owners.get(address)
    if (ranges) ranges.push([from, to])
    else owners.set(address, [[from, to]])
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  const answer = await Promise.race([
    cluster.cluster('SLOTS').catch(() => null),
    new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null))),
  ]).finally(() => clearTimeout(timer))
  if (answer !== null) {
    for (const [from, to, master] of answer) if (master) add(natMapped(cluster, `${master[0]}:${master[1]}`), from, to)
    return owners
  }
  // The client's map: one entry per slot, its master first (addresses already NAT-mapped).
  let start = 0
  for (let slot = 1; slot <= CLUSTER_SLOTS; slot++) {
    const owner = cluster.slots[start]?.[0]
    if (slot < CLUSTER_SLOTS && cluster.slots[slot]?.[0] === owner) continue
    if (owner !== undefined) add(owner, start, slot - 1)
    start = slot
  }
  return owners
}

/** The address the client connects to for a node the cluster announces as `address` (its `natMap`). */
function natMapped(cluster: Cluster, address: string): string {
  const natMap = cluster.options.natMap
  const mapped = typeof natMap === 'function' ? natMap(address) : natMap?.[address]
  return mapped ? `${mapped.host}:${mapped.port}` : address
}

/**
 * PING one cluster node: through the client's own connection to it when it has one (the one the
 * gateway's commands use), else through a connection opened for this check and closed after it
 * (the client drops its connection to a node that went away, until its next slot refresh).
 */
async function pingClusterNode(cluster: Cluster, address: string, ms: number): Promise<string | null> {
  const pooled = cluster.nodes('all').find((node) => `${node.options.host}:${node.options.port}` === address)
  if (pooled) return await pingFailure(pooled, ms)
  const colon = address.lastIndexOf(':')
  const node = new Redis({
    ...cluster.options.redisOptions,
    host: address.slice(0, colon),
    port: Number(address.slice(colon + 1)),
    lazyConnect: true,
    connectTimeout: ms,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  node.on('error', () => {})
  try {
    return await pingFailure(node, ms)
  } finally {
    node.disconnect()
  }
}

/** The slot ranges of 0-16383 that none of `ranges` covers. */
function missingRanges(ranges: [number, number][]): [number, number][] {
  const missing: [number, number][] = []
  let next = 0
  for (const [from, to] of ranges.toSorted((a, b) => a[0] - b[0])) {
    if (from > next) missing.push([next, from - 1])
    next = Math.max(next, to + 1)
  }
  if (next < CLUSTER_SLOTS) missing.push([next, CLUSTER_SLOTS - 1])
  return missing
}

const formatRanges = (ranges: [number, number][]): string => ranges.map(([from, to]) => (from === to ? `${from}` : `${from}-${to}`)).join(',')
