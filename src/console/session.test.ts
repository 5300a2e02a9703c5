import { describe, expect, test } from 'bun:test'
import { CSRF_HEADER, ConsoleSessions, SESSION_COOKIE_PREFIX, clearedCookie, readCookie, sessionCookie, sessionSecret } from './session.ts'

const SECRET = new Uint8Array(32).fill(7)
const HOUR = 3_600_000

function sessions(options: { now?: () => number; ttlMs?: number; maxRevoked?: number; secret?: Uint8Array } = {}) {
  return new ConsoleSessions({ secret: options.secret ?? SECRET, now: options.now ?? (() => 1_800_000_000_000), ttlMs: options.ttlMs, maxRevoked: options.maxRevoked })
}

/** The cookie name of sessions signed with SECRET. */
const COOKIE = sessions().cookieName

const request = (method: string, token: string | null, csrf?: string | null) => {
  const headers = new Headers()
  if (token !== null) headers.set('cookie', `other=1; ${COOKIE}=${token}; theme=dark`)
  if (csrf) headers.set(CSRF_HEADER, csrf)
  return new Request('http://gw.test/admin/keys', { method, headers })
}

describe('session tokens', () => {
  test('a token issued verifies, with its expiry and a CSRF token that is not the token', () => {
    const s = sessions()
    const { token, session } = s.issue()
    expect(token).toMatch(/^v1\.[A-Za-z0-9_-]{22}\.\d+\.\d+\.[A-Za-z0-9_-]{43}$/)
    const verified = s.verify(token)
    expect(verified).toEqual(session)
    expect(session.expiresAt - 1_800_000_000_000).toBe(8 * HOUR)
    expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(token).not.toContain(session.csrf)
  })

  test('two sessions have different ids and CSRF tokens', () => {
    const s = sessions()
    const a = s.issue().session
    const b = s.issue().session
    expect(a.id).not.toBe(b.id)
    expect(a.csrf).not.toBe(b.csrf)
  })

  test('a forged, altered or foreign token is refused', () => {
    const s = sessions()
    const { token } = s.issue()
    const [v, id, issued, expires, mac] = token.split('.') as [string, string, string, string, string]
    // A later expiry with the old signature.
    expect(s.verify([v, id, issued, String(Number(expires) + 3600), mac].join('.'))).toBeNull()
    // Another session id with the old signature.
    expect(s.verify([v, 'A'.repeat(22), issued, expires, mac].join('.'))).toBeNull()
    // A flipped signature character.
    expect(s.verify(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).toBeNull()
    // Signed with another secret (another admin key, another master key).
    expect(sessions({ secret: new Uint8Array(32).fill(8) }).verify(token)).toBeNull()
    for (const junk of ['', 'v1', 'v2.' + token.slice(3), `${token}.extra`, 'x'.repeat(500), 'v1.a.b.c.d']) expect(s.verify(junk)).toBeNull()
    expect(s.verify(null)).toBeNull()
  })

  test('a token expires at its time, not a second later', () => {
    let now = 1_800_000_000_000
    const s = sessions({ now: () => now, ttlMs: HOUR })
    const { token } = s.issue()
    now += HOUR - 1000
    expect(s.verify(token)).not.toBeNull()
    now += 1000
    expect(s.verify(token)).toBeNull()
  })

  test('a short secret is refused at construction', () => {
    expect(() => new ConsoleSessions({ secret: new Uint8Array(16), now: Date.now })).toThrow('at least 32 bytes')
  })
})

describe('authorize: cookie for reads, cookie + CSRF header for changes', () => {
  const s = sessions()
  const { token, session } = s.issue()

  test('GET, HEAD and OPTIONS need only the cookie', () => {
    for (const method of ['GET', 'HEAD', 'OPTIONS']) expect(s.authorize(request(method, token))).toEqual({ session, refusal: null })
  })

  test('a change needs the matching CSRF header', () => {
    for (const method of ['POST', 'PATCH', 'PUT', 'DELETE']) {
      expect(s.authorize(request(method, token)).refusal).toBe('missing_csrf')
      // A token that is not this session's is told apart from none (a page of an earlier session).
      expect(s.authorize(request(method, token, 'x'.repeat(43))).refusal).toBe('stale_csrf')
      expect(s.authorize(request(method, token, session.csrf.slice(1))).refusal).toBe('stale_csrf')
      expect(s.authorize(request(method, token, session.csrf)).refusal).toBeNull()
    }
  })

  test("another session's CSRF token does not do", () => {
    const other = s.issue().session
    expect(s.authorize(request('POST', token, other.csrf)).refusal).toBe('stale_csrf')
  })

  test('no cookie and a bad cookie are told apart', () => {
    expect(s.authorize(request('GET', null)).refusal).toBe('no_session')
    expect(s.authorize(request('GET', 'nonsense')).refusal).toBe('invalid_session')
  })
})

describe('revocation (logout)', () => {
  test('a revoked session is refused; others are not', () => {
    const s = sessions()
    const a = s.issue()
    const b = s.issue()
    s.revoke(a.session.id, a.session.expiresAt)
    expect(s.verify(a.token)).toBeNull()
    expect(s.verify(b.token)).not.toBeNull()
  })

  test('the revoked set is bounded: expired entries go first, then every older session ends (fails closed)', () => {
    let now = 1_800_000_000_000
    const s = sessions({ now: () => now, ttlMs: HOUR, maxRevoked: 3 })
    const early = s.issue()
    s.revoke(early.session.id, early.session.expiresAt)
    now += HOUR / 2
    const live = [s.issue(), s.issue(), s.issue()]
    now += HOUR / 2 + 1
    s.revoke(live[0]!.session.id, live[0]!.session.expiresAt)
    s.revoke(live[1]!.session.id, live[1]!.session.expiresAt)
    expect(s.revokedCount).toBe(3)
    const bystander = s.issue()
    // Full: the first revocation has expired by now, so it is pruned to make room.
    s.revoke(live[2]!.session.id, live[2]!.session.expiresAt)
    expect(s.revokedCount).toBe(3)
    expect(s.verify(bystander.token)).not.toBeNull()
    // Full, and nothing has expired: rather than forget one, every session issued so far ends.
    const extra = s.issue()
    s.revoke(extra.session.id, extra.session.expiresAt)
    expect(s.revokedCount).toBe(0)
    for (const x of [...live, bystander, extra]) expect(s.verify(x.token)).toBeNull()
    now += 2000
    expect(s.verify(s.issue().token)).not.toBeNull()
  })

  test('revoking an expired session remembers nothing', () => {
    let now = 1_800_000_000_000
    const s = sessions({ now: () => now, ttlMs: HOUR })
    const a = s.issue()
    now += 2 * HOUR
    s.revoke(a.session.id, a.session.expiresAt)
    expect(s.revokedCount).toBe(0)
  })
})

describe('secret, cookies', () => {
  test('the signing secret depends on both the seed and the admin key digest', () => {
    const seed = new Uint8Array(32).fill(1)
    const digest = new Uint8Array(32).fill(2)
    const base = Buffer.from(sessionSecret(seed, digest)).toString('hex')
    expect(Buffer.from(sessionSecret(seed, digest)).toString('hex')).toBe(base)
    expect(Buffer.from(sessionSecret(new Uint8Array(32).fill(3), digest)).toString('hex')).not.toBe(base)
    expect(Buffer.from(sessionSecret(seed, new Uint8Array(32).fill(4))).toString('hex')).not.toBe(base)
    expect(sessionSecret(seed, digest).byteLength).toBe(32)
  })

  test('Set-Cookie: HttpOnly, SameSite=Strict, path /, max-age, Secure only over TLS', () => {
    expect(sessionCookie(COOKIE, 'tok', 8 * HOUR, false)).toBe(`${COOKIE}=tok; Path=/; Max-Age=28800; HttpOnly; SameSite=Strict`)
    expect(sessionCookie(COOKIE, 'tok', 8 * HOUR, true)).toEndWith('; Secure')
    expect(clearedCookie(COOKIE, true)).toBe(`${COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure`)
  })

  test('the cookie name is the prefix and a tag of the secret: the same for the same secret, another for another', () => {
    expect(COOKIE).toMatch(new RegExp(`^${SESSION_COOKIE_PREFIX}[0-9a-f]{8}$`))
    expect(sessions({ now: () => 0 }).cookieName).toBe(COOKIE)
    expect(sessions({ secret: new Uint8Array(32).fill(8) }).cookieName).not.toBe(COOKIE)
    // A session is read from its own cookie only: another deployment's, on the same host, is not looked at.
    const s = sessions()
    const { token } = s.issue()
    const other = new Request('http://gw.test/admin/keys', { headers: { cookie: `${sessions({ secret: new Uint8Array(32).fill(8) }).cookieName}=${token}` } })
    expect(s.authorize(other).refusal).toBe('no_session')
  })

  test('readCookie finds one cookie among many, by exact name', () => {
    expect(readCookie('a=1; sluice_console=xyz; b=2', 'sluice_console')).toBe('xyz')
    expect(readCookie('not_sluice_console=1', 'sluice_console')).toBeNull()
    expect(readCookie('sluice_console=', 'sluice_console')).toBeNull()
    expect(readCookie(null, 'sluice_console')).toBeNull()
  })
})
