import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { ENCODINGS } from '../../plugins/tokens/encodings.ts'

/** Environment slug: the `<env>` of `sk-<env>-<secret>`. */
export const ENV_SLUG = /^[a-z0-9]{1,16}$/

/** A provider's or a key's id. Dots alone are refused too (a URL path could not carry them), by the catalog check. */
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$', description: 'Letters, digits and . _ : -, not dots only' })

/** The largest value an `integer` column holds on Postgres (SQLite holds more): 2^31 - 1. */
export const MAX_STORED_INTEGER = 2_147_483_647

/**
 * The longest a timer can wait, in ms (2^31 - 1, about 24.8 days): Bun, as Node, fires a longer
 * `setTimeout` or `setInterval` after 1 ms. Every option in ms is held to it, so a value meant as
 * "practically never" cannot turn into "at once".
 */
export const MAX_TIMER_MS = 2_147_483_647

/**
 * The largest weight of a key or a target. Weights are shares, so a million to one is room enough;
 * the weighted strategy adds them up on every pick, and a target's weight times its key's (up to
 * 1e12) keeps those sums finite, where two targets of 1e308 made them Infinity, then NaN: one
 * target took every request.
 */
const MAX_WEIGHT = 1_000_000

export const ProviderKeySchema = Type.Object(
  {
    id: Id,
    /** Upstream secret; may be empty for servers that need none. */
    secret: Type.String({ maxLength: 4096 }),
    /** Relative share of its target's traffic among the provider's keys, for weighted balancing; at most MAX_WEIGHT (1000000). @default 1 */
    weight: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_WEIGHT })),
    /** Requests per minute the upstream allows this key; at most 2147483647, what an integer column holds on every database. */
    rpm: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_STORED_INTEGER })),
    /** Tokens per minute the upstream allows this key; at most 2147483647, as rpm. */
    tpm: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_STORED_INTEGER })),
  },
  { additionalProperties: false },
)

export const TimeoutsSchema = Type.Object(
  {
    /** ms until the upstream answers with headers. @default 60000 for a stream, total_ms for a JSON answer (whose headers come once it is generated) */
    first_byte_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS })),
    /** ms between two stream chunks. @default 120000 */
    idle_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS })),
    /** ms for the whole call. @default 600000 */
    total_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS })),
  },
  { additionalProperties: false },
)

export const PROVIDER_TYPES = ['openai', 'openai-compatible', 'anthropic', 'gemini', 'mock'] as const

export const ProviderSchema = Type.Object(
  {
    id: Id,
    type: Type.Union(PROVIDER_TYPES.map((p) => Type.Literal(p))),
    /** The official SDK's base URL; each adapter appends its own paths. */
    baseUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
    keys: Type.Array(ProviderKeySchema, { minItems: 1 }),
    /** Extra headers sent upstream on every call: names are HTTP tokens, values hold no CR, LF or NUL. */
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    timeouts: Type.Optional(TimeoutsSchema),
    /** Adapter-specific settings (e.g. the mock's latency, Anthropic's version). */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
)

/** The prices of a model (or of one of its service tiers), USD per million tokens. */
const PriceFields = {
  /** USD per million input tokens. */
  input: Type.Number({ minimum: 0 }),
  /** USD per million output tokens. */
  output: Type.Number({ minimum: 0 }),
  /** USD per million cached input tokens. @default input */
  cached_input: Type.Optional(Type.Number({ minimum: 0 })),
  /**
   * USD per million input tokens written to the prompt cache (Anthropic's `cache_creation_input_tokens`,
   * the only cache writes reported). @default 1.25 × input (Anthropic's price for its 5-minute cache)
   */
  cache_write_input: Type.Optional(Type.Number({ minimum: 0 })),
  /**
   * USD per million input tokens written to the 1-hour prompt cache (a `cache_control` with `ttl: "1h"`;
   * Anthropic's `cache_creation.ephemeral_1h_input_tokens`, a part of the cache writes). @default 2 × input
   */
  cache_write_1h_input: Type.Optional(Type.Number({ minimum: 0 })),
  /** USD per million audio input tokens (`prompt_tokens_details.audio_tokens`, part of prompt_tokens). @default input */
  audio_input: Type.Optional(Type.Number({ minimum: 0 })),
  /** USD per million audio output tokens (`completion_tokens_details.audio_tokens`, part of completion_tokens). @default output */
  audio_output: Type.Optional(Type.Number({ minimum: 0 })),
}

/** A service tier's name as an answer reports it (OpenAI's `service_tier`: `flex`, `priority`). */
const SERVICE_TIER_NAME = /^[a-z0-9_-]{1,32}$/

export const PricingSchema = Type.Object(
  {
    ...PriceFields,
    /**
     * Prices of service tiers, by the name an answer reports in its `service_tier` (OpenAI's `flex`,
     * `priority`): an answer served at one of these costs its prices (each its own, defaults as above),
     * any other at the prices above.
     */
    service_tiers: Type.Optional(
      Type.Record(Type.String({ pattern: SERVICE_TIER_NAME.source }), Type.Object(PriceFields, { additionalProperties: false }), {
        additionalProperties: false,
        maxProperties: 16,
        description: 'Prices per service tier, by the name the answer reports (flex, priority); others cost the prices above',
      }),
    ),
  },
  { additionalProperties: false },
)

export const STRATEGIES = ['weighted', 'round-robin', 'least-busy', 'latency', 'usage'] as const

export const ModelSchema = Type.Object(
  {
    /** The name clients ask for; a slash is allowed, white space at either end and parts of dots only are not. */
    name: Type.String({ minLength: 1, maxLength: 256, description: 'The name clients ask for; may hold a slash, not white space at either end nor a part of dots only' }),
    /** How the balance plugin picks among targets. @default "weighted" */
    strategy: Type.Optional(Type.Union(STRATEGIES.map((s) => Type.Literal(s)))),
    targets: Type.Array(
      Type.Object(
        {
          provider: Id,
          model: Type.String({ minLength: 1, maxLength: 256 }),
          /** Relative share of the model's traffic among its targets, for weighted balancing; at most MAX_WEIGHT (1000000). @default 1 */
          weight: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_WEIGHT })),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    /** Model groups tried in order after this one's targets fail. */
    fallbacks: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    pricing: Type.Optional(PricingSchema),
    /** tiktoken encoding for models the built-in table does not know (one this build ships, checked with the catalog). */
    encoding: Type.Optional(Type.String({ maxLength: 64, description: `tiktoken encoding: one of ${ENCODINGS.join(', ')}` })),
  },
  { additionalProperties: false },
)

/** A `{use, options}` plugin entry: a built-in name or a module path, and the plugin's options. */
export const PluginUseEntrySchema = Type.Object(
  {
    use: Type.String({ minLength: 1 }),
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
)

export const PluginEntrySchema = Type.Union([Type.String({ minLength: 1 }), PluginUseEntrySchema])

/** The config file's shape (JSON form; the TS form is the same object through `defineConfig`). */
export const ConfigFileSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    /** The environment this gateway serves. @default "dev" */
    environment: Type.Optional(Type.String({ pattern: ENV_SLUG.source })),
    providers: Type.Optional(Type.Array(ProviderSchema)),
    models: Type.Optional(Type.Array(ModelSchema)),
    /** Built-in plugin names, `{use, options}` entries, or plugin objects (TS config only). */
    plugins: Type.Optional(Type.Array(Type.Unknown())),
    limits: Type.Optional(
      Type.Object(
        {
          /** Largest accepted request body. @default 33554432 (32 MiB) */
          max_body_bytes: Type.Optional(Type.Integer({ minimum: 1024 })),
          /** How long a client API request's body may take to arrive once its headers have; 0 for no limit. @default 30000 */
          body_timeout_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
          /**
           * How long the gateway waits for a plugin's authenticate, admit, route or describe hook to settle before
           * it answers 500 internal_error (naming the plugin in its log) and calls no hook after it; 0 for no limit. @default 30000
           */
          hook_timeout_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
          /** Seconds a client connection may stay silent both ways (an idle keep-alive one, say) before it is closed; a model call waiting for its upstream is exempt. @default 75 */
          idle_timeout_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 255 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** The admin console at /console (the browser key-management portal). */
    console: Type.Optional(
      Type.Object(
        {
          /** Serve the console. @default true */
          enabled: Type.Optional(Type.Boolean()),
          /** ms a console sign-in lasts. @default 28800000 (8 h) */
          session_ttl_ms: Type.Optional(Type.Integer({ minimum: 60_000, maximum: 7 * 86_400_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    database: Type.Optional(Type.Object({ url: Type.String() }, { additionalProperties: false })),
    redis: Type.Optional(Type.Object({ url: Type.String() }, { additionalProperties: false })),
    server: Type.Optional(
      Type.Object(
        {
          /** The port to listen on, 1 to 65535, as PORT (which overrides it); never 0, a random port. @default 8080 */
          port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
          host: Type.Optional(Type.String()),
          /** ms that SIGTERM waits for in-flight requests. @default 10000 */
          shutdown_grace_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS })),
          /**
           * Wrong admin keys (bearer on /admin/*, or at the console's sign-in) one client address may send in a
           * row, and how many it gets back a minute; past them it is answered 429 rate_limit_exceeded. @default 10
           */
          admin_attempts_per_minute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
          /**
           * Reverse proxies in front of the gateway that append the address they saw to X-Forwarded-For: the
           * limit on wrong admin keys counts the entry that many from the right (what the outermost proxy saw,
           * which no client can choose), not the socket's peer (the proxy). 0: the socket's peer. @default 0
           */
          trusted_proxies: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 })),
          /** Web pages of these origins may call the client API (`/v1/*`) from a browser. @default off */
          cors: Type.Optional(
            Type.Object(
              {
                /** Exact origins (`https://app.example.com`), or `["*"]` for any. */
                origins: Type.Array(Type.String({ minLength: 1, maxLength: 2048 }), { minItems: 1, maxItems: 1000 }),
                /** Seconds a browser keeps a preflight's answer. @default 600 */
                max_age_s: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)

export type ConfigFile = Static<typeof ConfigFileSchema>
export type ProviderConfig = Static<typeof ProviderSchema>
export type ProviderKeyConfig = Static<typeof ProviderKeySchema>
export type ModelConfig = Static<typeof ModelSchema>
export type Pricing = Static<typeof PricingSchema>
export type ProviderType = (typeof PROVIDER_TYPES)[number]
export type Strategy = (typeof STRATEGIES)[number]
export type Timeouts = Static<typeof TimeoutsSchema>

export type { TSchema }
