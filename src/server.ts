import { Elysia, type ValidationError } from 'elysia'
import type { Server } from 'bun'
import { GatewayError } from './errors.ts'
import { ensureAdminKey } from './admin-key.ts'
import type { ResolvedConfig } from './config/load.ts'
import { createDatabase, maskDatabaseUrl, type DatabaseHandle } from './db/index.ts'
import { isUnstorableText } from './db/errors.ts'
import { migrateToLatest } from './db/migrate.ts'
import { createLocalBus, createRedisBus } from './lib/bus.ts'
import { tooLarge } from './lib/body.ts'
import { newRequestId } from './lib/id.ts'
import { maskKeysIn } from './lib/key-text.ts'
import { UnknownMasterKeyError } from './lib/secrets.ts'
import { invalidRequest } from './lib/validate.ts'
import { roughTokenizer } from './lib/usage.ts'
import { createLogger, type Logger } from './lib/logger.ts'
import { FailedAttempts } from './lib/failed-attempts.ts'
import { forwardedAddress } from './lib/forwarded.ts'
import { MetricsRegistry } from './metrics.ts'
import { createHttpMetrics, registerProcessMetrics } from './http-metrics.ts'
import { UpstreamHealth } from './upstream-health.ts'
import { ModelRegistry } from './models.ts'
import { Catalog, loadMasterKeys } from './catalog.ts'
import { consoleRoutes } from './console/routes.ts'
import { ConsoleSessions, sessionSecret } from './console/session.ts'
import { HookFailure, Pipeline, databaseFailure, type LoadedPlugin } from './pipeline.ts'
import { RouteAuthenticator, closePlugins, resolvePlugins, setupPlugins } from './plugin-loader.ts'
import type { RedisClient } from './redis.ts'
import { Cors } from './lib/cors.ts'
import { docsRoutes } from './routes/docs.ts'
import { auditRoutes } from './routes/audit.ts'
import { doctorRoutes } from './routes/doctor.ts'
import { opsRoutes } from './routes/ops.ts'
import { v1Routes } from './routes/v1.ts'
import type { Services } from './services.ts'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'
import pkg from '../package.json' with { type: 'json' }

export interface GatewayOptions {
  logger?: Logger
  /** Use these instead of opening the configured ones (tests share a database this way). */
  services?: Partial<Services>
  /** Clock for time-based rules. @default Date.now */
  now?: () => number
  /** How long the shutdown waits for each plugin's `close` before it goes on without it. @default 30000 */
  pluginCloseMs?: number
}

/** A booted gateway: the app, its parts, and how to serve and stop it. */
export interface Gateway {
  readonly app: Elysia
  readonly config: ResolvedConfig
  readonly services: Services
  readonly models: ModelRegistry
  readonly pipeline: Pipeline
  readonly plugins: readonly LoadedPlugin[]
  readonly logger: Logger
  /** Handle one request in process (tests, embedding). */
  handle(request: Request): Promise<Response>
  /** Listen on the configured host and port (or the given ones). */
  listen(options?: { port?: number; hostname?: string; reusePort?: boolean }): Server<unknown>
  /**
   * Stop accepting, let in-flight requests finish (for `shutdown_grace_ms` at most; answers in that
   * time close their connections), cut off the rest (a stream the gateway writes ends with a
   * `not_ready` error event), settle and log them, then close plugins and backends.
   */
  close(): Promise<void>
  /** During close(): end the grace period now (a second SIGTERM or SIGINT). */
  hurry(): void
}

/** After the grace period, how long cut-off streams get to write their error event before the sockets close. */
const CUT_FLUSH_MS = 250
/** After the sockets close, how long the requests cut off get to end and be settled before the plugins close. */
const DRAIN_MS = 2000
/**
 * The silence allowed a stream's connection once its answer has started (`limits.idle_timeout_s`
 * is for the rest): Bun's largest idle timeout, above the default idle_ms, so that the gateway's
 * own idle timeout ends a silent upstream first.
 */
const STREAM_IDLE_S = 255

/** The composition root: opens backends, runs migrations, sets up plugins, builds the app. */
export async function createGateway(config: ResolvedConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.logLevel)
  const ownDb = !options.services?.db
  const db: DatabaseHandle = options.services?.db ?? (await openDatabase(config.databaseUrl))
  let redis: RedisClient | null = options.services?.redis ?? null
  const ownRedis = !redis && config.redisUrl !== null
  // ioredis is loaded only when Redis is configured: an embedded gateway does not pay its memory.
  if (ownRedis && config.redisUrl) {
    let lastReport = 0
    redis = (await import('./redis.ts')).createRedis(config.redisUrl, (error) => {
      if (Date.now() - lastReport < 10_000) return
      lastReport = Date.now()
      logger.warn('redis unreachable; retrying', { error: error.message })
    })
  }
  const bus = options.services?.bus ?? (redis ? createRedisBus(redis) : createLocalBus())
  const now = options.now ?? options.services?.now ?? Date.now
  const masters = loadMasterKeys(config)
  let server: Server<unknown> | undefined
  // A request routed under a stand-in host (see routable) is a copy: Bun knows the socket of the one it made.
  const received = new WeakMap<Request, Request>()
  /** The client's socket address while its request is open; null in process (handle() with no server). */
  const clientAddress = (request: Request): string | null => server?.requestIP(received.get(request) ?? request)?.address ?? null
  const admin =
    options.services?.admin ??
    (await ensureAdminKey(db.db, config.adminKey, logger, undefined, {
      failures: new FailedAttempts({ perMinute: config.adminAttemptsPerMinute, now }),
      // Behind proxies, each client by the address the outermost one saw: else all of them would share the proxy's attempts.
      clientAddress:
        config.trustedProxies > 0
          ? (request) => forwardedAddress(request.headers.get('x-forwarded-for'), config.trustedProxies) ?? clientAddress(request)
          : clientAddress,
      ...(config.console.enabled && {
        sessions: (digest) => new ConsoleSessions({ secret: sessionSecret(consoleSeed(masters.current?.key, logger), digest), ttlMs: config.console.sessionTtlMs, now }),
      }),
    }))
  // One registry per gateway: two gateways in one process (tests) keep their counts apart.
  const metrics = options.services?.metrics ?? new MetricsRegistry()
  const services: Services = {
    db,
    redis,
    bus,
    admin,
    now,
    tokenizer: options.services?.tokenizer ?? roughTokenizer,
    metrics,
    upstreams: options.services?.upstreams ?? new UpstreamHealth(metrics, now),
  }

  const models = new ModelRegistry(config.providers, config.models)
  // Providers and models added through the admin API join those of the config before plugins start.
  const catalog = new Catalog(config, services, models, logger, masters)
  let plugins: LoadedPlugin[]
  let consoleApp: ConsoleApp | null = null
  const routeAuth = new RouteAuthenticator()
  try {
    await catalog.start()
    if (config.console.enabled && services.admin.sessions) consoleApp = await consoleRoutes({ config, services, logger })
    const instances = await resolvePlugins(config, BUILTIN_PLUGINS)
    plugins = await setupPlugins(instances, { config, services, models, logger, authenticate: routeAuth.authenticate })
  } catch (error) {
    // A boot that fails half-way closes what it opened, so an embedding program can retry.
    await bus.close().catch(() => {})
    if (ownRedis) redis?.disconnect()
    if (ownDb) await db.close().catch(() => {})
    throw error
  }
  /** Set by close(): every answer from then on closes its connection, so no client sends another request on it. */
  let draining = false
  let endGrace: (() => void) | undefined
  const pipeline = new Pipeline({
    plugins,
    models,
    logger,
    services,
    clientAddress,
    hookTimeoutMs: config.hookTimeoutMs,
  })
  routeAuth.bind(pipeline)

  /** Each plugin's close, the last started first; a failure, or a close that does not finish in time, is logged with the plugin's name. */
  const closeAll = (): Promise<void> => closePlugins(plugins, logger, options.pluginCloseMs)
  let built: ReturnType<typeof buildApp>
  try {
    built = buildApp({ config, services, models, pipeline, plugins, logger, catalog, consoleApp })
  } catch (error) {
    // A plugin's routes failed to mount: what started is closed, as for a plugin that failed to start.
    await closeAll()
    await bus.close().catch(() => {})
    if (ownRedis) redis?.disconnect()
    if (ownDb) await db.close().catch(() => {})
    throw error
  }
  const { app, allowed: methodsOf } = built
  registerProcessMetrics(metrics, plugins, logger)
  const http = createHttpMetrics(metrics, app.routes)
  const cors = config.cors ? new Cors(config.cors) : null
  /**
   * OPTIONS on a route that exists: a browser's preflight (with CORS on, for the client API) or
   * the route's methods in `Allow`. Null for a path no route has: the router's 404 then.
   */
  const answerOptions = (request: Request): Response | null => {
    const methods = methodsOf(new URL(request.url).pathname)
    if (methods.length === 0) return null
    const allow = allowList(methods)
    const preflight = cors !== null && Cors.applies(request.url) ? cors.preflight(request, allow) : null
    const answer = preflight ?? new Response(null, { status: 204, headers: { allow: allow.join(', ') } })
    // An answer like every other: a client (or a browser's network log) can quote its id.
    answer.headers.set('x-request-id', newRequestId())
    return answer
  }
  // What any route may read of a body: the client API's readers stop at max_body_bytes and the admin
  // API's at 1 MiB, below it; this bounds the routes that read a body whole (the console's sign-in, plugins').
  const bodyBound = config.maxBodyBytes * 2 + 1024 * 1024
  // Every answer, in process or over the socket, is counted here: one map read, an increment, an observation.
  const dispatch = (incoming: Request): Promise<Response> => {
    const started = performance.now()
    const bounded = boundBody(incoming, bodyBound, config.maxBodyBytes)
    if (bounded instanceof GatewayError) {
      const refused = bounded.toResponse(newRequestId())
      // Its URL as routed (a Host that is no host leaves a bare path), for the route's label and CORS.
      const url = routable(incoming).url
      http.record(url, refused.status, performance.now() - started)
      return Promise.resolve(cors !== null && Cors.applies(url) ? cors.decorate(incoming, refused) : refused)
    }
    const request = routable(bounded)
    if (request !== incoming) received.set(request, incoming)
    if (request.method === 'OPTIONS') {
      const answered = answerOptions(request)
      if (answered) {
        http.record(request.url, answered.status, performance.now() - started)
        return Promise.resolve(answered)
      }
    }
    const crossOrigin = cors !== null && Cors.applies(request.url)
    // A client connection silent both ways for limits.idle_timeout_s is closed by Bun (an idle
    // keep-alive one, say), but a model call may wait minutes for its upstream's headers without a
    // byte on the client's side (first_byte_ms and total_ms bound that wait): exempt until then.
    const waiting = request.method === 'POST' && isModelCall(request.url) ? server : undefined
    waiting?.timeout(incoming, 0)
    return app.handle(request).then((response) => {
      if (waiting) rearm(waiting, incoming, response, config.idleTimeoutS)
      http.record(request.url, response.status, performance.now() - started)
      if (draining) closeConnection(response)
      return crossOrigin ? cors.decorate(request, response) : response
    })
  }

  return {
    app,
    config,
    services,
    models,
    pipeline,
    plugins,
    logger,
    handle: dispatch,
    listen(listenOptions = {}) {
      server = Bun.serve({
        port: listenOptions.port ?? config.port,
        hostname: listenOptions.hostname ?? config.host,
        reusePort: listenOptions.reusePort ?? false,
        // Bun's own cap would answer a bare 413 (no envelope, no request id) before dispatch sees the
        // request: the bounds are ours (the readers' limits, and boundBody in dispatch for every route).
        maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        idleTimeout: config.idleTimeoutS,
        ...(config.tls ? { tls: { cert: Bun.file(config.tls.cert), key: Bun.file(config.tls.key) } } : {}),
        fetch: dispatch,
        // Never Bun's development page (it shows source and paths): a failure outside the app's own
        // error handling is answered in the envelope like any other.
        development: false,
        error(error) {
          const id = newRequestId()
          logger.error('unhandled server error', { request_id: id, error: error instanceof Error ? error.stack : String(error) })
          return new GatewayError('internal_error', `The gateway failed unexpectedly; quote request id ${id} to the operator.`).toResponse(id)
        },
      })
      return server
    },
    hurry() {
      endGrace?.()
    },
    async close() {
      if (server) {
        draining = true
        const stopped = server.stop(false).then(() => true)
        const cut = new Promise<false>((resolve) => {
          const timer = setTimeout(() => resolve(false), config.shutdownGraceMs)
          endGrace = () => {
            clearTimeout(timer)
            resolve(false)
          }
        })
        if (!(await Promise.race([stopped, cut]))) {
          // What still runs is cut off: the streams the gateway writes end with an error event the
          // client's SDK raises (a reset otherwise), then every socket closes.
          pipeline.shutdown()
          await Promise.race([stopped, Bun.sleep(CUT_FLUSH_MS)])
          server.stop(true)
        }
      }
      // The requests cut off end, are settled (their max_parallel slots freed, their usage counted)
      // and their usage and completion hooks run, while the plugins are still open.
      await pipeline.drain(DRAIN_MS)
      pipeline.watchdog.close()
      await closeAll()
      await bus.close()
      if (ownRedis) redis?.disconnect()
      if (ownDb) await db.close()
    },
  }
}

/**
 * A request whose body cannot bring more than `bound` bytes: one whose Content-Length says more is
 * refused (a GatewayError, its connection closed: the body is not read), and a chunked one is read
 * through a count that fails its reader with the same refusal once past the bound. Others as they came.
 */
function boundBody(request: Request, bound: number, limit: number): Request | GatewayError {
  const declared = request.headers.get('content-length')
  if (declared !== null) return Number(declared) > bound ? tooLarge(limit, true) : request
  if (request.body === null || request.headers.get('transfer-encoding') === null) return request
  let size = 0
  const counted = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      size += chunk.byteLength
      if (size > bound) controller.error(tooLarge(limit, true))
      else controller.enqueue(chunk)
    },
  })
  return new Request(request, { body: request.body.pipeThrough(counted) })
}


/**
 * The gateway's own database, opened and migrated; a failure names it (password masked), where the
 * driver's "Failed to connect" named nothing an operator could check.
 */
async function openDatabase(url: string): Promise<DatabaseHandle> {
  let db: DatabaseHandle | undefined
  try {
    db = await createDatabase(url)
    await migrateToLatest(db.db)
    return db
  } catch (error) {
    await db?.close().catch(() => {})
    throw new Error(`cannot use the database ${maskDatabaseUrl(url)}: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}

/** An answer during shutdown tells the client not to send another request on its connection. */
function closeConnection(response: Response): void {
  try {
    response.headers.set('connection', 'close')
  } catch {
    // Immutable headers (a response passed on as it came): Bun closes idle connections at the end anyway.
  }
}

type ConsoleApp = Awaited<ReturnType<typeof consoleRoutes>>

interface AppParts {
  catalog: Catalog
  config: ResolvedConfig
  services: Services
  models: ModelRegistry
  pipeline: Pipeline
  plugins: readonly LoadedPlugin[]
  logger: Logger
  /** The admin console's routes, when it is on. */
  consoleApp: ConsoleApp | null
}

/**
 * What console sessions are signed from: the master encryption key, shared by every instance
 * (so a session holds on all of them), else a random secret of this process.
 */
function consoleSeed(master: Uint8Array | undefined, logger: Logger): Uint8Array {
  if (master) return master
  logger.warn('console sessions hold on this instance only: set SLUICE_ENCRYPTION_KEY to share them between instances')
  return crypto.getRandomValues(new Uint8Array(32))
}

/** The app, and the methods of each path it routes (for 405s and OPTIONS). */
function buildApp({ config, services, models, pipeline, plugins, logger, catalog, consoleApp }: AppParts): { app: Elysia; allowed: (path: string) => string[] } {
  // normalize: false: Elysia's default normalization rewrites invalid values (`stream_options: 5` → `{}`) instead of refusing them.
  const app = new Elysia({ name: 'sluice', normalize: false })
    .onRequest(({ set }) => {
      set.headers['x-request-id'] = newRequestId()
    })
    .onError(({ code, error, set, request, route }) => {
      const id = (set.headers['x-request-id'] as string | undefined) ?? newRequestId()
      return toGatewayError(code, error, request, allowed, logger, id, routeOwner(request.method, route)).toResponse(id)
    })
    .use(docsRoutes(pkg.version))
    .use(opsRoutes({ services }))
    .use(v1Routes({ pipeline, models, maxBodyBytes: config.maxBodyBytes, bodyTimeoutMs: config.bodyTimeoutMs, services }))
    .use(catalog.routes())
    .use(doctorRoutes({ pipeline, models, services }))
    .use(auditRoutes(services))
  if (consoleApp) app.use(consoleApp)
  // Who serves each method and path: Elysia lets a route added later replace one of the same
  // method and path in silence (a plugin's POST /admin/keys answered without the admin key).
  const served = new RouteTable()
  for (const r of app.routes) served.claim(r.method, r.path, 'the gateway')
  /** The plugin of each route a plugin added, for the error handler's log line. */
  const owners = new Map<string, string>()
  for (const plugin of plugins) {
    const before = new Set(app.routes)
    try {
      if (plugin.hooks.routes) plugin.hooks.routes(app as unknown as Elysia)
    } catch (error) {
      throw new Error(`plugin "${plugin.name}" failed to add its routes: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
    }
    // A route that replaced another is a new entry in Elysia's list, in the place of the one it replaced.
    for (const r of app.routes) {
      if (before.has(r)) continue
      const holder = served.claim(r.method, r.path, `plugin "${plugin.name}"`)
      if (holder !== null) {
        throw new Error(`plugin "${plugin.name}" failed to add its routes: ${r.method} ${r.path} is served by ${holder} already; a plugin's route may not replace another`)
      }
      owners.set(`${r.method} ${r.path}`, plugin.name)
    }
  }
  const routeOwner = (method: string, route: string): string | undefined =>
    owners.size === 0 ? undefined : (owners.get(`${method} ${route}`) ?? owners.get(`ALL ${route}`) ?? (method === 'HEAD' ? owners.get(`GET ${route}`) : undefined))

  // Paths and their methods, known once all routes are in: an unknown method on a known path is 405.
  const allowed = methodTable(app.routes.map((r) => ({ method: r.method, path: r.path })))
  return { app: app as unknown as Elysia, allowed }
}

/** Map anything that reached the error handler to the one envelope. */
function toGatewayError(
  code: string | number,
  error: unknown,
  request: Request,
  allowed: (path: string) => string[],
  logger: Logger,
  id: string,
  /** The plugin whose route the request reached, if one did. */
  plugin: string | undefined,
): GatewayError {
  if (error instanceof GatewayError) return error
  // Elysia wraps what a custom `parse` throws (our 413 and JSON errors) in its ParseError.
  if (error instanceof Error && error.cause instanceof GatewayError) return error.cause
  const path = new URL(request.url).pathname
  switch (code) {
    case 'NOT_FOUND': {
      const methods = allowed(path)
      // A key pasted into the path goes back masked, as every message shows a key.
      const shown = maskKeysIn(path)
      if (methods.length) {
        return new GatewayError('method_not_allowed', `${request.method} is not allowed on ${shown}; use ${methods.join(' or ')}.`, {
          headers: { allow: allowList(methods).join(', ') },
        })
      }
      return new GatewayError('not_found', `No route ${request.method} ${shown}. The API is described at /swagger.`)
    }
    case 'PARSE':
      return new GatewayError('invalid_request', 'The request body is not valid JSON. Send a JSON object with Content-Type: application/json.')
    case 'VALIDATION': {
      return invalidRequest((error as ValidationError).valueError)
    }
    default:
      // Bad input that only the database noticed: the client's to fix, not the operator's.
      if (isUnstorableText(error)) {
        return new GatewayError('invalid_request', 'A text value in the request holds the NUL character (\\u0000), which cannot be stored. Remove it and send the request again.')
      }
      // The gateway's database down, locked or too slow: not a bug, a 503 worth retrying shortly.
      const outage = databaseFailure(error, logger, id, plugin)
      if (outage !== null) return outage
      // A secret another instance sealed with a master key this one lacks: its operator's to fix, named.
      if (error instanceof UnknownMasterKeyError) {
        logger.error('a stored secret cannot be opened', { request_id: id, error: error.message })
        return new GatewayError(
          'not_ready',
          `This gateway instance cannot open the stored secret of ${error.context}: it was sealed with master key ${error.keyId}, which this instance was not given. ` +
            'Set the encryption key with that id as SLUICE_ENCRYPTION_KEY (or in SLUICE_ENCRYPTION_KEY_PREVIOUS) on this instance and restart it.',
        )
      }
      if (error instanceof HookFailure) error.report(logger, id)
      else if (plugin !== undefined) new HookFailure('routes', plugin, error).report(logger, id)
      else logger.error('unhandled error', { request_id: id, code: String(code), error: error instanceof Error ? error.stack : String(error) })
      return new GatewayError('internal_error', `The gateway failed unexpectedly; quote request id ${id} to the operator.`)
  }
}

/**
 * Elysia looks for the path from the URL's twelfth character on, past "https://" and a host of
 * three characters or more. Under a shorter host (`http://api/v1/models`, as a container or
 * service name gives) it would route a wrong path, every route a 404 or 405. Such a request is
 * routed as a copy under a stand-in host: nothing here reads the URL's host (the Host header is
 * left as sent), and the copy follows the original's body and abort signal.
 */
export function routable(request: Request): Request {
  const url = request.url
  // A fragment is the client's own and never sent (RFC 9110, 4.2.4); a raw request target that holds
  // one is routed without it, where the router took it for part of the path.
  const fragment = url.indexOf('#')
  if (fragment !== -1) return routable(new Request(url.slice(0, fragment), request))
  // "http://" is 7 characters and a host at least 1, so the path's slash is the first from 8 on.
  if (url.indexOf('/', 8) >= 11) return request
  return new Request(standInUrl(url), request)
}

/**
 * The request's URL under a stand-in host, for routing. A Host header that is no host at all
 * (missing on HTTP/1.0, `a b`, `x/admin`) reaches the server as a bare path, and one that only looks
 * like a host (`[::1`, a port past 65535) as a URL that does not parse: the path is routed as sent.
 */
function standInUrl(url: string): string {
  if (url.startsWith('/')) return 'http://localhost' + url
  try {
    const standIn = new URL(url)
    standIn.hostname = 'localhost'
    return standIn.href
  } catch {
    const slash = url.indexOf('/', url.indexOf('//') + 2)
    return 'http://localhost' + (slash < 0 ? '/' : url.slice(slash))
  }
}

/** A route's `Allow`: its methods, HEAD where GET is (Bun answers it), and OPTIONS (answered in dispatch). */
function allowList(methods: readonly string[]): string[] {
  const list = [...methods]
  if (list.includes('GET') && !list.includes('HEAD')) list.push('HEAD')
  if (!list.includes('OPTIONS')) list.push('OPTIONS')
  return list
}

/** The methods and paths routed, and who serves each; a path's parameter names do not tell two routes apart (the router refuses that too). */
class RouteTable {
  private readonly paths = new Map<string, Map<string, string>>()

  /** Records the route as `owner`'s; null, or who serves it already (`ALL` takes every method). */
  claim(method: string, path: string, owner: string): string | null {
    const shape = path.replace(/:[^/]+/g, ':')
    let methods = this.paths.get(shape)
    if (!methods) this.paths.set(shape, (methods = new Map()))
    const upper = method.toUpperCase()
    const holder = upper === 'ALL' ? methods.values().next().value : (methods.get(upper) ?? methods.get('ALL'))
    if (holder !== undefined) return holder
    methods.set(upper, owner)
    return null
  }
}

function methodTable(routes: { method: string; path: string }[]): (path: string) => string[] {
  const table = new Map<string, { pattern: RegExp; methods: Set<string> }>()
  for (const r of routes) {
    let entry = table.get(r.path)
    if (!entry) {
      const pattern = new RegExp('^' + r.path.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[^/]+/g, '[^/]+').replace(/\*/g, '.*') + '/?$')
      table.set(r.path, (entry = { pattern, methods: new Set() }))
    }
    entry.methods.add(r.method.toUpperCase())
  }
  const entries = [...table.values()]
  return (path) => {
    const methods = new Set<string>()
    for (const e of entries) if (e.pattern.test(path)) for (const m of e.methods) methods.add(m)
    return [...methods]
  }
}

/** Whether a request is for a /v1 route that calls an upstream (every POST under /v1 but the token count). */
function isModelCall(url: string): boolean {
  // The path starts at the first slash after the scheme's `//`.
  const path = url.indexOf('/', url.indexOf('//') + 2)
  return url.startsWith('/v1/', path) && !url.startsWith('tokens/', path + 4)
}

/** A model call's answer has started: its connection may again be closed after a silence. */
function rearm(server: Server<unknown>, request: Request, response: Response, idleS: number): void {
  const stream = response.headers.get('content-type')?.startsWith('text/event-stream') === true
  try {
    server.timeout(request, stream ? STREAM_IDLE_S : idleS)
  } catch {
    // The client has already gone: nothing to arm.
  }
}
