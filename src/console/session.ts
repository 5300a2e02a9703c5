import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * What the console's session cookie's name starts with; {@link ConsoleSessions.cookieName} adds the
 * deployment's tag. Path `/`: the console's fetch calls go to `/admin/*`.
 */
export const SESSION_COOKIE_PREFIX = 'sluice_console_'

/** The header the console's fetch calls carry the session's CSRF token in. */
export const CSRF_HEADER = 'x-sluice-csrf'

/** How long a console session lasts. @default 8 hours */
export const DEFAULT_SESSION_TTL_MS = 8 * 60 * 60 * 1000

/** Methods that change nothing: a session cookie alone is enough for them. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/** A verified console session. */
export interface ConsoleSession {
  /** Random id (base64url, 128 bits); what logout revokes. */
  readonly id: string
  /** Milliseconds since the epoch. */
  readonly issuedAt: number
  readonly expiresAt: number
  /** The token the console must echo in {@link CSRF_HEADER} on every change. */
  readonly csrf: string
}

export interface ConsoleSessionOptions {
  /** HMAC key (32 bytes). Bound to the admin key: a new admin key ends every session. */
  secret: Uint8Array
  /** @default DEFAULT_SESSION_TTL_MS */
  ttlMs?: number
  now: () => number
  /** Revoked, not yet expired sessions remembered; past it every older session ends. @default 10000 */
  maxRevoked?: number
}

/** Why a session check refused; `null` from {@link ConsoleSessions.authorize} means allowed. */
export type SessionRefusal = 'no_session' | 'invalid_session' | 'missing_csrf' | 'stale_csrf'

/**
 * Console sessions as HMAC-signed tokens: `v1.<id>.<issued>.<expires>.<mac>`. No server-side
 * store, so any instance sharing the signing secret accepts them (Bun's `reusePort`, a load
 * balancer). The CSRF token is derived from the session id with the same secret, so it needs
 * no storage either. Logout revokes an id in a bounded set (instances tell each other through
 * the message bus); when that set is full, every session issued before that moment ends, which
 * fails closed instead of forgetting a revocation.
 */
export class ConsoleSessions {
  /**
   * The session cookie's name: the prefix and a tag of the signing secret (8 hex characters of an
   * HMAC of it, which tells nothing of it). Browsers keep cookies per host, not per port, so two
   * gateways on one host (:8080 and :8081, each with its own admin key or encryption key) would
   * overwrite each other's cookie and sign each other out. The tag is the same for every instance
   * and restart that would accept the session anyway (the same secret), behind any proxy or URL,
   * and differs between those that would not; a new admin key changes it, as it ends the sessions.
   */
  readonly cookieName: string
  readonly ttlMs: number
  /** Revocations remembered at most; past it every session issued before ends. */
  readonly maxRevoked: number
  private readonly secret: Uint8Array
  private readonly now: () => number
  /** Revoked session id → its expiry (after which the signature check refuses it anyway). */
  private readonly revoked = new Map<string, number>()
  /** Sessions issued before this moment are refused (set when the revoked set overflows). */
  private notBefore = 0

  constructor(options: ConsoleSessionOptions) {
    if (options.secret.byteLength < 32) throw new Error('console sessions need a secret of at least 32 bytes')
    this.secret = options.secret
    this.cookieName = `${SESSION_COOKIE_PREFIX}${createHmac('sha256', this.secret).update('cookie name').digest('hex').slice(0, 8)}`
    this.ttlMs = options.ttlMs ?? DEFAULT_SESSION_TTL_MS
    this.now = options.now
    this.maxRevoked = options.maxRevoked ?? 10_000
  }

  /** A new session and its cookie value. */
  issue(): { token: string; session: ConsoleSession } {
    const id = randomBytes(16).toString('base64url')
    // Whole seconds keep the token short; one second of drift on an 8 h session does not matter.
    const issued = Math.floor(this.now() / 1000)
    const expires = Math.floor((this.now() + this.ttlMs) / 1000)
    const payload = `v1.${id}.${issued}.${expires}`
    return { token: `${payload}.${this.mac(payload)}`, session: this.session(id, issued * 1000, expires * 1000) }
  }

  /** The session a cookie value stands for, or null: malformed, forged, expired, revoked. */
  verify(token: string | null | undefined): ConsoleSession | null {
    if (!token || token.length > 200) return null
    const parts = token.split('.')
    if (parts.length !== 5 || parts[0] !== 'v1') return null
    const [, id, issuedText, expiresText, mac] = parts as [string, string, string, string, string]
    if (!/^[A-Za-z0-9_-]{22}$/.test(id) || !/^\d{1,12}$/.test(issuedText) || !/^\d{1,12}$/.test(expiresText)) return null
    const expected = Buffer.from(this.mac(`v1.${id}.${issuedText}.${expiresText}`))
    const presented = Buffer.from(mac)
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return null
    const issuedAt = Number(issuedText) * 1000
    const expiresAt = Number(expiresText) * 1000
    const now = this.now()
    if (expiresAt <= now || issuedAt < this.notBefore || this.revoked.has(id)) return null
    return this.session(id, issuedAt, expiresAt)
  }

  /**
   * Whether a request may go ahead on the session its cookie names: any valid session for
   * GET/HEAD/OPTIONS, and for a change also the session's CSRF token in {@link CSRF_HEADER}.
   */
  authorize(request: Request): { session: ConsoleSession | null; refusal: SessionRefusal | null } {
    const token = readCookie(request.headers.get('cookie'), this.cookieName)
    if (token === null) return { session: null, refusal: 'no_session' }
    const session = this.verify(token)
    if (!session) return { session: null, refusal: 'invalid_session' }
    if (SAFE_METHODS.has(request.method.toUpperCase())) return { session, refusal: null }
    const presented = request.headers.get(CSRF_HEADER)
    // A token that is there but not this session's: a page loaded under an earlier session.
    return { session, refusal: this.csrfMatches(session, presented) ? null : presented ? 'stale_csrf' : 'missing_csrf' }
  }

  /** Constant-time comparison of a presented CSRF token with the session's. */
  csrfMatches(session: ConsoleSession, presented: string | null): boolean {
    if (!presented) return false
    const a = Buffer.from(presented)
    const b = Buffer.from(session.csrf)
    return a.length === b.length && timingSafeEqual(a, b)
  }

  /** End a session on this instance (logout; other instances hear of it through the bus). */
  revoke(id: string, expiresAt: number): void {
    const now = this.now()
    if (expiresAt <= now) return
    if (this.revoked.size >= this.maxRevoked) {
      for (const [key, until] of this.revoked) if (until <= now) this.revoked.delete(key)
    }
    if (this.revoked.size >= this.maxRevoked) {
      // Forgetting a revocation would bring a logged-out session back; ending all of them does not.
      this.revoked.clear()
      this.notBefore = now + 1000
      return
    }
    this.revoked.set(id, expiresAt)
  }

  /** How many revocations are remembered (for tests and metrics). */
  get revokedCount(): number {
    return this.revoked.size
  }

  private session(id: string, issuedAt: number, expiresAt: number): ConsoleSession {
    return { id, issuedAt, expiresAt, csrf: this.mac(`csrf.${id}`) }
  }

  private mac(text: string): string {
    return createHmac('sha256', this.secret).update(text).digest('base64url')
  }
}

/**
 * The signing secret of console sessions: HMAC of the admin key's digest under a seed shared
 * by the instances (the master encryption key). A database reader, who sees the digest but not
 * the seed, cannot mint sessions; a new admin key ends every session.
 */
export function sessionSecret(seed: Uint8Array, adminDigest: Uint8Array): Uint8Array {
  return createHmac('sha256', seed).update('sluice console session v1\0').update(adminDigest).digest()
}

/** One cookie's value from a `Cookie` header, or null. */
export function readCookie(header: string | null, name: string): string | null {
  if (!header) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || null
  }
  return null
}

/** `Set-Cookie` for a session under `name`: HttpOnly, SameSite=Strict, Secure over TLS, gone when the session ends. */
export function sessionCookie(name: string, token: string, maxAgeMs: number, secure: boolean): string {
  return `${name}=${token}; Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`
}

/** `Set-Cookie` that removes the session cookie `name`. */
export function clearedCookie(name: string, secure: boolean): string {
  return `${name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`
}
