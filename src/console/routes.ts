import { Elysia } from 'elysia'
import { Type, type Static } from '@sinclair/typebox'
import type { ResolvedConfig } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import { readJsonObject } from '../lib/body.ts'
import { echo } from '../lib/key-text.ts'
import type { Logger } from '../lib/logger.ts'
import { compileCheck } from '../lib/validate.ts'
import type { Services } from '../services.ts'
import { consoleBundle } from './assets.ts'
import { clearedCookie, sessionCookie, type ConsoleSession, type ConsoleSessions } from './session.ts'

/** Bus channel on which a logout reaches every instance. */
const LOGOUT_CHANNEL = 'console.logout'

const LoginBody = Type.Object({ admin_key: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false })
/**
 * The largest sign-in body read: `{"admin_key": …}` with a key of at most 1024 characters, with room
 * to spare. Anyone may call sign-in, so its body is capped far below the client API's: parsing
 * megabytes of nested JSON held the serving thread for seconds (27 MB: 8 s) for every caller.
 */
const LOGIN_BODY_LIMIT = 8 * 1024
type Login = Static<typeof LoginBody>
/** `application/json`, with or without parameters. */
const JSON_MEDIA_TYPE = /^\s*application\/json\s*(?:;|$)/i

/**
 * The sign-in takes JSON only, as the console page sends it. A page of any other site may make a
 * visitor's browser POST a form's types or text/plain here without asking (no preflight), and every
 * wrong key so sent would spend the attempts of the visitor's address (see AdminKeyOptions.failures):
 * a page left open would keep the admin locked out. JSON across sites needs a preflight, which
 * /console grants no origin. Refused before the key is looked at, so it counts for nothing.
 */
function jsonSignIn(request: Request): void {
  if (JSON_MEDIA_TYPE.test(request.headers.get('content-type') ?? '')) return
  throw new GatewayError('invalid_request', 'Send the sign-in as JSON, with Content-Type: application/json, as the console page does.')
}

/**
 * The page's security headers: scripts and styles from this origin only (every asset is
 * bundled and served here), no framing, no referrer leaving the console.
 */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const

/** What the page reads at /console/session: signed in or not, the CSRF token, and the lifetime a sign-in gives (for the sign-in form). */
const sessionView = (session: ConsoleSession | null, environment: string, ttlMs: number) =>
  session
    ? { object: 'console_session' as const, authenticated: true, csrf_token: session.csrf, expires_at: new Date(session.expiresAt).toISOString(), environment, session_ttl_ms: ttlMs }
    : { object: 'console_session' as const, authenticated: false, csrf_token: null, expires_at: null, environment, session_ttl_ms: ttlMs }

export interface ConsoleDeps {
  config: ResolvedConfig
  services: Services
  logger: Logger
}

/**
 * The admin console at /console: its page and bundled assets, and sign-in, session and
 * sign-out. Everything else the console does goes through the `/admin/*` JSON API, which
 * accepts the session cookie (see `AdminAuth.check`). No hook here reaches other routes.
 */
export async function consoleRoutes({ config, services, logger }: ConsoleDeps) {
  const sessions: ConsoleSessions | null = services.admin.sessions
  if (!sessions) throw new Error('the console is enabled but the admin check has no console sessions')
  // Start bundling now, so the first visit does not wait; a failure is logged and retried on that visit.
  consoleBundle().catch((error: unknown) => logger.error('the console did not build', { error: String(error) }))
  // Sign-outs of sessions that have not expired yet, from the database: a restart, or an instance
  // started after the sign-out (which the bus message did not reach), does not take them again.
  const db = services.db.db
  const loadSignOuts = async (): Promise<void> => {
    await db.deleteFrom('console_revocations').where('expires_at', '<=', new Date(services.now()).toISOString()).execute()
    const revoked = await db.selectFrom('console_revocations').select(['session_id', 'expires_at']).limit(sessions.maxRevoked + 1).execute()
    for (const row of revoked) sessions.revoke(row.session_id, Date.parse(row.expires_at))
  }
  await loadSignOuts()
  await services.bus.subscribe(LOGOUT_CHANNEL, (message) => {
    const parsed = /^([A-Za-z0-9_-]{22}) (\d{1,15})$/.exec(message)
    if (parsed) sessions.revoke(parsed[1]!, Number(parsed[2]))
  })
  // Sign-outs announced while this instance was not listening (Redis away, a cut connection) are
  // in the database: read again, so a signed-out session is not taken here for the rest of its life.
  services.bus.onResync(() => {
    loadSignOuts().catch((error: unknown) => logger.error('could not reload console sign-outs', { error: String(error) }))
  })
  /** Write a sign-out down until the session's expiry, and drop the rows of sessions that expired. */
  const remember = async (session: ConsoleSession): Promise<void> => {
    await db
      .insertInto('console_revocations')
      .values({ session_id: session.id, expires_at: new Date(session.expiresAt).toISOString() })
      .onConflict((oc) => oc.column('session_id').doNothing())
      .execute()
    await db.deleteFrom('console_revocations').where('expires_at', '<=', new Date(services.now()).toISOString()).execute()
  }
  const check = compileCheck(LoginBody)
  // Behind a TLS-terminating proxy the gateway speaks plain HTTP; the browser still sees HTTPS.
  const secure = (request: Request) =>
    config.tls !== null || request.url.startsWith('https:') || request.headers.get('x-forwarded-proto')?.split(',')[0]?.trim() === 'https'
  const hide = { hide: true } as const

  const pageRoute = async () => new Response((await consoleBundle()).html, { headers: PAGE_HEADERS })
  return new Elysia({ name: 'sluice.console', prefix: '/console' })
    .get('', pageRoute, { detail: hide })
    .get('/', pageRoute, { detail: hide })
    .get(
      '/assets/:file',
      async ({ params, request }) => {
        const file = (await consoleBundle()).assets.get(params.file)
        if (!file) throw new GatewayError('not_found', `No asset "${echo(params.file)}" under /console/assets.`)
        const headers = { 'content-type': file.type, etag: file.etag, 'cache-control': 'public, max-age=31536000, immutable', 'x-content-type-options': 'nosniff' }
        if (request.headers.get('if-none-match') === file.etag) return new Response(null, { status: 304, headers })
        return new Response(file.body, { headers })
      },
      { detail: hide },
    )
    .get(
      '/session',
      ({ request, set }) => {
        set.headers['cache-control'] = 'no-store'
        return sessionView(sessions.authorize(request).session, config.environment, sessions.ttlMs)
      },
      { detail: hide },
    )
    .post(
      '/login',
      ({ body, request, set }) => {
        const input = check((body ?? {}) as Record<string, unknown>) as Login
        // No admin key holds white space (the boot refuses one that does): what is around a pasted
        // key (a trailing newline from a secret file) goes, as a bearer header's does.
        const refused = services.admin.signIn(request, input.admin_key.trim(), 'admin_key')
        if (refused) throw refused
        const { token, session } = sessions.issue()
        set.headers['set-cookie'] = sessionCookie(sessions.cookieName, token, session.expiresAt - services.now(), secure(request))
        set.headers['cache-control'] = 'no-store'
        logger.info('console sign-in', { session: session.id.slice(0, 6) })
        return sessionView(session, config.environment, sessions.ttlMs)
      },
      {
        parse: ({ request }) => {
          jsonSignIn(request)
          // Under the client API's deadline: anyone may post here, and a body trickled in a byte
          // at a time (each within the idle timeout) would hold the connection for good.
          return readJsonObject(request, LOGIN_BODY_LIMIT, config.bodyTimeoutMs)
        },
        detail: hide,
      },
    )
    .post(
      '/logout',
      async ({ request, set }) => {
        const { session } = sessions.authorize(request)
        if (session) {
          // A live session signs out only with its CSRF token: no other site can sign the admin out.
          const refused = services.admin.check(request)
          if (refused) throw refused
          sessions.revoke(session.id, session.expiresAt)
          await remember(session).catch((error: unknown) => {
            logger.warn('could not record a console sign-out in the database; a restart would take the session again until it expires', { error: String(error) })
          })
          await services.bus.publish(LOGOUT_CHANNEL, `${session.id} ${session.expiresAt}`).catch((error: unknown) => {
            logger.warn('could not announce a console sign-out to other instances; they read the sign-outs again once this instance reaches Redis again', { error: String(error) })
          })
        }
        set.headers['set-cookie'] = clearedCookie(sessions.cookieName, secure(request))
        set.headers['cache-control'] = 'no-store'
        return sessionView(null, config.environment, sessions.ttlMs)
      },
      { detail: hide },
    )
}
