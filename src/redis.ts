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
  return client
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
