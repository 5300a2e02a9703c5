import { ERROR_CODES, type ErrorCode, GatewayError, RETRY_UPSTREAM, upstreamErrorCode } from './errors.ts'
import type { Logger } from './lib/logger.ts'
import { databaseOutage, databaseUnavailable, describeError } from './db/errors.ts'
import type { Services } from './services.ts'
import { MAX_TIMER_MS, type Pricing, type Timeouts } from './config/schema.ts'
import { SseSplitter, eventData } from './lib/sse.ts'
import { type BodyWatch, Watchdog } from './lib/watchdog.ts'
import { UPSTREAM_STATUS_HEADER, isRefusal, completionsAsked, errorBody, errorEventStatus, isMisdirectedPage, isRecord, isRedirect, maxTokensOf, streamErrorFrame } from './providers/shared/openai-format.ts'
import { callSecrets, scrubAll } from './lib/secrets.ts'
import { echo } from './lib/key-text.ts'
import { retryAfterMs, spentLimitsResetS } from './lib/rate-headers.ts'
import { cacheWritesOf, carriesUsage, hourCacheWritesOf, eventUsage, findServiceTier, findUsage, lastUsage, parseUsage, priceOf, promptUsageOf, roughPromptTokens, roughTokens, tierPricing } from './lib/usage.ts'
import { within } from './lib/within.ts'
import { DEFAULT_TOTAL_MS, headersWaitMs } from './providers/timeouts.ts'
import type { ModelGroup, ModelRegistry, RouteTarget } from './models.ts'
import type {
  AttemptFailure,
  Endpoint,
  GatewayRequest,
  HookResult,
  MaybePromise,
  Outcome,
  PluginHooks,
  RoutePlan,
  StreamChunk,
  StreamChunkResult,
  Usage,
} from './plugin.ts'

/** A plugin after `setup`: its name and the hooks it returned. */
export interface LoadedPlugin {
  readonly name: string
  readonly hooks: PluginHooks
}

export interface PipelineOptions {
  plugins: readonly LoadedPlugin[]
  models: ModelRegistry
  logger: Logger
  /** For the tokenizer in force (a plugin may install one during setup) and the upstream key health every attempt reports to. */
  services: Pick<Services, 'tokenizer' | 'upstreams'>
  /**
   * The socket address of a request's client while it is being handled (Bun's `server.requestIP`);
   * null in process. Asked once per request, and only when some plugin takes part in requests.
   */
  clientAddress?: (request: Request) => string | null
  /** How long an authenticate, admit or route hook may take to settle; 0 for no limit (see Pipeline.bounded). @default 0 */
  hookTimeoutMs?: number
}

/** Raw data of stream events kept to count a completion when the provider reports no usage. */
const MAX_KEPT_EVENT_CHARS = 4 * 1024 * 1024
/**
 * Generated text read from the events that come after those kept raw (a stream longer than them
 * without usage yet), as they come: about 1M tokens, more than any model writes in one answer.
 */
const MAX_TAIL_TEXT_CHARS = 4 * 1024 * 1024
/** Bytes of a mirrored stream held to be read at its end (Pipeline.mirrorStream); past them, read as they come. */
const MAX_HELD_BYTES = 1024 * 1024
/**
 * The most tokens a stream may ask for (`max_tokens` for each completion) and still be mirrored
 * (Pipeline.mirrorStream). Its copy is read as fast as the upstream sends, whatever the client
 * reads, so a client that stops reading leaves the rest of the answer in memory: about 1 MB at
 * this size. A stream that may be longer, or names no limit, is written by tapStream, which reads
 * the upstream only as fast as the client takes it.
 */
const MIRROR_MAX_TOKENS = 4096
/** What a mirrored stream may bring before it is taken for an upstream that ignores max_tokens, and cut. */
const MIRROR_MAX_BYTES = 16 * 1024 * 1024

type Stage = (req: GatewayRequest) => MaybePromise<HookResult>
/** The stages before the upstream call, whose hooks a failure names. */
type StageName = 'authenticate' | 'admit' | 'route'

/** The hooks whose failure fails their request: the stages before the upstream call, `describe`, and the handlers of a plugin's `routes`. */
type FailingHook = StageName | 'describe' | 'routes'

/**
 * A plugin's hook threw (or its promise rejected, or it returned what a hook may not) before the
 * upstream call, or in a route of its own: the error, with the plugin and hook it came from, so the
 * operator's log names who failed. A `GatewayError` thrown by a hook is a refusal like a returned one
 * and is never wrapped.
 */
export class HookFailure extends Error {
  constructor(
    readonly hook: FailingHook,
    readonly plugin: string,
    override readonly cause: unknown,
  ) {
    super(`${hook} hook of plugin "${plugin}" failed: ${String(cause)}`)
    this.name = 'HookFailure'
  }

  /** The error line: the hook and the plugin, as the hooks after the response are logged. */
  report(logger: Logger, requestId: string): void {
    logger.error(`${this.hook} hook failed`, { plugin: this.plugin, request_id: requestId, error: this.cause instanceof Error ? this.cause.stack || String(this.cause) : String(this.cause) })
  }
}

/**
 * Why a hook before the upstream call failed when it did not settle within `limits.hook_timeout_ms`
 * (the cause of its HookFailure): `late` is its promise, which may still settle; the request's
 * completion hooks wait for it (see Pipeline.failLate).
 */
export class HookTimeout extends Error {
  constructor(
    readonly ms: number,
    readonly late: Promise<unknown>,
  ) {
    super(`it did not settle within ${ms} ms (limits.hook_timeout_ms); give its own calls a shorter timeout`)
    this.name = 'HookTimeout'
    // The line names the plugin and the hook; the timer's stack says nothing more.
    this.stack = `${this.name}: ${this.message}`
  }
}

/**
 * The 503 for a failure the gateway's own database caused (down, locked, too slow), also under a
 * plugin's hook or route that used it, logged with who used it; null for any other failure. Only a
 * failure marked as the database's where it happened counts: a plugin's own fetch that timed out
 * is no outage. `routePlugin` names the plugin whose route failed, when that is known apart.
 */
export function databaseFailure(error: unknown, logger: Logger, requestId: string, routePlugin?: string): GatewayError | null {
  const outage = databaseOutage(error)
  if (outage === null) return null
  const by = error instanceof HookFailure ? { plugin: error.plugin, hook: error.hook } : routePlugin === undefined ? {} : { plugin: routePlugin, hook: 'routes' }
  logger.warn('database unavailable', { request_id: requestId, ...by, error: describeError(outage) })
  return databaseUnavailable(outage)
}

type UsageHook = (req: GatewayRequest, usage: Usage) => void
type CompleteHook = (req: GatewayRequest, outcome: Outcome) => void
type ChunkHook = (req: GatewayRequest, chunk: StreamChunk) => StreamChunkResult

const DEFAULT_IDLE_MS = 120_000

/** An upstream call that answered 2xx: its response, and what can still cut it off. */
class Answer {
  /** Aborts the call (the watchdog's timeouts use it). */
  readonly controller: AbortController

  constructor(
    readonly response: Response,
    private readonly guard: CallGuard,
    /** `performance.now()` when the call started (its total timeout counts from here). */
    readonly startedAt: number,
  ) {
    this.controller = guard.controller
  }

  /**
   * Stops a client that goes away from aborting the call. The listener the attempt set stays on
   * through the body (one listener a request, not one per stage); a body that goes on natively
   * keeps it until the request is gone, where a late abort finds nothing left to stop.
   */
  detach(): void {
    this.guard.detach()
  }
}

/**
 * The calls waiting for their upstream's headers, as a list linked through the calls themselves.
 * A `Set` of them cost the gateway 20–40 MB of peak RSS under load, with or without plugins
 * (benchmarks/README.md, "Measured and not adopted"); a call taken out of this list is referenced
 * from nowhere, and adding and removing one allocate nothing.
 */
export class CallList {
  private head: CallGuard | null = null

  add(guard: CallGuard): void {
    guard.next = this.head
    if (this.head !== null) this.head.previous = guard
    this.head = guard
  }

  remove(guard: CallGuard): void {
    if (guard.previous !== null) guard.previous.next = guard.next
    else if (this.head === guard) this.head = guard.next
    if (guard.next !== null) guard.next.previous = guard.previous
    guard.previous = null
    guard.next = null
  }

  /** Aborts every call in the list with `reason` (each leaves the list as its attempt ends). */
  abortAll(reason: DOMException): void {
    for (let guard = this.head; guard !== null; ) {
      const next = guard.next
      guard.controller.abort(reason)
      guard = next
    }
  }
}

/**
 * What aborts one upstream call: the client going away, or its first-byte timeout. An object
 * with `handleEvent` is the listener and the timer's argument, so a call makes no closures.
 */
export class CallGuard {
  readonly controller = new AbortController()
  timedOut = false
  /** Its neighbours in the pipeline's list of calls waiting for their headers (see CallList). */
  previous: CallGuard | null = null
  next: CallGuard | null = null

  constructor(private readonly clientSignal: AbortSignal) {
    clientSignal.addEventListener('abort', this, { once: true })
  }

  /** The client closed the request. */
  handleEvent(): void {
    this.controller.abort(new DOMException('client closed the request', 'AbortError'))
  }

  detach(): void {
    this.clientSignal.removeEventListener('abort', this)
  }
}

/** The generated text of each choice of an answer, by choice index (see addChoiceText). */
type ChoiceTexts = readonly string[]
/** The completion text where there is none, or where the usage is known and it is never read. */
const NO_TEXT = (): ChoiceTexts => []

/** The answer to a model call the shutdown cut off before its upstream answered. */
const shuttingDown = (): GatewayError =>
  new GatewayError('not_ready', 'The gateway is shutting down and its grace period for requests in flight is over before the upstream answered. Retry the request.')

function firstByteTimeout(guard: CallGuard): void {
  guard.timedOut = true
  guard.controller.abort(new DOMException('upstream timed out', 'TimeoutError'))
}

const encoder = new TextEncoder()

/**
 * The request pipeline: authenticate → resolve model → admit → route → call upstream →
 * stream back, with usage and completion hooks after. Stage lists are built once; a
 * stage no plugin uses costs nothing, and with no plugin at all the upstream body is
 * handed to the client untouched.
 */
export class Pipeline {
  private readonly authenticateHooks: Stage[]
  /** The first authenticate hook, when its plugin may be asked before the body is read (see screen). */
  private readonly screenHook: Stage | null
  private readonly admitHooks: Stage[]
  private readonly routeHooks: NonNullable<PluginHooks['route']>[]
  private readonly usageHooks: UsageHook[]
  private readonly completeHooks: CompleteHook[]
  private readonly chunkHooks: ChunkHook[]
  private readonly describeHooks: NonNullable<PluginHooks['describe']>[]
  private readonly describeNames: string[]
  /** Some plugin needs to see the response as it passes. */
  private readonly tap: boolean
  private readonly models: ModelRegistry
  private readonly logger: Logger
  private readonly services: Pick<Services, 'tokenizer' | 'upstreams'>
  /** Resolves the client address, or null when no plugin could read it. */
  private readonly clientAddress: ((request: Request) => string | null) | null
  /** Some completion hook reads the client address: it is asked of Bun while the request is open. */
  private readonly completeReadsClientIp: boolean
  /** The plugins of the usage, completion and chunk hooks, in their order: their error lines name them. */
  private readonly usageNames: string[]
  private readonly completeNames: string[]
  private readonly chunkNames: string[]
  /** The plugins of each stage before the upstream call, in their order, for HookFailure. */
  private readonly stageNames: Record<StageName, string[]>
  /**
   * Requests whose usage and completion hooks wait for the end of this turn of the event loop, and
   * how each ended: the hooks run after the responses are written, so none delays its client.
   */
  private endingReqs: GatewayRequest[] = []
  private endingOutcomes: Outcome[] = []
  /** Idle and total timeouts of bodies already flowing to clients. */
  readonly watchdog = new Watchdog()
  /** Upstream calls waiting for their headers: what a shutdown past its grace answers at once (see shutdown). */
  private readonly calls = new CallList()
  /** See plan(): the route hook whose plan it gave at once. */
  private planOwner = -1
  /** How long a stage's hook may take to settle (see bounded); 0 for no limit. */
  private readonly hookTimeoutMs: number
  /** Set by shutdown(): no upstream call starts from then on. */
  private cutOff = false
  /** Model calls before their answer (in handle), and usages being counted: what a shutdown waits for. */
  private active = 0
  private counting = 0
  /** Usage and completion hooks that answered a promise not settled yet: what a shutdown waits for too. */
  private afterPending = 0
  private readonly afterSettled = (): void => {
    this.afterPending--
  }

  constructor(options: PipelineOptions) {
    const hooks = options.plugins.map((p) => p.hooks)
    const pick = <K extends keyof PluginHooks>(k: K) =>
      hooks.flatMap((h) => (h[k] ? [(h[k] as (...a: never[]) => unknown).bind(h) as NonNullable<PluginHooks[K]>] : []))
    this.authenticateHooks = pick('authenticate')
    // Truthy, as pick() takes them: a JavaScript plugin may leave a hook out as null or false.
    const first = hooks.find((h) => h.authenticate)
    this.screenHook = first?.authenticatesBeforeBody === true ? this.authenticateHooks[0]! : null
    this.admitHooks = pick('admit')
    this.routeHooks = pick('route')
    this.usageHooks = pick('onUsage')
    this.completeHooks = pick('onComplete')
    this.chunkHooks = pick('onStreamChunk')
    const names = (k: 'onUsage' | 'onComplete' | 'onStreamChunk' | 'describe' | StageName) => options.plugins.filter((p) => p.hooks[k]).map((p) => p.name)
    this.usageNames = names('onUsage')
    this.completeNames = names('onComplete')
    this.chunkNames = names('onStreamChunk')
    this.stageNames = { authenticate: names('authenticate'), admit: names('admit'), route: names('route') }
    this.describeHooks = pick('describe')
    this.describeNames = names('describe')
    this.tap = this.usageHooks.length + this.completeHooks.length + this.chunkHooks.length > 0
    this.models = options.models
    this.logger = options.logger
    this.services = options.services
    // Bun answers requestIP only while the request is open (see createRequest); with no plugin nobody would read it.
    this.clientAddress = options.plugins.length > 0 && options.clientAddress ? options.clientAddress : null
    this.completeReadsClientIp = hooks.some((h) => h.onComplete && h.readsClientIpOnComplete !== false)
    this.hookTimeoutMs = options.hookTimeoutMs ?? 0
  }

  /** A fresh request record. */
  createRequest(endpoint: Endpoint, request: Request, id: string, body: Record<string, unknown> = {}): GatewayRequest {
    const model = typeof body.model === 'string' ? body.model : undefined
    const resolve = this.clientAddress
    // Asked of Bun only when read: hooks before the response read it while the request is open;
    // completion hooks run after it, so with one of those that reads it, it is read now.
    let clientIp: string | null | undefined = resolve === null ? null : this.completeReadsClientIp ? resolve(request) : undefined
    return {
      id,
      endpoint,
      request,
      body,
      model,
      stream: body.stream === true,
      startedAt: arrivalOf(id),
      get clientIp() {
        if (clientIp === undefined) clientIp = resolve!(request)
        return clientIp
      },
      identity: undefined,
      refusedKey: undefined,
      group: undefined,
      target: undefined,
      abandonedCall: false,
      responseHeaders: {},
      usage: undefined,
      locals: {},
    }
  }

  /**
   * Run the authenticate stage alone (model list, key introspection, token counting). A hook that
   * fails throws a {@link HookFailure} naming its plugin.
   */
  authenticate(req: GatewayRequest): MaybePromise<HookResult> {
    try {
      const result = this.runStage(this.authenticateHooks, req, 'authenticate')
      return result instanceof Promise
        ? result.then(
            (answer) => (answer ? this.refusal(answer, 'authenticate') : undefined),
            (error: unknown) => Promise.reject(this.blame(error, 'authenticate')),
          )
        : result && this.refusal(result, 'authenticate')
    } catch (error) {
      throw this.blame(error, 'authenticate')
    }
  }

  /**
   * The refusal the first authenticate hook gives a request before its body is read, when its plugin
   * says it may be asked so (`authenticatesBeforeBody`); undefined when the body is to be read. A
   * hook that throws here is left to the authenticate stage, which runs it again once the body is read.
   */
  screen(endpoint: Endpoint, request: Request, id: string): MaybePromise<GatewayError | undefined> {
    const hook = this.screenHook
    if (hook === null) return undefined
    const refused = (answer: HookResult) => (answer instanceof GatewayError ? answer : undefined)
    try {
      const answer = hook(this.createRequest(endpoint, request, id))
      return answer instanceof Promise ? this.bounded(answer, 'authenticate', this.stageNames.authenticate[0]!).then(refused, () => undefined) : refused(answer)
    } catch {
      return undefined
    }
  }

  /** What the plugins say about the calling key, for `GET /v1/key`. */
  async describe(req: GatewayRequest): Promise<Record<string, unknown>> {
    const parts = await Promise.all(this.describeHooks.map((hook, i) => this.describeWith(hook, i, req)))
    return Object.assign({}, ...parts)
  }

  /**
   * A response the route built itself (model list, key introspection), reported to `onComplete`
   * like every other answer; returned unchanged.
   */
  answered(req: GatewayRequest, response: Response): Response {
    if (this.completeHooks.length) {
      this.defer(req, { status: response.status, errorCode: null, latencyMs: performance.now() - req.startedAt, ttftMs: null, aborted: false })
    }
    return response
  }

  /** An error response for a request, with its collected headers, reported to `onComplete`. */
  fail(req: GatewayRequest, error: GatewayError): Response {
    const response = error.toResponse(req.id)
    for (const [k, v] of Object.entries(req.responseHeaders)) if (!response.headers.has(k)) response.headers.set(k, v)
    if (this.completeHooks.length) {
      this.defer(req, { status: error.status, errorCode: error.code, latencyMs: performance.now() - req.startedAt, ttftMs: null, aborted: false })
    }
    return response
  }

  /**
   * A request whose client went away before the upstream answered: nobody reads the response;
   * the hooks hear it as aborted (status 499, as proxies log it), not as an upstream failure.
   */
  private closedByClient(req: GatewayRequest): Response {
    if (this.completeHooks.length) this.defer(req, { status: 499, errorCode: null, latencyMs: performance.now() - req.startedAt, ttftMs: null, aborted: true })
    return new GatewayError('upstream_error', 'The client closed the request.').toResponse(req.id)
  }

  /**
   * How a body read that failed ended: the watchdog's timeout, the client going away (which aborts
   * the call), or else the upstream failing mid-body, which is no client's doing.
   */
  private cutShort(req: GatewayRequest, watch: BodyWatch): { aborted: boolean; errorCode: ErrorCode | null } {
    if (watch.timedOut !== null) return { aborted: true, errorCode: watch.code }
    if (req.request.signal.aborted) return { aborted: true, errorCode: null }
    return { aborted: false, errorCode: 'upstream_error' }
  }

  /** The whole path of a model call (chat, completions, embeddings). */
  async handle(req: GatewayRequest): Promise<Response> {
    let plan: RoutePlan | undefined
    // The stage whose hooks run, if any: a failure there is the plugin's, and the log names it.
    let stage: StageName | undefined = 'authenticate'
    this.active++
    try {
      // Awaited only when a hook answered with a promise: an await of a plain value still costs a
      // promise and a turn of the microtask queue, several per request on the hot path.
      let refused = this.runStage(this.authenticateHooks, req, 'authenticate')
      if (refused instanceof Promise) refused = await refused
      stage = undefined
      if (refused) return this.fail(req, this.refusal(refused, 'authenticate'))

      const group = req.model === undefined ? undefined : this.models.get(req.model)
      if (!group) return this.fail(req, modelNotFound(req.model))
      req.group = group

      stage = 'admit'
      let refusedAdmission = this.runStage(this.admitHooks, req, 'admit')
      if (refusedAdmission instanceof Promise) refusedAdmission = await refusedAdmission
      stage = undefined
      if (refusedAdmission) return this.fail(req, this.refusal(refusedAdmission, 'admit'))

      stage = 'route'
      let routed = this.plan(req, group)
      // Read at once: the next request's plan() changes it.
      let owner = this.planOwner
      if (routed instanceof Promise) ({ plan: routed, owner } = await routed)
      stage = undefined
      if (routed instanceof GatewayError) return this.fail(req, routed)
      plan = routed

      // Someone will read the usage (onUsage, or onComplete through req.usage): ask the upstream for it rather than estimate.
      if (req.stream && this.usageHooks.length + this.completeHooks.length > 0 && req.endpoint !== 'embeddings') askForStreamUsage(req)

      const result = await this.callUpstream(req, plan, owner)
      if (result instanceof GatewayError || result === null) {
        this.release(plan, req)
        return result === null ? this.closedByClient(req) : this.fail(req, result)
      }
      return this.respond(req, result, plan)
    } catch (error) {
      // A plan whose next() did not settle in time is released once it has (failLate): the target it
      // may still pick takes from the plan (balance's in-flight count and rpm) only then.
      const lateNext = plan !== undefined && error instanceof HookFailure && error.hook === 'route' && error.cause instanceof HookTimeout
      if (plan && !lateNext) this.release(plan, req)
      return this.failed(req, stage === undefined ? error : this.blame(error, stage), lateNext ? plan : undefined)
    } finally {
      this.active--
    }
  }

  /**
   * The shutdown's grace is over, the connections still open: bodies flowing to clients are cut off
   * (a stream the gateway writes ends with a `not_ready` event), and model calls still waiting for
   * their upstream's headers give up, answered 503 `not_ready` (retry elsewhere) and logged so, where
   * closing their connections would leave their clients without an answer and log them as gone.
   */
  shutdown(): void {
    this.cutOff = true
    this.watchdog.shutdown()
    this.calls.abortAll(new DOMException('the gateway is shutting down', 'AbortError'))
  }

  /**
   * At shutdown, once the server has cut off what was still running: waits (at most `limitMs`) for
   * those requests to end, their bodies to fail and their usage to be counted, then runs every
   * usage and completion hook deferred so far, while the plugins are still open, and waits (within
   * the same limit) for those that answered a promise: an async onComplete sending usage to a billing
   * service had its plugin closed under it, and the process exit cut its call. A request cut off this
   * way is still settled and logged.
   */
  async drain(limitMs: number): Promise<void> {
    const end = performance.now() + limitMs
    // One turn at least: a cut connection reaches the requests' signals and readers in the next ones.
    do {
      await Bun.sleep(5)
      this.runEnding()
    } while ((this.active > 0 || this.watchdog.open > 0 || this.counting > 0 || this.afterPending > 0) && performance.now() < end)
    this.runEnding()
  }

  /**
   * Something threw on the request's way (a hook, the gateway itself): logged unless a GatewayError
   * (a hook's, naming its plugin), answered with the request's id; 503 when the gateway's database
   * could not answer.
   */
  failed(req: GatewayRequest, error: unknown, heldPlan?: RoutePlan): Response {
    if (error instanceof GatewayError) return this.fail(req, error)
    // The gateway's database could not answer a hook that used it: 503, retry shortly, not a bug.
    const outage = databaseFailure(error, this.logger, req.id)
    if (outage !== null) return this.fail(req, outage)
    if (error instanceof HookFailure) error.report(this.logger, req.id)
    else this.logger.error('request failed unexpectedly', { request_id: req.id, error: String(error) })
    const internal = new GatewayError('internal_error', `The gateway failed unexpectedly; quote request id ${req.id} to the operator.`)
    if (error instanceof HookFailure && error.cause instanceof HookTimeout) return this.failLate(req, internal, error.hook, error.cause, heldPlan)
    return this.fail(req, internal)
  }

  /**
   * The answer to a request whose hook did not settle in time (a HookTimeout): sent now, while the
   * hook may still settle and take something (a slot, a count) that the completion hooks give
   * back. So those wait for it to settle, or for another hookTimeoutMs if it does not: the plugins
   * before it get to release what they took either way, where a hook that never settled held them
   * for good. A route hook's plan that comes late is released.
   */
  private failLate(req: GatewayRequest, error: GatewayError, hook: FailingHook, timeout: HookTimeout, heldPlan?: RoutePlan): Response {
    const response = error.toResponse(req.id)
    for (const [k, v] of Object.entries(req.responseHeaders)) if (!response.headers.has(k)) response.headers.set(k, v)
    const outcome: Outcome = { status: error.status, errorCode: error.code, latencyMs: performance.now() - req.startedAt, ttftMs: null, aborted: false }
    let done = false
    const finish = (value: unknown): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (hook === 'route' && isPlan(value)) this.release(value, req)
      // A plan whose next() was late: released once that next() settled, with whatever it picked.
      if (heldPlan) this.release(heldPlan, req)
      if (this.completeHooks.length) this.defer(req, outcome)
    }
    const timer = setTimeout(finish, this.hookTimeoutMs, undefined)
    timer.unref()
    timeout.late.then(finish, () => finish(undefined))
    return response
  }

  /**
   * A hook's promise, failing with a HookFailure (its cause a HookTimeout) if it has not settled
   * within hookTimeoutMs: the gateway holds no client, and nothing the plugins before the hook took,
   * for as long as a plugin's own call may hang. Only hooks that answer with a promise pay for it.
   */
  private bounded<T>(pending: Promise<T>, hook: FailingHook, plugin: string): Promise<T> {
    const ms = this.hookTimeoutMs
    if (ms === 0) return pending
    return within(pending, ms, () => new HookFailure(hook, plugin, new HookTimeout(ms, pending)))
  }

  /**
   * A failure in a stage's hooks, as a HookFailure. Where the stage has several hooks, runStage and
   * plan have named the one that failed already; with one, it is that one.
   */
  private blame(error: unknown, stage: StageName): unknown {
    if (error instanceof HookFailure || this.stageNames[stage].length !== 1) return error
    return this.hookFailure(error, stage, 0)
  }

  /** The failure of the stage's hook at `index`, naming its plugin; a GatewayError thrown is a refusal, left as it is. */
  private hookFailure(error: unknown, stage: StageName, index: number): unknown {
    // A refusal stays one; a failure already named (a hook's answer found wrong) is not named twice.
    return error instanceof GatewayError || error instanceof HookFailure ? error : new HookFailure(stage, this.stageNames[stage][index]!, error)
  }

  /**
   * What a stage's hook answered (not nothing), as a refusal: a GatewayError. Anything else (a string,
   * `true`, an error object of the plugin's own) is the plugin's mistake, a HookFailure naming it,
   * where it reached the answer and failed there as a TypeError naming nobody. `index` is the hook's
   * in the stage; runStage checks each of several itself, so only a lone hook's answer is checked
   * here (at 0).
   */
  private refusal(result: unknown, stage: StageName, index = 0): GatewayError {
    if (result instanceof GatewayError) return result
    throw this.hookFailure(strayAnswer(result, 'a GatewayError to refuse, or nothing to go on'), stage, index)
  }

  /** A route hook's plan, unless it is none (see refusal). */
  private checkedPlan(plan: RoutePlan | GatewayError, index: number): RoutePlan | GatewayError {
    if (plan instanceof GatewayError || isPlan(plan)) return plan
    throw this.hookFailure(strayAnswer(plan, 'a RoutePlan (an object with next()), a GatewayError to refuse, or nothing to leave it to the next'), 'route', index)
  }

  /** A `describe` hook's facts; its failure names the plugin. */
  private async describeWith(hook: NonNullable<PluginHooks['describe']>, index: number, req: GatewayRequest): Promise<Record<string, unknown>> {
    const plugin = this.describeNames[index]!
    try {
      const answer = hook(req)
      return factsOf(answer instanceof Promise ? await this.bounded(answer, 'describe', plugin) : answer)
    } catch (error) {
      throw error instanceof GatewayError || error instanceof HookFailure ? error : new HookFailure('describe', plugin, error)
    }
  }

  /**
   * A stage's hooks in order until one refuses. One hook is called directly (its failure is blamed by
   * the caller, which knows the stage); with several, a failure is named here.
   */
  private runStage(stage: Stage[], req: GatewayRequest, name: StageName): MaybePromise<HookResult> {
    if (stage.length === 0) return undefined
    if (stage.length === 1) {
      const result = stage[0]!(req)
      return result instanceof Promise ? this.bounded(result, name, this.stageNames[name][0]!) : result
    }
    return (async () => {
      for (let i = 0; i < stage.length; i++) {
        let result: HookResult
        try {
          const answer = stage[i]!(req)
          result = answer instanceof Promise ? await this.bounded(answer, name, this.stageNames[name][i]!) : answer
        } catch (error) {
          throw this.hookFailure(error, name, i)
        }
        if (result) return this.refusal(result, name, i)
      }
      return undefined
    })()
  }

  /**
   * The plan of the first route hook that gives one, else the core's. When it comes at once, the index
   * of the hook it came from is left in planOwner (-1: the core's), for the caller to read at once;
   * a plan that comes later comes with it.
   */
  private plan(req: GatewayRequest, group: ModelGroup): RoutePlan | GatewayError | Promise<OwnedPlan> {
    const hooks = this.routeHooks
    let i = 0
    try {
      for (; i < hooks.length; i++) {
        const plan = hooks[i]!(req, group)
        if (plan instanceof Promise) return this.planFrom(this.bounded(plan, 'route', this.stageNames.route[i]!), i, req, group)
        if (plan) {
          this.planOwner = i
          return this.checkedPlan(plan, i)
        }
      }
    } catch (error) {
      throw this.hookFailure(error, 'route', i)
    }
    this.planOwner = -1
    return firstTargetPlan(group, req.endpoint)
  }

  /** The rest of plan() once a route hook answered with a promise. */
  private async planFrom(pending: Promise<RoutePlan | GatewayError | undefined>, at: number, req: GatewayRequest, group: ModelGroup): Promise<OwnedPlan> {
    let i = at
    try {
      const plan = await pending
      if (plan) return { plan: this.checkedPlan(plan, i), owner: i }
      for (i = at + 1; i < this.routeHooks.length; i++) {
        let next = this.routeHooks[i]!(req, group)
        if (next instanceof Promise) next = await this.bounded(next, 'route', this.stageNames.route[i]!)
        if (next) return { plan: this.checkedPlan(next, i), owner: i }
      }
    } catch (error) {
      throw this.hookFailure(error, 'route', i)
    }
    return { plan: firstTargetPlan(group, req.endpoint), owner: -1 }
  }

  /**
   * The plan's next target. A plan is its route hook's answer: its `next` failing or not settling
   * within hookTimeoutMs is that plugin's failure, named (`owner`: the hook's index, -1 for the
   * core's plan), where one that never settled held the request, and what the plugins before it
   * took, for good.
   */
  private nextTarget(plan: RoutePlan, owner: number, failure: AttemptFailure | undefined): MaybePromise<RouteTarget | GatewayError | undefined> {
    if (owner < 0) return plan.next(failure)
    let next: MaybePromise<RouteTarget | GatewayError | undefined>
    try {
      next = plan.next(failure)
    } catch (error) {
      throw this.planFailure(error, owner)
    }
    return next instanceof Promise ? this.laterTarget(next, owner) : next
  }

  private async laterTarget(next: Promise<RouteTarget | GatewayError | undefined>, owner: number): Promise<RouteTarget | GatewayError | undefined> {
    try {
      return await this.bounded(next, 'route', this.stageNames.route[owner]!)
    } catch (error) {
      throw this.planFailure(error, owner)
    }
  }

  /** A failure of the plan of the route hook at `owner`, naming its plugin; a GatewayError thrown is a refusal, left as it is. */
  private planFailure(error: unknown, owner: number): unknown {
    return error instanceof GatewayError || error instanceof HookFailure ? error : new HookFailure('route', this.stageNames.route[owner]!, error)
  }

  /** Try targets as the plan gives them until one answers 2xx or the plan runs out. */
  /** The upstream's answer, the error to give, or null when the client went away first. */
  private async callUpstream(req: GatewayRequest, plan: RoutePlan, owner: number): Promise<Answer | GatewayError | null> {
    let failure: AttemptFailure | undefined
    for (;;) {
      let next = this.nextTarget(plan, owner, failure)
      if (next instanceof Promise) next = await next
      // The client left (while the plan waited, too: balance's backoff ends then): nobody to answer,
      // and the hooks hear it as aborted (499), not as the last attempt's failure.
      if (req.request.signal.aborted) return null
      if (next === undefined) return failure?.error ?? new GatewayError('no_healthy_upstream', `No upstream is available for model "${echo(req.model ?? '', 256)}" right now; retry shortly.`)
      if (next instanceof GatewayError) return next
      if (this.cutOff) return shuttingDown()
      // Set before the attempt: a request that fails upstream is still logged against the key that failed it.
      req.target = next
      const started = performance.now()
      const outcome = await this.attempt(req, next)
      const latency = performance.now() - started
      if (outcome instanceof Answer) {
        this.services.upstreams.record(next, outcome.response.status, latency)
        plan.report?.(next, latency, outcome.response, undefined)
        return outcome
      }
      failure = { ...outcome, target: next, latencyMs: latency }
      // The client going away aborted the call: no fault of the key's, and nobody to answer.
      if (req.request.signal.aborted) {
        plan.report?.(next, latency, undefined, failure)
        return null
      }
      // Cut off by the shutdown: no fault of the key's either (the plan's release frees it), and no other target is tried.
      if (this.cutOff) return shuttingDown()
      // A refusal of the adapter's own never reached the upstream: nothing to count for its key.
      if (!outcome.refused) this.services.upstreams.record(next, outcome.status, latency)
      plan.report?.(next, latency, undefined, failure)
      this.logger.debug('upstream attempt failed', { request_id: req.id, provider: next.provider.id, key: next.key.id, status: failure.status })
    }
  }

  private async attempt(req: GatewayRequest, target: RouteTarget): Promise<Answer | Omit<AttemptFailure, 'target' | 'latencyMs'>> {
    const body = req.body.model === target.model ? req.body : { ...req.body, model: target.model }
    const guard = new CallGuard(req.request.signal)
    this.calls.add(guard)
    const timeouts = target.provider.config.timeouts
    const firstByteMs = headersWaitMs(timeouts, req.stream)
    const startedAt = performance.now()
    let kept = false
    const timer = setTimeout(firstByteTimeout, firstByteMs, guard)
    try {
      const response = await target.provider.adapter.send({
        endpoint: req.endpoint,
        body,
        stream: req.stream,
        key: target.key,
        signal: guard.controller.signal,
      })
      // A web page is no answer of the API's, 2xx or 4xx, nor is a redirect (never followed with the
      // key): the upstream's failure, tried on the next target.
      if (isMisdirectedPage(response.status, response.headers.get('content-type'))) {
        await response.body?.cancel().catch(() => {})
        return { status: 502, error: htmlAnswer(target, response.status), retryAfter: null }
      }
      if (isRedirect(response.status)) {
        await response.body?.cancel().catch(() => {})
        return { status: 502, error: redirectAnswer(target, response.status, null), operatorMessage: redirectAnswer(target, response.status, response.headers.get('location')).message, retryAfter: null }
      }
      if (response.ok) {
        if (response.body === null || response.headers.get('content-length') === '0') {
          await response.body?.cancel().catch(() => {})
          return { status: 502, error: emptyAnswer(target, response.status), retryAfter: null }
        }
        kept = true
        return new Answer(response, guard, startedAt)
      }
      const text = await response.text().catch(() => '')
      if (isRefusal(response)) return { status: response.status, error: refusalError(text), retryAfter: null, refused: true }
      const status = accountOutOfMoney(response.status, text) ? 403 : response.status
      return {
        status,
        error: upstreamError(status, text, target, response.headers, response.status),
        retryAfter: retryAfterSeconds(response.headers, status),
        ...(status === response.status ? {} : { upstreamStatus: response.status }),
      }
    } catch (error) {
      // Aborted (too slow, the client left, the shutdown) rather than failed to reach the upstream:
      // the upstream may have the request and answer it unseen.
      if (guard.controller.signal.aborted) req.abandonedCall = true
      if (guard.timedOut) {
        return {
          status: 0,
          error: new GatewayError('upstream_timeout', `Upstream provider "${target.provider.id}" did not answer within ${firstByteMs} ms. ${RETRY_UPSTREAM}`),
          retryAfter: null,
        }
      }
      return {
        status: 0,
        error: new GatewayError('upstream_error', `Upstream provider "${target.provider.id}" could not be reached: ${sentence(scrubAll(errorMessage(error), secretsOf(target)))} ${RETRY_UPSTREAM}`),
        retryAfter: null,
      }
    } finally {
      clearTimeout(timer)
      this.calls.remove(guard)
      if (!kept) guard.detach()
    }
  }

  /** Build the client response around the upstream one; never buffer it (bytes go on as they arrive). */
  private respond(req: GatewayRequest, answer: Answer, plan: RoutePlan): Response {
    const upstream = answer.response
    const headers: Record<string, string> = {
      'content-type': upstream.headers.get('content-type') ?? (req.stream ? 'text/event-stream' : 'application/json'),
      'x-request-id': req.id,
    }
    if (req.stream) headers['cache-control'] = 'no-cache'
    for (const k in req.responseHeaders) headers[k] = req.responseHeaders[k]!
    // Content-Encoding and Content-Length are not copied: Bun's fetch already decoded the body.
    // There is one: attempt() took a 2xx without a body for the upstream's failure.
    const source = upstream.body!
    const timeouts = req.target?.provider.config.timeouts
    // Handed to the client natively, untouched (reading it in JavaScript costs about a quarter of
    // the throughput of a JSON answer and a tenth of a stream's, plus latency on every chunk): a
    // body no plugin reads, with nothing to release at its end and no body timeout the operator set
    // on the provider. Only first_byte_ms applies to it; the default idle and total timeouts are
    // for bodies the gateway reads anyway.
    if (!this.tap && !plan.release && timeouts?.idle_ms === undefined && timeouts?.total_ms === undefined) {
      return new Response(source, { status: upstream.status, headers })
    }
    const watch = this.watchdog.watch(answer.controller, timeouts?.idle_ms ?? DEFAULT_IDLE_MS, answer.startedAt + (timeouts?.total_ms ?? DEFAULT_TOTAL_MS))
    if (!req.stream) return this.mirrorJson(req, answer, plan, watch, headers)
    if (
      this.tap &&
      this.chunkHooks.length === 0 &&
      req.locals.__hideUsageChunk !== true &&
      timeouts?.idle_ms === undefined &&
      timeouts?.total_ms === undefined &&
      shortAnswer(req.body, req.endpoint)
    ) {
      return this.mirrorStream(req, answer, plan, watch, headers)
    }
    const body = this.tap ? this.tapStream(req, source, plan, upstream.status, watch, answer.startedAt) : this.guard(req, source, plan, watch, answer.startedAt)
    return new Response(body, { status: upstream.status, headers })
  }

  /**
   * A stream no hook rewrites goes to the client natively, chunk by chunk as it arrives, while a
   * clone is read here for the usage, the time to the first byte and the completion text: the
   * client's bytes never pass through a JavaScript stream (measured: see benchmarks/README.md).
   * Used only when the operator set no idle or total timeout on the provider: the defaults still
   * stop a stalled upstream (the watchdog aborts the call, the client's stream ends short and the
   * request is logged with upstream_timeout), but the error event a configured timeout promises the
   * client is written by tapStream, which owns the client's stream. Used only for a short answer
   * too (MIRROR_MAX_TOKENS): the copy is read whether or not the client reads.
   */
  private mirrorStream(req: GatewayRequest, answer: Answer, plan: RoutePlan, watch: BodyWatch, headers: Record<string, string>): Response {
    const upstream = answer.response
    const status = upstream.status
    const prompt = promptUsageOf(upstream.body)
    const reader = upstream.clone().body!.getReader()
    // The copy's chunks are only held until the end, where one decode and one search from the end
    // find the usage chunk (the last event but [DONE]); decoding and splitting every chunk as it
    // came cost a stream of 16 chunks several µs. Past MAX_HELD_BYTES they are decoded and split as
    // they come instead, so memory stays bounded; a stream without usage is split at the end too,
    // for the text its estimate is counted from.
    let held: Uint8Array[] | null = []
    let heldBytes = 0
    let copied = 0
    const decoder = new TextDecoder()
    const splitter = new SseSplitter()
    const seen = new StreamUsage(() => this.pricingOf(req))
    let ttft: number | null = null
    const inspect = (event: string): void => {
      const data = eventData(event)
      if (data === '[DONE]') seen.done = true
      if (data === null || data === '[DONE]' || !seen.sees(data)) return
      try {
        seen.take(JSON.parse(data) as Record<string, unknown>)
      } catch {
        // Not JSON: nothing to read.
      }
    }
    const split = (text: string): void => {
      for (const e of splitter.push(text)) inspect(e)
    }
    /**
     * What was held, read: the usage from the end when there is one, else every event. A stream
     * whose read failed (`whole` false) is read event by event: how far it got tells whether it
     * had ended before.
     */
    const readHeld = (whole: boolean): void => {
      if (held === null) {
        split(decoder.decode())
      } else {
        const text = decoder.decode(held.length === 1 ? held[0] : Buffer.concat(held))
        held = null
        if (!whole) split(text)
        else {
          if (ENDS_DONE.test(text.slice(-64))) seen.done = true
          if (!seen.takeLast(text)) split(text)
        }
      }
      const rest = splitter.flush()
      if (rest !== null) inspect(rest)
    }
    const finish = (aborted: boolean, errorCode: ErrorCode | null) => {
      answer.detach()
      this.watchdog.end(watch)
      this.release(plan, req)
      this.settle(req, seen.usage, seen.completion, aborted, ttft, status, errorCode ?? (aborted ? null : endCode(seen)), prompt)
    }
    const read = (): void => {
      reader.read().then(
        ({ done, value }) => {
          if (done) {
            readHeld(true)
            return finish(false, null)
          }
          watch.touch()
          if (ttft === null) ttft = performance.now() - req.startedAt
          copied += value.byteLength
          if (copied > MIRROR_MAX_BYTES && !answer.controller.signal.aborted) {
            this.logger.warn('stream cut: far longer than its max_tokens allows', { request_id: req.id, provider: req.target?.provider.id, bytes: copied })
            answer.controller.abort()
          }
          if (held === null) split(decoder.decode(value, { stream: true }))
          else {
            held.push(value)
            heldBytes += value.byteLength
            if (heldBytes > MAX_HELD_BYTES) {
              const all = Buffer.concat(held)
              held = null
              split(decoder.decode(all, { stream: true }))
            }
          }
          read()
        },
        () => {
          readHeld(false)
          // The client's SDK stopped at [DONE] (or at an error event) and left before the upstream's
          // end of stream came: the answer had ended by itself, no client cut it short.
          if (watch.timedOut === null && seen.ended()) return finish(false, null)
          if (watch.timedOut !== null) this.timedOut(req, watch)
          const end = this.cutShort(req, watch)
          // Past MIRROR_MAX_BYTES the gateway cut it itself: not a failure of the upstream's.
          if (copied <= MIRROR_MAX_BYTES) this.failedAfterHeaders(req, plan, watch, end.errorCode, answer.startedAt)
          finish(end.aborted, end.errorCode)
        },
      )
    }
    read()
    return new Response(upstream.body, { status, headers })
  }

  /**
   * A non-streamed answer goes to the client natively, as its bytes arrive, while a clone of it
   * is read to its end: for the usage the hooks need, to release the plan and to stop watching.
   * (Bun mirrors a cloned fetch body in native code: about a tenth of the throughput, where
   * passing the body through a JavaScript stream costs about a quarter.) Every chunk of the copy
   * counts as activity, so `idle_ms` bounds the silence mid-answer as on a stream: a server that
   * sends its headers at once and keeps the connection alive with blank lines until its JSON is
   * ready (DeepSeek under load) is not cut. A client that goes away aborts the upstream call.
   */
  private mirrorJson(req: GatewayRequest, answer: Answer, plan: RoutePlan, watch: BodyWatch, headers: Record<string, string>): Response {
    const upstream = answer.response
    const status = upstream.status
    const reader = upstream.clone().body!.getReader()
    // Most answers come in one chunk, read as it is; several are joined once, at the end.
    let first: Uint8Array | null = null
    let more: Uint8Array[] | null = null
    const failed = (): void => {
      const cut = this.cutShort(req, watch)
      this.failedAfterHeaders(req, plan, watch, cut.errorCode, answer.startedAt)
      answer.detach()
      this.watchdog.end(watch)
      this.release(plan, req)
      if (watch.timedOut !== null) this.timedOut(req, watch)
      if (this.tap) this.settle(req, null, NO_TEXT, cut.aborted, null, status, cut.errorCode)
    }
    const read = (chunk: { done: boolean; value?: Uint8Array }): void => {
      const value = chunk.value
      if (value !== undefined) {
        watch.touch()
        if (first === null) first = value
        else (more ??= [first]).push(value)
        reader.read().then(read, failed)
        return
      }
      this.jsonEnded(req, answer, plan, watch, status, more === null ? (first ?? EMPTY) : Buffer.concat(more))
    }
    reader.read().then(read, failed)
    return new Response(upstream.body, { status, headers })
  }

  /**
   * The whole copy of a non-streamed answer was read: the plan is released, the watch ended, and
   * the usage and completion hooks hear of it. A body that is no completion (an error object, or
   * nothing, at HTTP 2xx) is looked for only when it states no usage, and is the upstream's failure:
   * logged as upstream_error and counted against its key (the client has the body already).
   */
  private jsonEnded(req: GatewayRequest, answer: Answer, plan: RoutePlan, watch: BodyWatch, status: number, bytes: Uint8Array): void {
    // Someone reads the answer: the hooks, or the plan that counts a failure against its key.
    const reads = this.tap || plan.report !== undefined
    const raw = reads ? findUsage(bytes) : undefined
    /** The answer parsed, once: undefined until it is (only without usage), null when it is no JSON object. */
    let body: Record<string, unknown> | null | undefined = undefined
    let failed = false
    if (reads && raw === undefined) {
      body = parseAnswer(bytes)
      const said = notAnAnswer(body, bytes)
      if (said !== null) {
        failed = true
        const target = req.target
        const message = target && `Upstream provider "${target.provider.id}" answered HTTP ${status} with ${scrubAll(said, secretsOf(target))}, not a completion.`
        this.failedAfterHeaders(req, plan, watch, 'upstream_error', answer.startedAt, message)
      }
    }
    answer.detach()
    this.watchdog.end(watch)
    this.release(plan, req)
    if (!this.tap) return
    // Nothing was generated, nothing is billed: the hooks hear of a failure without usage, as of one before the headers.
    if (failed) return this.defer(req, { status, errorCode: 'upstream_error', latencyMs: performance.now() - req.startedAt, ttftMs: null, aborted: false })
    const usage = raw === undefined ? null : parseUsage(raw, this.answerPricing(req, bytes))
    // The text is read only when there is no usage to take.
    const completion =
      usage !== null
        ? NO_TEXT
        : () => {
            const parsed = body === undefined ? parseAnswer(bytes) : body
            return parsed === null ? [] : messageText(parsed)
          }
    this.settle(req, usage, completion, false, null, status)
  }

  /**
   * A read of an upstream stream failed. When the watchdog cut it off, the stream ends with an
   * error event the client's SDK raises (the status line has long gone out). So does an upstream
   * that broke off mid-answer (its connection lost) while the client's stream stands between two
   * events; in the middle of one, or once the client has gone, the client's body errors. Returns
   * whether the upstream timed out.
   */
  private broke(req: GatewayRequest, controller: ReadableStreamDefaultController<Uint8Array>, watch: BodyWatch, error: unknown, atEventEnd: boolean): boolean {
    if (watch.timedOut === null) {
      if (atEventEnd && !req.request.signal.aborted) {
        try {
          controller.enqueue(encoder.encode(streamErrorFrame(brokeOffMessage(req), 'api_error', 'upstream_error')))
          controller.close()
          return false
        } catch {
          // The client's stream is closed already: nothing more reaches it.
        }
      }
      controller.error(error)
      return false
    }
    this.timedOut(req, watch)
    try {
      controller.enqueue(encoder.encode(streamErrorFrame(watch.describe(req.target?.provider.id ?? 'unknown'), 'api_error', watch.code)))
      controller.close()
    } catch {
      // The client's stream is closed already.
    }
    return true
  }

  /** The watchdog cut a body off: a timeout is the provider's and logged; a shutdown is the operator's. */
  private timedOut(req: GatewayRequest, watch: BodyWatch): void {
    if (watch.timedOut === 'shutdown') return
    this.logger.warn('upstream body timed out', { request_id: req.id, provider: req.target?.provider.id, timeout: watch.timedOut })
  }

  /** Pass a stream through untouched, under the watchdog, releasing the plan once when it ends, fails or is cancelled. */
  private guard(req: GatewayRequest, source: ReadableStream<Uint8Array>, plan: RoutePlan, watch: BodyWatch, startedAt: number): ReadableStream<Uint8Array> {
    const reader = source.getReader()
    const watchdog = this.watchdog
    let ended = false
    // The client's stream stands between two events (nothing sent yet, or the last chunk ended one).
    let atEventEnd = true
    const end = () => {
      if (ended) return
      ended = true
      watchdog.end(watch)
      this.release(plan, req)
    }
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const { done, value } = await reader.read()
          if (done) {
            controller.close()
            end()
            return
          }
          watch.touch()
          atEventEnd = endsEvent(value)
          controller.enqueue(value)
        } catch (error) {
          this.failedAfterHeaders(req, plan, watch, this.cutShort(req, watch).errorCode, startedAt)
          end()
          this.broke(req, controller, watch, error, atEventEnd)
        }
      },
      cancel(reason) {
        end()
        return reader.cancel(reason)
      },
    })
  }

  /** Pass an SSE stream through, showing each event to the chunk hooks and picking up usage. */
  private tapStream(req: GatewayRequest, source: ReadableStream<Uint8Array>, plan: RoutePlan, status: number, watch: BodyWatch, startedAt: number): ReadableStream<Uint8Array> {
    const prompt = promptUsageOf(source)
    const reader = source.getReader()
    const decoder = new TextDecoder()
    const splitter = new SseSplitter()
    const chunkHooks = this.chunkHooks
    const hideUsageChunk = req.locals.__hideUsageChunk === true
    const rewrite = chunkHooks.length > 0 || hideUsageChunk
    const seen = new StreamUsage(() => this.pricingOf(req))
    let ttft: number | null = null
    let finished = false
    /** The event inspect() last kept, written anew when a chunk hook replaced its data; null when it goes on as it came. */
    let replaced: string | null = null
    /**
     * The chunk hooks (by index) that failed in this stream. Each is logged once: one that fails on a
     * chunk tends to fail on every chunk after, a line each. It is still called for them (a plugin that
     * redacts would let the rest through otherwise).
     */
    let failed: boolean[] | null = null
    const chunkFailed = (i: number, error: unknown): void => {
      if ((failed ??= [])[i]) return
      failed[i] = true
      this.hookFailed('onStreamChunk', this.chunkNames[i]!, req, error)
    }

    const inspect = (event: string): boolean => {
      replaced = null
      const data = eventData(event)
      if (data === '[DONE]') seen.done = true
      if (data === null || data === '[DONE]') return true
      // Parse only when someone needs the chunk or it carries usage.
      const hasUsage = seen.sees(data)
      if (!hasUsage && chunkHooks.length === 0) {
        // The upstream's own error event (OpenAI's code null, vLLM's status as its code): the client reads the gateway's envelope.
        if (rewrite && ERROR_EVENT.test(data)) replaced = ownErrorEvent(errorOfEvent(data), req.target)
        return true
      }
      let parsed: Record<string, unknown>
      try {
        parsed = JSON.parse(data) as Record<string, unknown>
      } catch {
        return true
      }
      let keep = true
      if (hasUsage) {
        seen.take(parsed)
        // Some servers' usage chunk has no `choices` key, or null: still no chunk a client that did not ask for it can read.
        if (hideUsageChunk && noChoices(parsed.choices)) keep = false
      }
      let chunk: Readonly<Record<string, unknown>> = parsed
      let by = -1
      for (let i = 0; i < chunkHooks.length; i++) {
        try {
          const result = chunkHooks[i]!(req, { data: chunk })
          if (result === undefined || result === true || result === null) continue
          if (result === false) keep = false
          else if (isChunkData(result)) {
            chunk = result
            by = i
          } else chunkFailed(i, strayChunk(result))
        } catch (error) {
          // The chunk goes on as it came: one plugin's failure does not cut the client's stream.
          chunkFailed(i, error)
        }
      }
      if (keep && by >= 0) {
        try {
          replaced = `data: ${JSON.stringify(chunk)}`
        } catch (error) {
          // Data that cannot be written (a cycle, a BigInt): the chunk goes on as the upstream sent it.
          chunkFailed(by, error)
        }
      } else if (keep && rewrite && ERROR_EVENT.test(data)) replaced = ownErrorEvent(parsed.error, req.target)
      return keep
    }

    const finish = (aborted: boolean, errorCode: ErrorCode | null = null) => {
      if (finished) return
      finished = true
      this.watchdog.end(watch)
      this.release(plan, req)
      this.settle(req, seen.usage, seen.completion, aborted, ttft, status, errorCode ?? (aborted ? null : endCode(seen)), prompt)
    }

    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          // Reads until there is something to send: a pull that ends having enqueued nothing is not
          // called again, and the client's stream would stall for good (a read that held only the
          // hidden usage chunk, only events a hook dropped, or only part of an event).
          for (;;) {
            const { done, value } = await reader.read()
            if (done) {
              const rest = splitter.flush()
              if (rest !== null && inspect(rest) && rewrite) controller.enqueue(encoder.encode((replaced ?? rest) + '\n\n'))
              // The client's SDK would end as on a finished answer: an error event tells it otherwise.
              if (seen.endedOnError() === null && seen.endedEarly()) controller.enqueue(encoder.encode(streamErrorFrame(endedEarlyMessage(req), 'api_error', 'upstream_error')))
              controller.close()
              finish(false)
              return
            }
            watch.touch()
            if (ttft === null) ttft = performance.now() - req.startedAt
            const hadPending = splitter.pending
            const events = splitter.push(decoder.decode(value, { stream: true }))
            if (!rewrite) {
              for (const e of events) inspect(e)
              controller.enqueue(value)
              return
            }
            let out = ''
            let all = true
            for (const e of events) {
              if (!inspect(e)) all = false
              else if (replaced === null) out += e + '\n\n'
              else {
                out += replaced + '\n\n'
                all = false
              }
            }
            // A chunk of whole events that all stay goes on as it came (most chunks: only the usage
            // chunk is hidden); re-encoding is for chunks that lose an event or split one.
            if (all && !hadPending && !splitter.pending) {
              controller.enqueue(value)
              return
            }
            if (out) {
              controller.enqueue(encoder.encode(out))
              return
            }
          }
        } catch (error) {
          // The answer had ended by itself ([DONE], an error event) before the read failed: the
          // client left at its end, or the upstream's connection dropped after it. Ended, not cut.
          if (watch.timedOut === null && seen.ended()) {
            try {
              controller.close()
            } catch {
              // The client's stream is closed already.
            }
            finish(false)
            return
          }
          // Rewritten, the client's stream holds whole events only; else as much as was handed on.
          this.broke(req, controller, watch, error, rewrite || !splitter.pending)
          const end = this.cutShort(req, watch)
          this.failedAfterHeaders(req, plan, watch, end.errorCode, startedAt)
          finish(end.aborted, end.errorCode)
        }
      },
      cancel(reason) {
        // A client's SDK cancels the body at [DONE] or at an error event, often before the upstream's
        // end of stream: an answer that had ended by itself is settled as ended, not as cut short.
        finish(!seen.ended())
        return reader.cancel(reason)
      },
    })
  }

  /** Prices of the model group that served the request: config first, then the tokenizer's table. */
  pricingOf(req: GatewayRequest): Pricing | undefined {
    const target = req.target
    // After a fallback another group served the request: its prices apply, not the requested one's.
    const group = target === undefined || target.group === req.group?.name ? req.group : (this.models.get(target.group) ?? req.group)
    return this.services.tokenizer.pricing(group?.name ?? req.model ?? '', target?.model, group?.pricing)
  }

  /** Prices of a JSON answer: those of the service tier it reports, looked for only when the prices have tiers. */
  private answerPricing(req: GatewayRequest, bytes: Uint8Array): Pricing | undefined {
    const pricing = this.pricingOf(req)
    return pricing?.service_tiers === undefined ? pricing : tierPricing(pricing, findServiceTier(bytes))
  }

  /** Prices of a usage the gateway counted (the answer reported none): those of the service tier the request asked for. */
  private askedPricing(req: GatewayRequest): Pricing | undefined {
    return tierPricing(this.pricingOf(req), req.body.service_tier)
  }

  /**
   * Usage and completion hooks, after the response. Without provider usage the tokenizer
   * counts the prompt (unless the adapter knows its usage: `prompt`, see promptUsageOf) and the
   * streamed text first; that waits on nobody but the hooks.
   */
  private settle(
    req: GatewayRequest,
    usage: Usage | null,
    completion: () => ChoiceTexts,
    aborted: boolean,
    ttftMs: number | null,
    status: number,
    errorCode: ErrorCode | null = null,
    prompt?: () => unknown,
  ): void {
    // Taken now: counting the usage below may wait on the tokenizer's workers, which is no part of the request.
    const latencyMs = performance.now() - req.startedAt
    // The usual case, usage reported: no closure for the counting path below.
    if (usage) return this.finish(req, usage, { status, errorCode, latencyMs, ttftMs, aborted })
    const finish = (u: Usage) => {
      this.counting--
      this.finish(req, u, { status, errorCode, latencyMs, ttftMs, aborted })
    }
    const texts = generatedOnly(req, completion())
    // The prompt's usage the provider stated before the stream was cut (Anthropic's message_start).
    const stated = prompt?.()
    const known = stated === undefined ? null : parseUsage(stated, undefined)
    const writes = cacheWritesOf(stated)
    const hourWrites = writes > 0 ? hourCacheWritesOf(stated) : 0
    this.counting++
    this.countUsage(req, texts, known, writes, hourWrites).then(finish, (error: unknown) => {
      this.logger.warn('could not count usage; using an estimate', { request_id: req.id, error: String(error) })
      finish(estimateUsage(req, texts, this.askedPricing(req), known, writes, hourWrites))
    })
  }

  private async countUsage(req: GatewayRequest, texts: ChoiceTexts, prompt: Usage | null, cacheWrites: number, hourWrites: number): Promise<Usage> {
    const tokenizer = this.services.tokenizer
    // The group that served (another after a fallback) and its upstream model: counted as /v1/tokens/count counts the group.
    const model = req.target?.group ?? req.model ?? ''
    const upstream = req.target?.model
    const promptTokens = prompt?.promptTokens ?? (await tokenizer.countPrompt(req.endpoint, req.body, model, 'settle', upstream))
    const cachedTokens = prompt?.cachedTokens ?? 0
    // Each choice is its own text: counted together, the tokens at their seams would merge.
    let completionTokens = 0
    for (const text of texts) if (text) completionTokens += await tokenizer.countText(text, model, upstream)
    return {
      promptTokens,
      completionTokens,
      cachedTokens,
      totalTokens: promptTokens + completionTokens,
      costUsd: priceOf(promptTokens, completionTokens, cachedTokens, this.askedPricing(req), cacheWrites, undefined, hourWrites),
      source: 'estimated',
    }
  }

  /** The usage is known: after this turn, the usage hooks hear it, then the completion hooks hear the end. */
  private finish(req: GatewayRequest, usage: Usage, outcome: Outcome): void {
    req.usage = usage
    this.defer(req, outcome)
  }

  /** Runs the request's usage and completion hooks at the end of this turn (see endingReqs). */
  private defer(req: GatewayRequest, outcome: Outcome): void {
    this.endingReqs.push(req)
    this.endingOutcomes.push(outcome)
    if (this.endingReqs.length === 1) setImmediate(this.runEnding)
  }

  /** The usage and completion hooks of every request deferred so far; also run at shutdown, before the plugins close. */
  readonly runEnding = (): void => {
    const reqs = this.endingReqs
    if (reqs.length === 0) return
    const outcomes = this.endingOutcomes
    this.endingReqs = []
    this.endingOutcomes = []
    for (let i = 0; i < reqs.length; i++) this.complete(reqs[i]!, outcomes[i]!)
  }

  /** A hook threw, or its promise failed: logged with the plugin's name; the request and the others go on. */
  private hookFailed(hook: StageName | 'onUsage' | 'onComplete' | 'onStreamChunk', plugin: string, req: GatewayRequest, error: unknown): void {
    this.logger.error(`${hook} hook failed`, { plugin, request_id: req.id, error: String(error) })
  }

  /** The plan's end (a slot it held, a count): a plugin's failure there is logged, not thrown at the body's reader. */
  private release(plan: RoutePlan, req: GatewayRequest): void {
    if (!plan.release) return
    try {
      plan.release()
    } catch (error) {
      this.logger.error('route plan release failed', { request_id: req.id, error: String(error) })
    }
  }

  /**
   * A body the gateway reads failed after its headers by the upstream's doing: it sent nothing for
   * the provider's idle_ms or did not finish by total_ms (`upstream_timeout`), or its connection
   * broke, or its 2xx body was an error object and no completion (`upstream_error`, with what it
   * said as `said`). The plan hears of it as the failure of the attempt it was told had
   * succeeded, before its release (balance counts it against the key and model); nothing is retried,
   * the client has had part of the answer. A client that went away or a shutdown (code null or
   * not_ready) is no upstream's failure, and the success path does none of this.
   */
  private failedAfterHeaders(req: GatewayRequest, plan: RoutePlan, watch: BodyWatch, code: ErrorCode | null, startedAt: number, said?: string): void {
    const target = req.target
    if (!plan.report || target === undefined || (code !== 'upstream_timeout' && code !== 'upstream_error')) return
    const message =
      said ?? (code === 'upstream_timeout' ? watch.describe(target.provider.id) : `Upstream provider "${target.provider.id}" broke off its answer after the headers (its connection failed).`)
    const latencyMs = performance.now() - startedAt
    try {
      plan.report(target, latencyMs, undefined, { target, status: 0, error: new GatewayError(code, message), retryAfter: null, latencyMs })
    } catch (error) {
      this.logger.error('route plan report failed', { request_id: req.id, error: String(error) })
    }
  }

  private complete(req: GatewayRequest, outcome: Outcome): void {
    if (req.usage !== undefined) this.runAfter('onUsage', this.usageHooks, this.usageNames, req, req.usage)
    this.runAfter('onComplete', this.completeHooks, this.completeNames, req, outcome)
  }

  /**
   * Each hook of a stage that runs after the response, in order. A hook may be async: a failure,
   * thrown or from its promise (which would otherwise end the process), is logged and skipped.
   */
  private runAfter<A>(stage: 'onUsage' | 'onComplete', hooks: readonly ((req: GatewayRequest, arg: A) => void)[], names: readonly string[], req: GatewayRequest, arg: A): void {
    for (let i = 0; i < hooks.length; i++) {
      try {
        const done: unknown = hooks[i]!(req, arg)
        if (done instanceof Promise) {
          // Counted while it runs: the shutdown waits for it (briefly) before the plugins close.
          this.afterPending++
          done.then(this.afterSettled, (error: unknown) => {
            this.afterPending--
            this.hookFailed(stage, names[i]!, req, error)
          })
        }
      } catch (error) {
        this.hookFailed(stage, names[i]!, req, error)
      }
    }
  }
}

/** Longest wait between a request's arrival and its record that {@link arrivalOf} reads from its id. */
const MAX_ARRIVAL_WAIT_MS = 3_600_000

/**
 * `performance.now()` when a request arrived: its id is made as its headers come (a UUIDv7, whose
 * first 48 bits are that ms), while its record is made once its body is read, which a client
 * sending slowly stretches (up to the body timeout). A wait of a ms or less, or an id of another
 * form, is taken as none: the record's own time is then the finer one.
 */
function arrivalOf(id: string): number {
  const now = performance.now()
  const waited = Date.now() - Number.parseInt(id.slice(4, 16), 16)
  return waited > 1 && waited <= MAX_ARRIVAL_WAIT_MS ? now - waited : now
}


/** An onStreamChunk hook's answer that is a chunk's new data: an object, not an array nor a promise. */
const isChunkData = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { then?: unknown }).then !== 'function'

/**
 * What an onStreamChunk hook answered that it may not, as the error logged: an `async` hook's
 * promise (not awaited: the chunk cannot wait), an array, a string, a number. Each was taken for
 * the chunk's new data, or passed over in silence: an async hook replaced every chunk with `{}`.
 */
function strayChunk(value: unknown): TypeError {
  // An async hook's failure is this one; it must not also surface as an unhandled rejection.
  if (value instanceof Promise) value.catch(() => {})
  const shown =
    value instanceof Promise ? 'a Promise'
    : Array.isArray(value) ? 'an Array'
    : typeof value === 'string' ? `the string ${JSON.stringify(value.slice(0, 80))}`
    : `${typeof value} ${String(value)}`
  return new TypeError(`it returned ${shown}; an onStreamChunk hook returns nothing or true to pass the chunk on, false to drop it, or the chunk's new data (an object), and is not awaited`)
}

/**
 * A describe hook's facts: its object, or none for nothing. Anything else is the plugin's mistake (a
 * TypeError, its HookFailure), where a string or an array was merged into GET /v1/key as fields "0", "1"….
 */
function factsOf(answer: unknown): Record<string, unknown> {
  if (answer === undefined || answer === null) return {}
  if (typeof answer === 'object' && !Array.isArray(answer)) return answer as Record<string, unknown>
  const shown = typeof answer === 'string' ? `the string ${JSON.stringify(answer.slice(0, 80))}` : Array.isArray(answer) ? 'an object that is no plain object (Array)' : `${typeof answer} ${String(answer)}`
  throw new TypeError(`it returned ${shown}; a describe hook returns an object of facts about the key, or nothing`)
}

/** A plan that came later, with the index of the route hook it came from (-1: the core's). */
interface OwnedPlan {
  plan: RoutePlan | GatewayError
  owner: number
}

/** Whether a route hook's answer is a plan (something with `next`). */
const isPlan = (value: unknown): value is RoutePlan => typeof value === 'object' && value !== null && typeof (value as Partial<RoutePlan>).next === 'function'

/** What a hook answered that it may not, as the error its HookFailure carries. */
function strayAnswer(value: unknown, wanted: string): TypeError {
  const shown =
    typeof value === 'string'
      ? `the string ${JSON.stringify(value.length > 80 ? value.slice(0, 77) + '...' : value)}`
      : typeof value === 'object' && value !== null
        ? `an object that is no GatewayError (${value.constructor?.name ?? 'null prototype'})`
        : `${typeof value} ${String(value)}`
  return new TypeError(`it returned ${shown}; a hook returns ${wanted}`)
}

/**
 * Without a routing plugin: the group's first target whose provider serves the endpoint (a group may
 * mix Claude with a provider that also embeds), with its provider's first key, once. When none
 * serves it, the first target, whose adapter refuses the request saying why.
 */
function firstTargetPlan(group: ModelGroup, endpoint: Endpoint): RoutePlan {
  let given = false
  return {
    next() {
      if (given) return undefined
      given = true
      let target = group.targets[0]!
      for (const t of group.targets) {
        if (t.provider.adapter.endpoints.has(endpoint)) {
          target = t
          break
        }
      }
      return { provider: target.provider, model: target.model, key: target.provider.keys[0]!, group: group.name }
    },
  }
}

/** Ask the upstream for a usage chunk; hide it from a client that did not ask for one. */
function askForStreamUsage(req: GatewayRequest): void {
  const options = req.body.stream_options
  const wanted = typeof options === 'object' && options !== null && (options as Record<string, unknown>).include_usage === true
  if (wanted) return
  req.body = { ...req.body, stream_options: { ...(typeof options === 'object' && options !== null ? options : {}), include_usage: true } }
  req.locals.__hideUsageChunk = true
}

function estimateUsage(req: GatewayRequest, texts: ChoiceTexts, pricing: Pricing | undefined, prompt: Usage | null, cacheWrites: number, hourWrites: number): Usage {
  const promptTokens = prompt?.promptTokens ?? roughPromptTokens(req.body)
  const cachedTokens = prompt?.cachedTokens ?? 0
  let completionTokens = 0
  for (const text of texts) completionTokens += roughTokens(text.length)
  return {
    promptTokens,
    completionTokens,
    cachedTokens,
    totalTokens: promptTokens + completionTokens,
    costUsd: priceOf(promptTokens, completionTokens, cachedTokens, pricing, cacheWrites, undefined, hourWrites),
    source: 'estimated',
  }
}

/** The bytes of an answer whose copy held none. */
const EMPTY = new Uint8Array(0)

/** A non-streamed answer's JSON object; null when it is none. */
function parseAnswer(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
    return isRecord(parsed) ? parsed : null
  } catch {
    // A body that is not JSON has nothing to count.
    return null
  }
}

/**
 * What a 2xx body that is no completion says, or null for one that may be: an error object at
 * its top (`{"error": …}`, or a Python server's `{"detail": …}`) with no `choices` nor `data`, or
 * nothing but white space. Text that is not JSON is left alone: it may still be what the client wanted.
 */
function notAnAnswer(body: Record<string, unknown> | null, bytes: Uint8Array): string | null {
  if (body === null) {
    for (let i = 0; i < bytes.length; i++) if (bytes[i]! > 0x20) return null
    return 'an empty body'
  }
  if (body.choices !== undefined || body.data !== undefined) return null
  const error = body.error ?? body.detail
  if (error === undefined || error === null) return null
  const message = typeof error === 'string' ? error : isRecord(error) && typeof error.message === 'string' ? error.message : JSON.stringify(error)
  return `an error: ${message.length > 500 ? message.slice(0, 500) + '...' : message}`
}

/** The generated text of each choice of a non-streamed OpenAI-format answer. */
function messageText(body: Record<string, unknown>): ChoiceTexts {
  const choices = Array.isArray(body.choices) ? (body.choices as Array<{ index?: unknown; message?: unknown; text?: unknown } | null>) : []
  const texts: string[] = []
  for (let i = 0; i < choices.length; i++) {
    const c = choices[i]
    let text = ''
    if (isRecord(c?.message)) text += generatedText(c.message)
    if (typeof c?.text === 'string') text += c.text
    addChoiceText(texts, c?.index, i, text)
  }
  return texts
}

/** Most choices an answer's text is kept apart for: an index past it (a server's nonsense) joins the last. */
const MAX_CHOICES = 128

/** Text of the choice `index` (its place `fallback` when the server gave none), added to what it has. */
function addChoiceText(texts: string[], index: unknown, fallback: number, text: string): void {
  if (!text) return
  const at = Math.min(typeof index === 'number' && Number.isInteger(index) && index >= 0 ? index : fallback, MAX_CHOICES - 1)
  while (texts.length <= at) texts.push('')
  texts[at] += text
}

/**
 * What each choice generated: a legacy completion asked to `echo` its prompt starts each choice
 * with that prompt, which is counted as prompt tokens, not again as generated ones. With a list of
 * prompts, choice i answers prompt ⌊i / n⌋.
 */
function generatedOnly(req: GatewayRequest, texts: ChoiceTexts): ChoiceTexts {
  if (req.endpoint !== 'completions' || req.body.echo !== true) return texts
  const prompt = req.body.prompt
  const n = typeof req.body.n === 'number' && req.body.n >= 1 ? req.body.n : 1
  return texts.map((text, i) => {
    const echoed = typeof prompt === 'string' ? prompt : Array.isArray(prompt) ? prompt[Math.floor(i / n)] : undefined
    return typeof echoed === 'string' && echoed !== '' && text.startsWith(echoed) ? text.slice(echoed.length) : text
  })
}

/** A message or a stream delta of OpenAI's format, as far as the tokens it generated go. */
interface GeneratedPart {
  content?: unknown
  /** What the model said instead of an answer (OpenAI's structured outputs), content being null. */
  refusal?: unknown
  /** The reasoning a server shows: `reasoning_content` (DeepSeek, vLLM, the gateway's adapters) or `reasoning` (newer vLLM). */
  reasoning_content?: unknown
  reasoning?: unknown
  tool_calls?: Array<{ function?: { arguments?: unknown } }>
}

/**
 * Every text a message or delta generated: its content or refusal, its reasoning (output tokens too,
 * and billed as such) and its tool calls' arguments, for the estimate where the upstream gives no usage.
 */
function generatedText(message: Record<string, unknown>): string {
  const part = message as GeneratedPart
  let text = ''
  if (typeof part.content === 'string') text += part.content
  if (typeof part.refusal === 'string') text += part.refusal
  if (typeof part.reasoning_content === 'string') text += part.reasoning_content
  else if (typeof part.reasoning === 'string') text += part.reasoning
  if (Array.isArray(part.tool_calls)) {
    for (const call of part.tool_calls) if (typeof call?.function?.arguments === 'string') text += call.function.arguments
  }
  return text
}

/**
 * What a stream's events tell about its usage: the usage of the event that carries one and, until
 * one does, the data of the others (bounded), for an estimate counted from their text. Their data
 * is kept raw, read only if no usage comes; past MAX_KEPT_EVENT_CHARS each event's generated text
 * is read as it comes instead (bounded too), so a long stream is counted to its end.
 */
class StreamUsage {
  usage: Usage | null = null
  private readonly kept: string[] = []
  private keptChars = 0
  /** The generated text of each choice in the events past the kept ones. */
  private tail: string[] | null = null
  private tailChars = 0
  /** The data of the newest event: a stream that ends on an error event is told by its last one. */
  private last: string | null = null
  /** Whether the stream's `data: [DONE]` came. */
  done = false
  /** The usage came in the answer's last event: one of no choices (OpenAI's usage chunk), or with its finish_reason. */
  private finalUsage = false

  constructor(private readonly pricing: () => Pricing | undefined) {}

  /**
   * An event's data, seen in order; true when it carries usage (most chunks carry `"usage":null`), to
   * be parsed and handed to `take`. Until a usage is taken, the event is kept for the estimate, one
   * carrying usage too: a usage `take` finds to be none (all zeros, in every chunk of a server that
   * does not count) leaves the estimate to count that chunk's text.
   */
  sees(data: string): boolean {
    this.last = data
    const carries = carriesUsage(data)
    if (this.usage !== null) return carries
    if (this.keptChars < MAX_KEPT_EVENT_CHARS) {
      this.kept.push(data)
      this.keptChars += data.length
    } else if (this.tailChars < MAX_TAIL_TEXT_CHARS) {
      this.tailChars += addEventText((this.tail ??= []), data)
    }
    return carries
  }

  /** The parsed event that carries usage. */
  take(parsed: Record<string, unknown>): void {
    const usage = parseUsage(eventUsage(parsed), tierPricing(this.pricing(), parsed.service_tier))
    if (usage === null) return
    this.usage = usage
    this.finalUsage = noChoices(parsed.choices) || (this.last !== null && FINISHED.test(this.last))
  }

  /**
   * Whether the stream had ended by itself before a read stopped: its `[DONE]`, an error event, or
   * its usage after (or with) its finish_reason. A client's SDK stops reading there and cancels the
   * body, often before the upstream's end of stream arrives: the answer was whole all the same.
   */
  ended(): boolean {
    return this.done || this.finalUsage || this.endedOnError() !== null
  }

  /** The whole stream's text at once, when it was held to its end: the usage found from the end, if any (see lastUsage). */
  takeLast(text: string): boolean {
    let final = false
    this.usage = lastUsage(text, this.pricing(), (data, event) => {
      final = noChoices(event.choices) || FINISHED.test(data)
    })
    this.finalUsage = this.usage !== null && final
    return this.usage !== null
  }

  readonly completion = (): ChoiceTexts => {
    const texts = completionText(this.kept)
    const tail = this.tail
    if (tail === null) return texts
    const all = [...texts]
    for (let i = 0; i < tail.length; i++) all[i] = (all[i] ?? '') + tail[i]
    return all
  }

  /**
   * The code of the error event the stream ended on (an upstream that failed after its 200, or
   * an adapter's frame for it), or null: the request is then logged as the failure it was, not
   * as a success. A code that is not one of the gateway's counts as `upstream_error`.
   */
  endedOnError(): ErrorCode | null {
    const data = this.last
    if (data === null) return null
    const beside = !ERROR_EVENT.test(data)
    if (beside && !FINISHED_ON_ERROR.test(data)) return null
    try {
      const error = (JSON.parse(data) as { error?: { code?: unknown } | null }).error
      // OpenRouter's error sits beside the chunk's other fields, its choice finishing with "error".
      if (beside && (typeof error !== 'object' || error === null)) return null
      return eventErrorCode(error)
    } catch {
      return null
    }
  }

  /**
   * Whether the stream stopped before it finished: no `[DONE]`, no usage in a last event (one of no
   * choices, or with its finish_reason), and its last event gives no finish_reason (an upstream that
   * closed its answer cleanly mid-way, a proxy that cut it). A usage on a chunk mid-answer (a server
   * that sends the count so far on every chunk: vLLM's continuous_usage_stats) is no end.
   * Only a stream that ended by itself is asked (not one the client left, nor one that failed).
   */
  endedEarly(): boolean {
    if (this.done || this.finalUsage) return false
    const data = this.last
    return data === null || !FINISHED.test(data)
  }
}

/** A usage chunk's `choices`: none at all (missing, null or empty), as OpenAI's usage chunk has. */
function noChoices(choices: unknown): boolean {
  return choices === undefined || choices === null || (Array.isArray(choices) && choices.length === 0)
}

/** How a stream that ended by itself is logged: the error event it ended on, or upstream_error when it stopped before it finished. */
function endCode(seen: StreamUsage): ErrorCode | null {
  return seen.endedOnError() ?? (seen.endedEarly() ? 'upstream_error' : null)
}

/** A chunk of an event stream ends an event (a blank line after it). */
function endsEvent(chunk: Uint8Array): boolean {
  const n = chunk.length
  if (n < 2 || chunk[n - 1] !== 10) return n >= 2 && chunk[n - 1] === 13 && chunk[n - 2] === 13
  return chunk[n - 2] === 10 || (n >= 4 && chunk[n - 2] === 13 && chunk[n - 3] === 10 && chunk[n - 4] === 13)
}

const brokeOffMessage = (req: GatewayRequest): string =>
  `Upstream provider "${req.target?.provider.id ?? 'unknown'}" broke off the stream mid-answer (its connection failed); the text above is incomplete. Retry the request.`

const endedEarlyMessage = (req: GatewayRequest): string =>
  `Upstream provider "${req.target?.provider.id ?? 'unknown'}" ended the stream before the answer finished (no finish_reason, no [DONE]); the text above is incomplete. Retry the request.`

/** An event that ends a choice: a finish_reason given (not null). */
const FINISHED = /"finish_reason"\s*:\s*"/

/** The last event of a stream's whole text is `data: [DONE]`. */
const ENDS_DONE = /data:[ \t]*\[DONE\][ \t]*(?:\r?\n)*$/

/** An SSE event whose data is an error object (OpenAI's shape, which every adapter writes). */
const ERROR_EVENT = /^\s*\{\s*"error"\s*:/

/**
 * The gateway's code for an error event's error: its `code` where that is one of the gateway's (an
 * adapter's frame), else the code of the status it stands for, as a stream's first event is read
 * (vLLM's status as its code, OpenAI's type and code: `server_error` a 5xx, `upstream_error`).
 */
function eventErrorCode(error: unknown): ErrorCode {
  if (!isRecord(error)) return 'upstream_error'
  const code = error.code
  if (typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)) return code as ErrorCode
  return upstreamErrorCode(errorEventStatus(error))
}

/**
 * An upstream's error event (`data: {"error": …}` after its 200) as the gateway writes it to a client:
 * the envelope with the code the request is logged with (eventErrorCode) and that code's type, the
 * upstream's type or code and message (its key scrubbed) in the message, as the adapters write
 * Anthropic's and Gemini's. Null for one to leave as it came: already the envelope (an adapter's frame,
 * a code of the gateway's with its type), or no error object (the event not JSON). Read only for error events, which end a stream.
 */
function ownErrorEvent(error: unknown, target: RouteTarget | undefined): string | null {
  // A bare message (`{"error": "…"}`) is an error all the same.
  if (typeof error === 'string') error = { message: error }
  if (!isRecord(error)) return null
  const code = eventErrorCode(error)
  const param = error.param === null || typeof error.param === 'string' ? error.param : undefined
  if (error.code === code && error.type === ERROR_CODES[code].type && typeof error.message === 'string' && param !== undefined) return null
  const said = typeof error.type === 'string' && error.type ? error.type : typeof error.code === 'string' && error.code ? error.code : typeof error.code === 'number' ? `HTTP ${error.code}` : 'error'
  const secrets = target ? secretsOf(target) : []
  const message = typeof error.message === 'string' && error.message.trim() ? scrubAll(error.message, secrets) : 'no details given.'
  const body = errorBody(`Upstream provider "${target?.provider.id ?? 'unknown'}" failed mid-stream (${scrubAll(said, secrets)}): ${message}`, ERROR_CODES[code].type, code, param ? scrubAll(param, secrets) : null)
  return `data: ${JSON.stringify(body)}`
}

/** The `error` of an event's JSON text (undefined when it is no JSON object): for events not parsed otherwise. */
function errorOfEvent(data: string): unknown {
  try {
    return (JSON.parse(data) as { error?: unknown }).error
  } catch {
    return undefined
  }
}

/** A chunk whose choice finishes with "error": OpenRouter's failure mid-stream, its `error` beside the chunk's fields. */
const FINISHED_ON_ERROR = /"finish_reason"\s*:\s*"error"/

/**
 * The generated text of OpenAI-format stream events, by choice index: content, reasoning, legacy
 * text, tool-call arguments. With `n` above 1 the choices' deltas interleave; each is kept apart.
 */
export function completionText(events: readonly string[]): ChoiceTexts {
  const texts: string[] = []
  for (const data of events) addEventText(texts, data)
  return texts
}

/** The generated text of one stream event's data, added to its choice's in `texts`; how many characters that was. */
function addEventText(texts: string[], data: string): number {
  let parsed: { choices?: Array<{ index?: unknown; delta?: unknown; text?: unknown } | null> } | null
  try {
    parsed = JSON.parse(data) as typeof parsed
  } catch {
    return 0
  }
  // An event of another shape (a server's own extras) carries no text to count.
  if (!Array.isArray(parsed?.choices)) return 0
  let added = 0
  for (let i = 0; i < parsed.choices.length; i++) {
    const choice = parsed.choices[i]
    let text = ''
    if (typeof choice?.text === 'string') text += choice.text
    if (isRecord(choice?.delta)) text += generatedText(choice.delta)
    addChoiceText(texts, choice?.index, i, text)
    added += text.length
  }
  return added
}

export function modelNotFound(model: string | undefined): GatewayError {
  if (model === undefined) return new GatewayError('invalid_request', 'The request must name a model.', { param: 'model' })
  return new GatewayError('model_not_found', `The model "${echo(model, 256)}" is not served by this gateway. GET /v1/models lists the models your key may use.`, { param: 'model' })
}

/** The secrets a call to `target` carried, none of which may reach a client (an error path only: built when needed). */
const secretsOf = (target: RouteTarget): string[] => callSecrets(target.key.secret, target.provider.config.headers, target.provider.config.baseUrl)

/**
 * Whether an upstream's error says the key's account has no money left: a 402 (DeepSeek's, Mistral's,
 * OpenRouter's "payment required"), or OpenAI's 429 whose code is `insufficient_quota` ("You exceeded
 * your current quota, please check your plan and billing details"). That is no rate limit that passes
 * and no fault of the request: the key is refused as with a 401 or 403, so balancing stops sending to
 * it until an operator resets it, instead of cooling it and trying it again after every cooldown, and
 * the client, told nothing about a rate limit to wait for or a payment of its own, gets the next key's
 * answer. Read on error answers only.
 */
function accountOutOfMoney(status: number, text: string): boolean {
  if (status === 402) return true
  return status === 429 && text.includes('insufficient_quota') && upstreamDetail(text).code === 'insufficient_quota'
}

/**
 * Map an upstream's error answer into the envelope, keeping its status (and the field it blames) for
 * request errors. `answered` is the status the upstream sent, where the gateway acts on another.
 */
export function upstreamError(status: number, text: string, target: RouteTarget, headers: Headers, answered = status): GatewayError {
  const provider = target.provider.id
  const said = upstreamDetail(text)
  const secrets = secretsOf(target)
  const detail = scrubAll(said.message, secrets)
  // A translating adapter maps its provider's status (Anthropic's 529 to 503) and says which it was: the message tells that one.
  const stated = headers.get(UPSTREAM_STATUS_HEADER)
  const real = stated !== null && /^[1-5]\d\d$/.test(stated) ? stated : String(answered)
  if (status === 401 || status === 403) {
    return new GatewayError('upstream_error', `Upstream provider "${provider}" refused the gateway's key "${target.key.id}" (HTTP ${real}): ${detail} An operator must fix or replace that provider key.`)
  }
  if (status === 429) {
    // Always a Retry-After, in whole seconds (DESIGN.md): from the upstream's own wait (retry-after-ms,
    // Retry-After, or the reset of the limit it says is spent), else a second, as a local server's bare 429 leaves it.
    const wait = retryAfterSeconds(headers, 429)
    const retry = wait === null ? 1 : Math.max(1, Math.ceil(wait))
    return new GatewayError('rate_limit_exceeded', `Upstream provider "${provider}" is rate-limiting the gateway's key "${target.key.id}": ${sentence(detail)} Retry after ${retry} s.`, {
      headers: { 'retry-after': String(retry) },
    })
  }
  if (status >= 400 && status < 500) {
    const code = upstreamErrorCode(status)
    // An adapter's refusal (or the upstream's own 4xx) names the field at fault, and the upstream's
    // own code (context_length_exceeded) says more than ours: the client should see both.
    const upstreamCode = said.code !== null && UPSTREAM_CODE.test(said.code) ? said.code : undefined
    return new GatewayError(code, `Upstream provider "${provider}" rejected the request (HTTP ${real}): ${detail}`, { status, param: said.param === null ? null : scrubAll(said.param, secrets), upstreamCode })
  }
  return new GatewayError('upstream_error', `Upstream provider "${provider}" failed (HTTP ${real}): ${sentence(detail)} ${RETRY_UPSTREAM}`)
}

/** Text that ends as a sentence does, so that what follows it in a message reads as the next one. */
const sentence = (text: string): string => (/[.!?]\s*$/.test(text) ? text.trimEnd() : `${text.trimEnd()}.`)

/** An upstream's error `code` passed to the client: a plain identifier, not text that could carry anything. */
const UPSTREAM_CODE = /^[a-z0-9_]{1,64}$/

/**
 * A web page is no answer of the API's (see isMisdirectedPage): a `baseUrl` that points at a website
 * or a wrong path, or a proxy's or captive portal's page. Passed on, a 2xx page would reach the client
 * as a success, a 404 page as the client's model_not_found.
 */
function htmlAnswer(target: RouteTarget, status: number): GatewayError {
  return new GatewayError(
    'upstream_error',
    `Upstream provider "${target.provider.id}" answered HTTP ${status} with a web page (text/html), not the API's JSON: its baseUrl may point at a website, a wrong path or a proxy's login page. An operator must check the provider's configuration.`,
  )
}

/**
 * A redirect is not followed: the provider key would go somewhere the operator never named (and the
 * SDKs do not follow one with a body either). An `http://` baseUrl whose server moves to `https://`,
 * or a path it rewrites, is a configuration to fix. The client is told no address (a sign-in page's
 * may carry a session token in its query); the operator's message (`location` given) names it
 * without its user, query and fragment (see redirectTarget).
 */
function redirectAnswer(target: RouteTarget, status: number, location: string | null): GatewayError {
  const where = location === null ? '' : ` ${redirectTarget(location, target)}`
  return new GatewayError(
    'upstream_error',
    `Upstream provider "${target.provider.id}" answered with a redirect (HTTP ${status})${where}, which the gateway does not follow with a provider key. An operator must set the provider's baseUrl to where the API is.`,
  )
}

/**
 * Where a redirect points, for an operator: its scheme, host and path (what tells an `https://`
 * move or a rewritten path), the user, password, query and fragment left out as they may carry
 * credentials, with `?…` where a query was. A relative location is read against the provider's
 * baseUrl. The provider key is scrubbed from what is left, in case a path echoes it.
 */
function redirectTarget(location: string, target: RouteTarget): string {
  const url = URL.parse(location, target.provider.config.baseUrl ?? undefined)
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) return 'to an address that is not an http(s) URL'
  const masked = url.origin + url.pathname + (url.search !== '' ? '?…' : '')
  return `to ${scrubAll(masked, secretsOf(target)).slice(0, 300)}`
}

/**
 * A 2xx with no body (a 204, a `content-length: 0`) is no answer of a model call's: a proxy or a
 * server that lost the completion. Passed on, the client's SDK would fail on it as on a success.
 */
function emptyAnswer(target: RouteTarget, status: number): GatewayError {
  return new GatewayError('upstream_error', `Upstream provider "${target.provider.id}" answered HTTP ${status} with an empty body, not a completion. ${RETRY_UPSTREAM}`)
}

/** An adapter's refusal (see refusalResponse): the client's to fix, said as the adapter said it, blaming no provider. */
function refusalError(text: string): GatewayError {
  const said = upstreamDetail(text)
  return new GatewayError('invalid_request', said.message, { param: said.param })
}

/** The message of an upstream's error body, the request field it names (OpenAI's `param`) and its `code`, if any. */
function upstreamDetail(text: string): { message: string; param: string | null; code: string | null } {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown; param?: unknown; code?: unknown } | string; message?: unknown }
    if (typeof parsed.error === 'string') return { message: parsed.error, param: null, code: null }
    const param = typeof parsed.error?.param === 'string' ? parsed.error.param : null
    const code = typeof parsed.error?.code === 'string' ? parsed.error.code : null
    if (typeof parsed.error?.message === 'string') return { message: parsed.error.message, param, code }
    if (typeof parsed.message === 'string') return { message: parsed.message, param, code }
  } catch {
    // Not JSON: show the start of the text.
  }
  const trimmed = text.trim()
  return { message: trimmed ? trimmed.slice(0, 500) : 'no details given.', param: null, code: null }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * How long the upstream asks to be left alone, in seconds: `retry-after-ms` first (OpenAI and Azure
 * send it, more precise, and their SDKs read it before Retry-After), then `Retry-After` (seconds or
 * an HTTP date), then for a 429 the reset of the limits its rate-limit headers say are spent; null
 * when none says.
 */
function retryAfterSeconds(headers: Headers, status: number): number | null {
  const s = upstreamRetryAfterSeconds(headers, status)
  return s === null ? null : Math.min(s, MAX_RETRY_AFTER_S)
}

/**
 * The longest wait an upstream's hint is taken for (about 24.8 days, the longest timer), as balance
 * bounds its cooldowns: `Retry-After: 1e21` was passed on as "1e+21", no header value at all.
 */
const MAX_RETRY_AFTER_S = Math.floor(MAX_TIMER_MS / 1000)

function upstreamRetryAfterSeconds(headers: Headers, status: number): number | null {
  const ms = headers.get('retry-after-ms')
  if (ms !== null && ms.trim() !== '') {
    const n = Number(ms)
    if (Number.isFinite(n) && n >= 0) return n / 1000
  }
  const value = headers.get('retry-after')
  if (!value) return status === 429 ? spentLimitsResetS(headers, Date.now()) : null
  const wait = retryAfterMs(value, Date.now())
  return wait === null ? null : wait / 1000
}

/**
 * Whether a stream's answer is bounded small enough to mirror (see MIRROR_MAX_TOKENS): its token
 * limit times the completions it asks for within it.
 */
function shortAnswer(body: Record<string, unknown>, endpoint: Endpoint): boolean {
  const max = maxTokensOf(body)
  return max !== undefined && max * completionsAsked(body, endpoint) <= MIRROR_MAX_TOKENS
}
