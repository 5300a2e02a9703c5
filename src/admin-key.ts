import { timingSafeEqual } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Database } from './db/schema.ts'
import { GatewayError } from './errors.ts'
import { readOptionalJsonObject } from './lib/body.ts'
import { randomBase62 } from './lib/id.ts'
import { keyEnvironment, maskKey } from './lib/key-text.ts'
import type { Logger } from './lib/logger.ts'
import { clientKey, type FailedAttempts } from './lib/failed-attempts.ts'
import { CSRF_HEADER, type ConsoleSessions } from './console/session.ts'

const SETTING = 'admin_key_sha256'

/** Checks the admin bearer key (or a console session) of `/admin/*` requests. */
export interface AdminAuth {
  /**
   * Undefined when the request carries the admin key, or, with no `Authorization` nor
   * `x-api-key` header, a valid console session cookie (plus its CSRF header on a change);
   * the refusal otherwise.
   */
  check(request: Request): GatewayError | undefined
  /** Whether a secret is the admin key, in constant time. */
  matches(secret: string): boolean
  /**
   * The console's sign-in: undefined when `secret` is the admin key, the refusal otherwise (naming
   * `param`), or 429 when this client failed too often of late (see {@link AdminKeyOptions.failures}).
   */
  signIn(request: Request, secret: string, param: string): GatewayError | undefined
  /** Console sessions signed for this admin key; null when the console is off. */
  readonly sessions: ConsoleSessions | null
}

export interface AdminKeyOptions {
  /** Builds the console's sessions from the admin key's SHA-256 (they are bound to it). */
  sessions?: (adminDigest: Buffer) => ConsoleSessions
  /**
   * Failed admin keys (a wrong bearer key on /admin/*, a wrong key at the console's sign-in) per
   * client address; a client out of attempts is answered 429 rate_limit_exceeded, without its key
   * being looked at, until it has one again. Unset: no limit.
   */
  failures?: FailedAttempts
  /** The address of a request's client (the socket's peer); null where unknown (in-process handle()), which no limit counts. */
  clientAddress?: (request: Request) => string | null
}

/**
 * Who made an admin call that passed the check, as the audit trail names them: `console` for a
 * console session (no key header), `admin` for the admin key.
 */
export const adminActor = (request: Request): 'admin' | 'console' =>
  request.headers.has('authorization') || request.headers.has('x-api-key') ? 'admin' : 'console'

/** The largest body an admin call takes: its JSON objects are small (metadata alone is capped at 16 KB). */
export const ADMIN_BODY_LIMIT = 1024 * 1024

/**
 * Elysia hooks that refuse a request without the admin key before anything else looks at it:
 * `parse` runs first, ahead of a route's own body parser (a caller without the key learns
 * nothing about its body, not even that the JSON is broken), and `transform` on every request,
 * for those with no body to parse. A request that passed once is not checked (hashed) again.
 *
 * `parse` then reads the body itself, strictly: Elysia takes broken JSON for no body where the
 * body is optional (a revoke would then run without its reason, a reset with its defaults), so a
 * body that is there must be a JSON object, up to ADMIN_BODY_LIMIT. `transform` refuses a path
 * parameter the router could not decode (`%ff`: Elysia hands the route null), and a page size
 * (`limit`) not written in digits. No admin input, body, path or query, may hold NUL.
 */
export function adminGuard(admin: AdminAuth): {
  parse: (ctx: { request: Request }) => Promise<Record<string, unknown> | undefined>
  transform: (ctx: { request: Request; params?: Record<string, unknown>; query?: Record<string, unknown> }) => void
} {
  const passed = new WeakSet<Request>()
  const check = (request: Request): void => {
    if (passed.has(request)) return
    const refused = admin.check(request)
    if (refused) throw refused
    passed.add(request)
  }
  return {
    parse: async ({ request }) => {
      check(request)
      const body = await readOptionalJsonObject(request, ADMIN_BODY_LIMIT)
      const nul = body === undefined ? null : nulAt(body, '')
      if (nul !== null) throw holdsNul(nul === '' ? 'body' : nul)
      return body
    },
    transform: ({ request, params, query }) => {
      check(request)
      if (params) {
        for (const [name, value] of Object.entries(params)) {
          if (value === null) {
            throw new GatewayError('invalid_request', `The path's ${name} is not valid percent-encoded UTF-8; encode it with encodeURIComponent.`, { param: name })
          }
          if (typeof value === 'string' && value.includes('\0')) throw holdsNul(name)
        }
      }
      if (query) {
        for (const [name, value] of Object.entries(query)) {
          if (typeof value !== 'string') continue
          if (value.includes('\0')) throw holdsNul(name)
          // Number() would take 0x10, 1e1 or " 5" for a page size; a size is digits.
          if (name === 'limit' && !/^[0-9]{1,9}$/.test(value)) {
            throw new GatewayError('invalid_request', `limit must be a whole number written in digits, such as 100; got "${value.slice(0, 40)}".`, { param: 'limit' })
          }
        }
      }
    },
  }
}

/**
 * The NUL character cannot be stored in Postgres text, where SQLite would keep it: refused in
 * every admin input on both, so a call means the same whatever the database.
 */
const holdsNul = (param: string): GatewayError =>
  new GatewayError('invalid_request', `${param} holds the NUL character (\\u0000), which the gateway does not take in admin input. Remove it and send the request again.`, { param })

/** The path (`metadata.k`, `keys.0.id`) of the first string in a JSON value, key or value, that holds NUL; null when none does. */
function nulAt(value: unknown, path: string): string | null {
  if (typeof value === 'string') return value.includes('\0') ? path : null
  if (typeof value !== 'object' || value === null) return null
  for (const [key, item] of Object.entries(value)) {
    const at = path === '' ? key : `${path}.${key}`
    if (key.includes('\0')) return at
    const found = nulAt(item, at)
    if (found !== null) return found
  }
  return null
}

const sha256 = (text: string): Buffer => Buffer.from(new Bun.CryptoHasher('sha256').update(text).digest())

const BEARER = /^Bearer\s+(\S+)\s*$/i
const EMPTY_BEARER = /^\s*(Bearer\s*)?$/i

/**
 * The secret a request presents: `Authorization: Bearer …`, else `x-api-key`. An Authorization
 * header with no usable bearer token (`Bearer ` with nothing after it, as the OpenAI SDK sends
 * with an empty api_key, or another form) does not hide a key sent in `x-api-key`.
 */
export function presentedSecret(request: Request): string | null {
  const auth = request.headers.get('authorization')
  if (auth) {
    const match = BEARER.exec(auth)
    if (match) return match[1]!
  }
  return request.headers.get('x-api-key')?.trim() || null
}

/**
 * Whether `Authorization` holds something other than `Bearer <token>` or an empty bearer: a bare
 * key, `Token …`, `Basic …`, a token with spaces. Only worth asking once presentedSecret found
 * nothing, to tell the caller the header's form is wrong rather than that no key was sent.
 */
export function malformedAuthorization(request: Request): boolean {
  const auth = request.headers.get('authorization')
  return auth !== null && !BEARER.test(auth) && !EMPTY_BEARER.test(auth)
}

/**
 * The refusal of a secret that is not the admin key; an API key (sent to /admin/*, pasted into the
 * console's sign-in) is told for what it is, masked. `param` names the field it came in, if any.
 */
export function wrongAdminKey(secret: string, param: string | null = null): GatewayError {
  if (keyEnvironment(secret) !== null) {
    return new GatewayError('invalid_admin_key', `The key ${maskKey(secret)} is an API key, which the client API (/v1/*) takes; /admin/* and the console take the admin key (printed at first start, or the value of SLUICE_ADMIN_KEY).`, { param })
  }
  return new GatewayError('invalid_admin_key', 'The admin key is wrong. Use the key printed at first start or the value of SLUICE_ADMIN_KEY.', { param })
}

/** The 429 of a client out of admin key attempts. */
const tooManyFailures = (waitMs: number): GatewayError => {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000))
  return new GatewayError('rate_limit_exceeded', `Too many wrong admin keys from your address; try again in ${seconds} s with the right one (the key printed at first start, or the value of SLUICE_ADMIN_KEY).`, {
    headers: { 'retry-after': String(seconds) },
  })
}

/**
 * The admin key: `SLUICE_ADMIN_KEY` when set; otherwise one generated on first start,
 * printed once and kept only as its SHA-256. Compared in constant time.
 */
export async function ensureAdminKey(
  db: Kysely<Database>,
  configured: string | null,
  logger: Logger,
  print: (text: string) => void = (t) => console.log(t),
  options: AdminKeyOptions = {},
): Promise<AdminAuth> {
  let digest: Buffer
  if (configured) {
    digest = sha256(configured)
  } else {
    const row = await db.selectFrom('settings').select('value').where('key', '=', SETTING).executeTakeFirst()
    if (row) {
      digest = Buffer.from(row.value, 'hex')
    } else {
      const key = `sluice-admin-${randomBase62(40)}`
      digest = sha256(key)
      await db
        .insertInto('settings')
        .values({ key: SETTING, value: digest.toString('hex'), updated_at: new Date().toISOString() })
        .onConflict((oc) => oc.column('key').doNothing())
        .execute()
      // Another instance may have won the race; the stored one is the admin key then.
      const stored = await db.selectFrom('settings').select('value').where('key', '=', SETTING).executeTakeFirstOrThrow()
      if (stored.value === digest.toString('hex')) {
        print(`\n  sluice admin key (shown once; set SLUICE_ADMIN_KEY to choose your own):\n    ${key}\n`)
        logger.info('generated the admin key and printed it once')
      } else {
        digest = Buffer.from(stored.value, 'hex')
      }
    }
  }
  const matches = (secret: string): boolean => timingSafeEqual(sha256(secret), digest)
  const sessions = options.sessions?.(digest) ?? null
  const { failures, clientAddress } = options
  /**
   * The refusal of a secret that is not the admin key, counted against its client; or 429 when the
   * client has no attempt left. A client that never failed costs one size check (an empty map).
   */
  const judge = (request: Request, secret: string, param: string | null): GatewayError | undefined => {
    const client = failures && failures.size > 0 ? clientKey(clientAddress?.(request) ?? null) : null
    if (client !== null) {
      const wait = failures!.retryAfterMs(client)
      if (wait > 0) return tooManyFailures(wait)
    }
    if (matches(secret)) return undefined
    if (failures) {
      const failed = client ?? clientKey(clientAddress?.(request) ?? null)
      if (failed !== null) failures.fail(failed)
    }
    return wrongAdminKey(secret, param)
  }
  return {
    sessions,
    matches,
    signIn: (request, secret, param) => judge(request, secret, param),
    check(request) {
      // A request that presents a key is judged by that key alone, as before the console existed.
      if (sessions && !request.headers.has('authorization') && !request.headers.has('x-api-key')) {
        const { refusal } = sessions.authorize(request)
        if (refusal === null) return undefined
        if (refusal === 'invalid_session') {
          return new GatewayError('invalid_admin_key', 'Your console session has ended (signed out, expired, or the admin key changed). Sign in again at /console.')
        }
        if (refusal === 'stale_csrf') {
          return new GatewayError('insufficient_permissions', `This change carries the ${CSRF_HEADER} token of another console session (the browser signed in again since this page loaded); reload the console.`)
        }
        if (refusal === 'missing_csrf') {
          // 403, not 401: the session is valid, but this change does not prove it comes from the console page.
          return new GatewayError('insufficient_permissions', `This change carries a console session cookie but not its CSRF token in the ${CSRF_HEADER} header; make changes from the console, or send the admin key as a bearer token.`)
        }
      }
      const secret = presentedSecret(request)
      if (!secret) {
        if (malformedAuthorization(request)) {
          return new GatewayError('invalid_admin_key', 'The Authorization header is not of the form `Bearer <admin key>`. Send the admin key as `Authorization: Bearer <admin key>`.')
        }
        return new GatewayError('invalid_admin_key', 'No admin key was sent. Send it as `Authorization: Bearer <admin key>`.')
      }
      return judge(request, secret, null)
    },
  }
}
