import { Cluster, Redis } from 'ioredis'

/** A single-node client or a cluster client; both speak the same commands. */
export type RedisClient = Redis | Cluster

/**
 * Parse `redis://…`, `rediss://…` or `redis+cluster://h1:p1,h2:p2` into a client that connects
 * and reconnects by itself. Connection errors are reported through `onError` (rate-limited by
 * the caller), never as unhandled error events.
 */
export function createRedis(url: string, onError: (error: Error) => void = () => {}): RedisClient {
  const client = connect(url)
  client.on('error', onError)
  return client
}

function connect(url: string): RedisClient {
  if (url.startsWith('redis+cluster://')) {
    const rest = url.slice('redis+cluster://'.length)
    const at = rest.lastIndexOf('@')
    const auth = at >= 0 ? rest.slice(0, at) : ''
    const hosts = (at >= 0 ? rest.slice(at + 1) : rest).replace(/\/.*$/, '')
    const nodes = hosts.split(',').map((h) => {
      const [host = '127.0.0.1', port = '6379'] = h.split(':')
      return { host, port: Number(port) }
    })
    const [user, password] = auth ? auth.split(':') : []
    return new Cluster(nodes, {
      redisOptions: { username: user || undefined, password: password || undefined, maxRetriesPerRequest: 1 },
      enableOfflineQueue: true,
      enableAutoPipelining: true,
    })
  }
  if (!url.startsWith('redis://') && !url.startsWith('rediss://')) {
    throw new Error(`REDIS_URL "${url.replace(/\/\/[^@]*@/, '//***@')}" must start with redis://, rediss:// or redis+cluster://`)
  }
  return new Redis(url, { maxRetriesPerRequest: 1, enableAutoPipelining: true })
}

/** Mask the password of a connection URL for logs. */
export const maskUrl = (url: string): string => url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@')
