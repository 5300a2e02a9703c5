import type { Static, TObject, TSchema } from '@sinclair/typebox'
import type { Elysia } from 'elysia'
import type { GatewayError } from './errors.ts'
import type { ResolvedConfig } from './config/load.ts'
import type { ModelGroup, ModelRegistry, RouteTarget } from './models.ts'
import type { Logger } from './lib/logger.ts'
import type { Services } from './services.ts'

/** The client-facing endpoints that run through the plugin pipeline. */
export type Endpoint =
  | 'chat.completions'
  | 'completions'
  | 'embeddings'
  | 'models.list'
  | 'models.get'
  | 'key'
  | 'tokens.count'

/** Who is calling, as established by an `authenticate` hook. */
export interface Identity {
  keyId: string
  /**
   * The first key of this key's rotation chain, under which its own limits and budgets are
   * counted: rotation replaces the secret only, so a successor (and its predecessor, during the
   * grace period) carries on one set of buckets and budget counters. Messages and logs name
   * `keyId`, the key the client sent. @default keyId (a key never rotated is its own lineage)
   */
  keyLineageId?: string
  userId: string
  /** The team usage is billed to: the key's team, or the one named by `OpenAI-Organization`. */
  teamId: string | null
  environment: string
  /** Models this key may use; `null` means all. */
  models: readonly string[] | null
  /** Scopes this key holds; `null` means all. */
  scopes: readonly string[] | null
  /** Plugin-specific facts about the identity (limits, budgets, names). */
  attributes: Readonly<Record<string, unknown>>
}

/**
 * Whether a model allow-list (`Identity.models`, a key's `models`) lets `model` through; null allows
 * every model. The one rule for `model_not_allowed` and for the fallback groups a request may take.
 */
export const allowsModel = (models: readonly string[] | null, model: string): boolean => models === null || models.includes(model)

/** Token usage of one request, from the provider or estimated. */
export interface Usage {
  promptTokens: number
  completionTokens: number
  cachedTokens: number
  totalTokens: number
  /** USD, when pricing is known. */
  costUsd: number | null
  source: 'provider' | 'estimated'
}

/** One client request as it moves through the stages. Plugins read it and may annotate it. */
export interface GatewayRequest {
  readonly id: string
  readonly endpoint: Endpoint
  /** The raw incoming request (headers, signal, URL). */
  readonly request: Request
  /** The parsed JSON body (empty object for GET endpoints). Plugins may change it before `route`. */
  body: Record<string, unknown>
  /** The model the client asked for. */
  readonly model: string | undefined
  readonly stream: boolean
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number
  /** The client's socket address (not `X-Forwarded-For`), when served over a listening socket and some plugin is loaded; null otherwise. */
  readonly clientIp: string | null
  /** Set by an `authenticate` hook. */
  identity: Identity | undefined
  /**
   * The key a refused request presented, when an `authenticate` hook recognised it (revoked,
   * expired, another environment's…): what logs need to tie the refusal to the key and its
   * owner. Never set on an admitted request (see `identity`).
   */
  refusedKey: { keyId: string; userId: string; teamId: string | null } | undefined
  /** The model group the requested model resolved to. */
  group: ModelGroup | undefined
  /** The upstream target of the attempt that answered, or of the last one tried when none did. */
  target: RouteTarget | undefined
  /**
   * Some attempt was given up while its upstream had the request, before it answered: its headers
   * did not come within the provider's timeout (`upstream_timeout`), the client left, or the
   * shutdown cut it. The upstream may still answer and bill it, and no usage says what it used.
   * An attempt the upstream answered (with an error too) or could not be sent never sets it.
   */
  abandonedCall: boolean
  /** Headers to add to the client response (rate-limit headers and the like). */
  readonly responseHeaders: Record<string, string>
  /** Usage once known. */
  usage: Usage | undefined
  /** Per-plugin scratch space, keyed by plugin name. */
  readonly locals: Record<string, unknown>
}

/** What a hook may return: nothing to continue, a `GatewayError` to refuse. */
export type HookResult = void | undefined | GatewayError
export type MaybePromise<T> = T | Promise<T>

/** Why an upstream attempt failed, handed to the route plan to choose what comes next. */
export interface AttemptFailure {
  target: RouteTarget
  /** HTTP status from upstream, or 0 for network errors and timeouts. */
  status: number
  error: GatewayError
  /**
   * What an operator is told of the failure (the provider key's `last_error`) where it says more
   * than the client may read: a redirect's address, which the client is not shown (it may carry a
   * token). Undefined where `error.message` says it all.
   */
  operatorMessage?: string
  /** Seconds the upstream asked to wait (its `retry-after-ms`, else its `Retry-After`), if it said. */
  retryAfter: number | null
  /** ms the attempt took. */
  latencyMs: number
  /**
   * The status the upstream answered where the gateway acts on another: an account out of money
   * (a 402, or OpenAI's 429 `insufficient_quota`) is acted on as a 403. Undefined otherwise.
   */
  upstreamStatus?: number
  /**
   * The provider's adapter refused the request before sending it (a field it cannot translate):
   * nothing reached the upstream, so this says nothing about its key. `status` is 400.
   */
  refused?: boolean
}

/** What the route stage produces: the targets to try, in order, told of each failure. */
export interface RoutePlan {
  /** The next target to try, or a `GatewayError` (or nothing) when there is none left. */
  next(previous: AttemptFailure | undefined): MaybePromise<RouteTarget | GatewayError | undefined>
  /**
   * Told of every attempt's end: success (`failure` undefined) or failure. An answer told as a
   * success whose body then fails by the upstream's doing (it stalled past the provider's
   * `idle_ms` or `total_ms`: `upstream_timeout`; its connection broke: `upstream_error`; status 0)
   * is told again, with that failure, before `release`, when the gateway reads the body (a plugin
   * reads it, a body timeout is set, or `release` is present); `next` is not called after it: the
   * client has had part of the answer. A client that goes away is no failure.
   */
  report?(target: RouteTarget, latencyMs: number, response: Response | undefined, failure: AttemptFailure | undefined): void
  /** Called once when the request ends, to release anything held (in-flight counts). */
  release?(): void
}

/** Outcome of a request, handed to `onComplete` after the response has been sent. */
export interface Outcome {
  status: number
  errorCode: string | null
  /** ms from arrival to the last byte (or the error). */
  latencyMs: number
  /** ms from arrival to the first body byte of a stream. */
  ttftMs: number | null
  /**
   * The client went away before the end (status 499 when it left before the upstream answered;
   * an upstream that fails mid-body is `errorCode: 'upstream_error'` with `aborted: false`).
   */
  aborted: boolean
}

/** A parsed server-sent event of an OpenAI-format stream. */
export interface StreamChunk {
  /**
   * The parsed `data:` JSON, as the upstream sent it or as a hook before replaced it. Read-only: a
   * change made in place would never reach the client; return the new data instead (see onStreamChunk).
   */
  readonly data: Readonly<Record<string, unknown>>
}

/**
 * What `onStreamChunk` returns: nothing (or `true`) to pass the event on as it came, `false` to keep
 * it from the client, or an object to send as the event's data in its place.
 */
export type StreamChunkResult = boolean | void | Readonly<Record<string, unknown>>

/** The stages a plugin may take part in. All optional; only stages some plugin uses are attached. */
export interface PluginHooks {
  /**
   * Establish `req.identity`, or refuse. This hook, `admit` and `route` have `limits.hook_timeout_ms`
   * (default 30 s) to settle: past it the request is answered 500 `internal_error`, the hooks after are
   * not called, and the completion hooks run once the late one settles (or another timeout on).
   */
  authenticate?(req: GatewayRequest): MaybePromise<HookResult>
  /** Admit or refuse by limits, budgets, policy. */
  admit?(req: GatewayRequest): MaybePromise<HookResult>
  /**
   * Pick upstream targets. The first plugin that returns a plan wins; without one the core tries the
   * group's first target. The plan's `next` counts as this hook: one that throws or does not settle
   * within `limits.hook_timeout_ms` fails the request naming the plugin.
   */
  route?(req: GatewayRequest, group: ModelGroup): MaybePromise<RoutePlan | GatewayError | undefined>
  /**
   * Every parsed chunk of a streamed response, in order. Return nothing (or `true`) to pass it on
   * as it came, byte for byte; `false` to keep it from the client; or an object, written in its place
   * as one `data:` line (`return { ...chunk.data, choices }`: `chunk.data` is read-only, build new
   * objects down to what changes). The hooks after see the replacement. A hook that throws, or answers
   * anything else (an array, a promise: it is not awaited, so it cannot be `async`), leaves the chunk
   * as it was; the failure is logged once per request, naming the plugin, and the hook is still
   * called for the chunks after.
   */
  onStreamChunk?(req: GatewayRequest, chunk: StreamChunk): StreamChunkResult
  /** The request's usage, once known (also for streams cut off by the client). */
  onUsage?(req: GatewayRequest, usage: Usage): void
  /** After the response has been sent. Never delays the client. */
  onComplete?(req: GatewayRequest, outcome: Outcome): void
  /**
   * Set to false when this plugin's `onComplete` never reads `req.clientIp`. Bun answers the client
   * address only while the request is open, so a completion hook makes the pipeline ask for it on
   * every request (a system call and an object), unless every plugin with one says false. A hook
   * that says false and reads it anyway is sure of the address only if an earlier hook read it;
   * otherwise it may read null.
   */
  readsClientIpOnComplete?: boolean
  /**
   * Set to true when this plugin's `authenticate`, run on a request whose body has not been read
   * (`body` empty, `model` undefined), refuses only requests it would refuse whatever their body
   * holds. When the first plugin with an `authenticate` hook says so, a client API body over 16 KiB
   * (or of unknown length) is read only once that hook has not refused the request so: a caller
   * without a valid key cannot make the gateway read and parse megabytes. The hook then runs again,
   * with the body, in the authenticate stage. The built-in `auth` says so.
   */
  authenticatesBeforeBody?: boolean
  /** Facts about the calling key for `GET /v1/key` (status, limits, remaining quota); merged over all plugins. Bounded by `limits.hook_timeout_ms` as `authenticate` is. */
  describe?(req: GatewayRequest): MaybePromise<Record<string, unknown>>
  /**
   * Extra HTTP routes, registered on the app (outside the `/v1` pipeline). They are not
   * authenticated by themselves, whatever their path (`/v1/...` too): a handler that serves API
   * key holders only checks the request with `ctx.authenticate(request)` (see PluginContext). A
   * route may not take the method and path of one the gateway or another plugin serves: the boot
   * fails, naming the plugin, the method and the path. A `GatewayError` a handler returns or throws is answered
   * in the error envelope; anything else it throws is answered 500 `internal_error`, and the log
   * line names the plugin.
   */
  routes?(app: Elysia): unknown
  /**
   * Counters a plugin keeps (cache hits and misses, say), read at every `GET /metrics` scrape and
   * shown as `sluice_plugin_stat{plugin, stat}`; with `hits` and `misses` also as
   * `sluice_plugin_cache_hit_ratio{plugin}`.
   */
  stats?(): Record<string, number>
  /** Called on shutdown, after the server stopped accepting. */
  close?(): MaybePromise<void>
}

/** What each member of {@link PluginHooks} is: a hook (a function) or a flag. Every member is listed (`satisfies`). */
export const HOOK_KINDS = {
  authenticate: 'function',
  admit: 'function',
  route: 'function',
  onStreamChunk: 'function',
  onUsage: 'function',
  onComplete: 'function',
  readsClientIpOnComplete: 'boolean',
  authenticatesBeforeBody: 'boolean',
  describe: 'function',
  routes: 'function',
  stats: 'function',
  close: 'function',
} as const satisfies Record<keyof PluginHooks, 'function' | 'boolean'>

/**
 * What is wrong with what a plugin's setup returned, or null for a hooks object (nothing counts as
 * one without hooks). A hook that was no function (`admit: true`) failed the boot naming nobody, and
 * a setup that returned no object was taken for one without hooks; TypeScript says neither to a
 * plugin written in JavaScript. Members of other names are the plugin's own (see misspeltHooks).
 */
export function hooksProblem(hooks: unknown): string | null {
  if (hooks === undefined) return null
  if (typeof hooks !== 'object' || hooks === null || Array.isArray(hooks)) {
    const shown = typeof hooks === 'string' ? `the string ${JSON.stringify(hooks.slice(0, 80))}` : Array.isArray(hooks) ? 'an Array' : String(hooks)
    return `its setup returned ${shown}, not an object of hooks`
  }
  for (const [key, kind] of Object.entries(HOOK_KINDS)) {
    const value: unknown = (hooks as Record<string, unknown>)[key]
    // Left out: a JavaScript plugin may say so with null or false (`admit: options.enabled && admit`).
    if (value === undefined || value === null || (value === false && kind === 'function')) continue
    if (typeof value !== kind) return `${kind === 'function' ? 'hook' : 'flag'} ${JSON.stringify(key)} is ${value === null ? 'null' : `a ${typeof value}`}, not a ${kind}`
  }
  return null
}

/**
 * The members of a hooks object that look like a misspelt hook (`onCompleted`, `onchunk`): the
 * name, and the hook meant. A plugin may return members of its own beside its hooks (logging's
 * `prune`), so other names pass; these are never called, which the boot log says.
 */
export function misspeltHooks(hooks: object): Array<{ name: string; meant: string }> {
  const found: Array<{ name: string; meant: string }> = []
  for (const name of Object.keys(hooks)) {
    if (Object.hasOwn(HOOK_KINDS, name)) continue
    let meant: string | undefined
    let best = 3
    for (const hook of Object.keys(HOOK_KINDS)) {
      const distance = editDistance(name.toLowerCase(), hook.toLowerCase())
      if (distance < best) [best, meant] = [distance, hook]
    }
    if (meant === undefined && /^on[A-Z]/.test(name)) meant = ON_HOOKS
    if (meant !== undefined) found.push({ name, meant })
  }
  return found
}

/** The hooks named on…, as a misspelt one is told of them. */
const ON_HOOKS = 'onStreamChunk, onUsage or onComplete'

/** Levenshtein distance (names of a few dozen characters, once per member at boot). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row.push(Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)))
    previous = row
  }
  return previous[b.length]!
}

/** What `setup` receives: the resolved config, shared services, the plugin's validated options. */
export interface PluginContext<Options = unknown> {
  options: Options
  config: ResolvedConfig
  services: Services
  models: ModelRegistry
  /** Lines carry `plugin: <name>`. */
  logger: Logger
  /**
   * Check a request's credentials as the client API does (every plugin's `authenticate` hook, the
   * built-in `auth`'s key check among them), for the plugin's own `routes`, which the gateway does
   * not authenticate: the caller's identity, or the `GatewayError` to answer with
   * (return it, or throw it: either is answered in the envelope with the request id). The key is checked as for `GET /v1/key`: it
   * must be valid, and no scope or model is asked of it (read `identity.scopes` for your own). With
   * no plugin that establishes identities, every call is refused (`missing_api_key`). For requests
   * being handled; not during setup.
   *
   * Pass `requestId`, the id the gateway answers the request with (the handler's
   * `set.headers['x-request-id']`), so that the hooks see it as `req.id` and their log lines carry
   * the `x-request-id` the client got; without it they run under a new id of their own.
   */
  authenticate(request: Request, requestId?: string): Promise<Identity | GatewayError>
}

/** A plugin definition: a name, an options schema, and a setup that returns hooks. */
export interface PluginDefinition<S extends TSchema | undefined = TSchema | undefined> {
  readonly name: string
  /** TypeBox schema of the options; they are validated against it at boot. */
  readonly options?: S
  setup(ctx: PluginContext<S extends TSchema ? Static<S> : undefined>): MaybePromise<PluginHooks>
}

/** A plugin with its options bound, as listed in a config. */
export interface PluginInstance {
  readonly name: string
  readonly definition: PluginDefinition
  readonly options: unknown
}

/**
 * What a plugin's factory takes: the options' type, every property of an options object optional.
 * A schema's `default` leaves no trace in its TypeScript type (`Type.Integer({ default: 5 })` is a
 * `TInteger` like any other), so the properties that may be left out cannot be told from those that
 * may not; with all of them required, `blockPii({ action: 'redact' })` failed to compile. A required
 * option left out is still refused at boot, naming the plugin and the option.
 */
export type PluginOptionsInput<S extends TSchema | undefined> = S extends TObject ? Partial<Static<S>> : S extends TSchema ? Static<S> : undefined

/** What `definePlugin` returns: call it with options to get an instance; list it bare for the defaults. */
export type PluginFactory<S extends TSchema | undefined = TSchema | undefined> = ((options?: PluginOptionsInput<S>) => PluginInstance) & {
  readonly definition: PluginDefinition<S>
}

/**
 * Define a plugin. The result is a factory: `myPlugin({ ... })` binds options; a bare
 * `myPlugin` in a config uses the defaults. The same name with equal options registers once.
 */
export function definePlugin<S extends TSchema | undefined = undefined>(definition: PluginDefinition<S>): PluginFactory<S> {
  const factory = (options?: unknown): PluginInstance => ({
    name: definition.name,
    definition: definition as PluginDefinition,
    options,
  })
  return Object.assign(factory, { definition }) as PluginFactory<S>
}

export const isPluginInstance = (value: unknown): value is PluginInstance =>
  typeof value === 'object' && value !== null && 'definition' in value && 'name' in value

export const isPluginFactory = (value: unknown): value is PluginFactory =>
  typeof value === 'function' && 'definition' in value
