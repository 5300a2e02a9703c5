import type { DatabaseHandle } from './db/index.ts'
import type { RedisClient } from './redis.ts'
import type { MessageBus } from './lib/bus.ts'
import type { AdminAuth } from './admin-key.ts'
import type { Endpoint } from './plugin.ts'
import type { Pricing } from './config/schema.ts'
import type { MetricsRegistry } from './metrics.ts'
import type { UpstreamHealth } from './upstream-health.ts'
import type { Budget } from './limits.ts'

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
   * Token counting and prices. A rough counter (4 characters a token, config prices) until a
   * token-counting plugin installs its own here during setup.
   */
  tokenizer: Tokenizer
  /** The Prometheus registry behind `GET /metrics`: plugins register their own counters, gauges and histograms here at setup. */
  metrics: MetricsRegistry
  /** Health of each upstream provider key from the pipeline's attempts (last status, runs of 401/403). */
  upstreams: UpstreamHealth
  /**
   * What budgets have spent in their current period as the plugin that enforces them counts it
   * (the quota plugin sets it at setup); undefined without one. Budget alerts read it, so they say
   * what admission enforces, whatever the request log still holds.
   */
  budgets?: BudgetReader
}

/** A budget's subject: a user, a team, or a key's rotation chain (`id` its first key's). */
export interface BudgetSubject {
  scope: 'key' | 'user' | 'team'
  id: string
  budget: Budget
}

/**
 * The last request a budget refused in its current period, as this process saw it: a budget
 * refuses once what it has left is below a request's reservation, so its recorded spend may
 * stop short of the budget while every request is refused.
 */
export interface BudgetRefusal {
  /** When, in ms since the epoch. */
  at: number
  measure: 'budget_tokens' | 'budget_usd'
  /** What the refused request reserved, and what the budget had left then: tokens, or USD. */
  reserved: number
  left: number
}

/** Reads budget spend where it is enforced. */
export interface BudgetReader {
  /**
   * Each subject's spend in its budget's current period (after any reset), in order, with the last
   * refusal of that budget in the period (null: none this process saw); throws when the store cannot be read.
   */
  spent(subjects: readonly BudgetSubject[]): Promise<Array<{ tokens: number; usd: number; refused: BudgetRefusal | null }>>
}

/** Why a count is asked for: a reservation may be an estimate; `count` and `settle` want the exact figure. */
export type CountPurpose = 'reserve' | 'settle' | 'count'

/** Counts tokens the way the upstream model does, and knows what they cost. */
export interface Tokenizer {
  readonly name: string
  /** The encoding a model's text is counted with (`estimate` for the rough counter). */
  encodingFor(model: string): string
  /**
   * Prompt tokens of a request body (chat messages and tools, a completion prompt, embedding input).
   * `model` is a model group's name (or, from older callers, an upstream model's); `upstreamModel`,
   * when known, the upstream model of the group's target that served the request.
   */
  countPrompt(endpoint: Endpoint, body: Record<string, unknown>, model: string, purpose: CountPurpose, upstreamModel?: string): number | Promise<number>
  /** Tokens of generated text, by the same `model` and `upstreamModel` as countPrompt. */
  countText(text: string, model: string, upstreamModel?: string): number | Promise<number>
  /** USD per million tokens for a model: the config's pricing first, then any built-in table. */
  pricing(model: string, upstreamModel: string | undefined, configured: Pricing | undefined): Pricing | undefined
}
