import type { DatabaseHandle } from './db/index.ts'
import type { RedisClient } from './redis.ts'
import type { MessageBus } from './lib/bus.ts'
import type { AdminAuth } from './admin-key.ts'
import type { GatewayRequest } from './plugin.ts'

/**
 * Shared backends, chosen once at boot. Plugins receive these and never ask which
 * implementation is behind them (the bus is in-process or Redis, the db SQLite or Postgres).
 */
export interface Services {
  db: DatabaseHandle
  /** The Redis client when `REDIS_URL` is set; plugins that need Redis choose their backend from it at setup. */
  redis: RedisClient | null
  bus: MessageBus
  /** Checks the admin key of `/admin/*` routes. */
  admin: AdminAuth
  /** Milliseconds since the epoch; injectable for tests of time-based rules. */
  now(): number
  /**
   * Prompt tokens of a request, for reservations. A rough count (4 characters a token) until
   * a token-counting plugin puts its own here at setup; callers cache the result per request.
   */
  countPromptTokens(req: GatewayRequest): number
}
