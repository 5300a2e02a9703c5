/**
 * Auth plugin, error paths: every key-related code of DESIGN.md's table, driven through the
 * official OpenAI SDK against a listening gateway, with its status, `code`, `type` and a
 * message specific to the cause. Time-based rules run on an injected clock; one block
 * checks them on the real clock too.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import {
  ADMIN_KEY,
  Clock,
  chat,
  expectApiError,
  expectEnvelope,
  startAuthGateway,
  uid,
  userWithKey,
  type AuthGateway,
  type CreatedKey,
} from '../../test/support/auth.ts'

const INVALID_USER = 'Invalid user associated with this key'
const base62 = (n: number) => {
  const chars = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => chars[b % 62]).join('')
}

let upstream: MockUpstream
let gw: AuthGateway
const clock = new Clock()

/** Every refusal's message by cause; at the end, no two causes may share a message. */
const messages = new Map<string, string>()
const record = (cause: string, message: string) => {
  expect(messages.has(cause)).toBe(false)
  messages.set(cause, message)
}

beforeAll(async () => {
  upstream = await startMockUpstream()
  // The 401s below are many wrong admin keys from one address, on a clock that stands still.
  gw = await startAuthGateway(upstream.url, { config: { server: { admin_attempts_per_minute: 10_000 } }, gateway: { now: clock.now } })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

/** A message with its particulars (keys, ids, times) replaced, so two causes compare by wording. */
const template = (message: string) =>
  message
    .replace(/\d{4}-\d{2}-\d{2}T[\d:.]+Z/g, '<time>')
    .replace(/sk-[a-z0-9]+-[A-Za-z0-9]*(…[A-Za-z0-9]+)?/g, '<key>')
    .replace(/\b(usr|team|key)_[A-Za-z0-9]+/g, '<id>')
    .replace(/\(\d+ characters\)/g, '(<n> characters)')

describe('missing_api_key (401)', () => {
  test('no Authorization and no x-api-key', async () => {
    const client = gw.client('unused', { headers: { Authorization: null } })
    const message = await expectApiError(chat(client), 'missing_api_key')
    expect(message).toContain('No API key')
    expect(message).toContain('Authorization: Bearer')
    record('missing', message)
  })

  test('an empty x-api-key counts as none', async () => {
    const client = gw.client('unused', { headers: { Authorization: null, 'x-api-key': '' } })
    await expectApiError(chat(client), 'missing_api_key')
  })

  test('every client endpoint refuses without a key: models, key, embeddings', async () => {
    const client = gw.client('unused', { headers: { Authorization: null } })
    await expectApiError(client.models.list(), 'missing_api_key')
    await expectApiError(client.models.retrieve('mock-gpt'), 'missing_api_key')
    await expectApiError(client.get('/key'), 'missing_api_key')
    await expectApiError(client.embeddings.create({ model: 'mock-embed', input: 'x' }), 'missing_api_key')
    expect(upstream.stats.lastHeaders?.get('authorization') ?? '').not.toContain('unused')
  })
})

describe('invalid_api_key (401)', () => {
  test('malformed: too short a secret', async () => {
    const bad = 'sk-dev-abc123'
    const message = await expectApiError(chat(gw.client(bad)), 'invalid_api_key')
    expect(message).toContain('malformed')
    expect(message).not.toContain(bad)
    record('malformed', message)
  })

  test('malformed: other shapes (no prefix, bad env slug, characters outside base62, 31-character secret)', async () => {
    for (const bad of ['hello', 'sk-' + base62(40), 'sk-DEV-' + base62(40), 'sk-dev-' + base62(39) + '!', 'sk-dev-' + base62(31), `sk-dev-${base62(20)}-${base62(20)}`]) {
      const message = await expectApiError(chat(gw.client(bad)), 'invalid_api_key')
      expect(message).toContain('malformed')
      expect(message).not.toContain(bad)
    }
  })

  test("a provider's own key (OpenAI, Anthropic, Google) is named as such: the sluice key goes here, the gateway holds the provider's", async () => {
    const b64url = (n: number) => base62(n - 2) + '-_'
    const cases = [
      ['an OpenAI', `sk-proj-${b64url(60)}T3BlbkFJ${b64url(60)}`],
      ['an OpenAI', `sk-${base62(20)}T3BlbkFJ${base62(20)}`],
      ['an OpenAI', `sk-svcacct-${b64url(80)}`],
      ['an Anthropic', `sk-ant-api03-${b64url(93)}AA`],
      ['a Google', `AIza${b64url(35)}`],
    ] as const
    for (const [provider, key] of cases) {
      const message = await expectApiError(chat(gw.client(key)), 'invalid_api_key')
      // Before: "malformed… check for a truncated copy, quotes or spaces", which sends the holder looking for a typo.
      expect(message).toContain(`it looks like ${provider} API key`)
      expect(message).toContain('sk-<environment>-')
      expect(message).not.toContain(key)
      expect(message).not.toContain(key.slice(12, -4))
    }
    record('provider key', await expectApiError(chat(gw.client(cases[0][1])), 'invalid_api_key'))
  })

  test('well-formed but unknown', async () => {
    const unknown = 'sk-dev-' + base62(43)
    const message = await expectApiError(chat(gw.client(unknown)), 'invalid_api_key')
    expect(message).toContain('not known')
    expect(message).toContain(unknown.slice(0, 12))
    expect(message).not.toContain(unknown)
    record('unknown', message)
  })

  test("the admin key sent to /v1 is told apart: the message says /v1 takes an API key and how to make one; and an API key sent to /admin/* the other way round", async () => {
    const message = await expectApiError(chat(gw.client(ADMIN_KEY)), 'invalid_api_key')
    expect(message).toContain('admin key')
    expect(message).toContain('POST /admin/keys')
    expect(message).not.toContain(ADMIN_KEY)
    record('admin key', message)
    const { key } = await userWithKey(gw)
    const admin = await expectEnvelope(await fetch(`${gw.url}/admin/users`, { headers: { authorization: `Bearer ${key.key}` } }), 'invalid_admin_key')
    expect(admin.message).toContain('API key')
    expect(admin.message).toContain('/v1')
    expect(admin.message).toContain(key.display)
    expect(admin.message).not.toContain(key.key)
  })

  test('an x-api-key that is unknown is refused the same way', async () => {
    const res = await fetch(`${gw.url}/v1/models`, { headers: { 'x-api-key': 'sk-dev-' + base62(43) } })
    expect((await expectEnvelope(res, 'invalid_api_key')).message).toContain('not known')
  })
})

describe('key_revoked (401)', () => {
  test('revoked by an admin: the message says when and why', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client)
    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked in a log' })
    const message = await expectApiError(chat(client), 'key_revoked')
    expect(message).toContain('revoked')
    expect(message).toContain('leaked in a log')
    expect(message).toContain(key.display)
    record('revoked', message)
    // Every endpoint refuses it, introspection included.
    await expectApiError(client.get('/key'), 'key_revoked')
    await expectApiError(client.models.list(), 'key_revoked')
  })

  test('a key written into the reason (the holder told the new one) is masked: not to whoever holds the leaked key, nor in the admin views', async () => {
    const { key, userId } = await userWithKey(gw)
    const fresh = await gw.adminOk<{ key: string; display: string }>('POST', '/admin/keys', { user_id: userId })
    const reason = `leaked on GitHub; your new key is ${fresh.key}, the old one sk-prod-${base62(40)} too`
    const revoked = await gw.adminOk<{ revoked_reason: string }>('POST', `/admin/keys/${key.id}/revoke`, { reason })
    const message = await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    const audit = await gw.adminOk<{ data: Array<{ details: unknown }> }>('GET', `/admin/audit?target_id=${key.id}&action=key.revoke`)
    const shown = [message, revoked.revoked_reason, JSON.stringify(audit.data), JSON.stringify(await gw.adminOk('GET', `/admin/keys/${key.id}`))]
    for (const text of shown) {
      expect(text).not.toContain(fresh.key)
      expect(text).not.toMatch(/sk-prod-[0-9A-Za-z]{32}/)
      expect(text).toContain('leaked on GitHub; your new key is ' + fresh.display)
    }
  })

  test('revoked without a reason: the endpoint takes no body', async () => {
    const { key } = await userWithKey(gw)
    const res = await gw.admin('POST', `/admin/keys/${key.id}/revoke`)
    expect(res.status).toBe(200)
    await expectApiError(chat(gw.client(key.key)), 'key_revoked')
  })

  test('rotated: once the grace period ends the old key is refused, naming its successor', async () => {
    const { key } = await userWithKey(gw)
    await chat(gw.client(key.key))
    const rotated = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 1 })
    expect((await chat(gw.client(key.key))).object).toBe('chat.completion')
    clock.advance(1200)
    const message = await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    expect(message).toContain('rotation')
    expect(message).toContain('grace period ended')
    expect(message).toContain(rotated.start)
    record('rotated out', message)
  })

  test('rotated with the default grace of 0: the old key is refused at once, naming its successor, not "ask an admin"', async () => {
    const { key } = await userWithKey(gw)
    await chat(gw.client(key.key))
    const rotated = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, {})
    const message = await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    expect(message).toContain('rotation')
    expect(message).toContain(`Use the new key (it starts with ${rotated.start})`)
    expect(message).not.toContain('Ask an admin')
    expect(message).not.toContain(rotated.key)
    record('rotated at once', message)
    expect((await chat(gw.client(rotated.key))).object).toBe('chat.completion')
  })

  test('a rotated key revoked by an admin during its grace period still says it was revoked, with the reason', async () => {
    const { key } = await userWithKey(gw)
    await gw.adminOk('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 3600 })
    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
    const message = await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    expect(message).toContain('was revoked')
    expect(message).toContain('leaked')
  })

  test('a key revoked after its rotation sends its holder to the successor still served, not to an admin for a new key', async () => {
    const { key } = await userWithKey(gw)
    const middle = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 3600 })
    const newest = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${middle.id}/rotate`, { grace_seconds: 3600 })
    await gw.adminOk('POST', `/admin/keys/${middle.id}/revoke`, {})
    const message = await expectApiError(chat(gw.client(middle.key)), 'key_revoked')
    // Before: "Ask an admin for a new key", while the key that replaced it works.
    expect(message).toContain(`use the new key (it starts with ${newest.start})`)
    expect(message).not.toContain('Ask an admin for a new key')
    expect((await chat(gw.client(newest.key))).object).toBe('chat.completion')
  })
})

describe('Authorization header forms', () => {
  test('an empty bearer (`Authorization: Bearer `) does not hide a key sent in x-api-key', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key, { headers: { Authorization: 'Bearer ', 'x-api-key': key.key } })
    expect((await chat(client)).object).toBe('chat.completion')
    for (const authorization of ['Bearer ', 'Bearer', 'bearer   ']) {
      const res = await fetch(`${gw.url}/v1/key`, { headers: { authorization, 'x-api-key': key.key } })
      expect({ authorization, status: res.status }).toEqual({ authorization, status: 200 })
      expect(((await res.json()) as { id: string }).id).toBe(key.id)
    }
  })

  test('an empty bearer and no x-api-key is still "no key sent"', async () => {
    const res = await fetch(`${gw.url}/v1/models`, { headers: { authorization: 'Bearer ' } })
    expect((await expectEnvelope(res, 'missing_api_key')).message).toContain('No API key')
  })

  test('another form of Authorization (Token …, a bare key, Basic, a token with spaces) and no x-api-key → invalid_api_key saying to send Bearer', async () => {
    const { key } = await userWithKey(gw)
    let first: string | undefined
    for (const authorization of [`Token ${key.key}`, key.key, 'Basic YWRtaW46YWRtaW4=', `Bearer ${key.key} extra`]) {
      const res = await fetch(`${gw.url}/v1/models`, { headers: { authorization } })
      const { message } = await expectEnvelope(res, 'invalid_api_key')
      expect(message).toContain('Authorization: Bearer')
      expect(message).not.toContain(key.key)
      first ??= message
    }
    record('authorization form', first!)
  })

  test('another form of Authorization with a valid x-api-key: the x-api-key is used', async () => {
    const { key } = await userWithKey(gw)
    const res = await fetch(`${gw.url}/v1/key`, { headers: { authorization: `Token ${key.key}`, 'x-api-key': key.key } })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { id: string }).id).toBe(key.id)
  })
})

describe('key_expired (401)', () => {
  test('after expires_at', async () => {
    const { key } = await userWithKey(gw, { expires_at: clock.iso(1000) })
    const client = gw.client(key.key)
    expect((await chat(client)).object).toBe('chat.completion')
    clock.advance(1001)
    const message = await expectApiError(chat(client), 'key_expired')
    expect(message).toContain('expired')
    expect(message).toContain(key.expires_at!)
    expect(message).toContain(`PATCH /admin/keys/${key.id}`)
    record('expired', message)
  })
})

describe('invalid_user_for_key (403)', () => {
  test('owner soft-deleted', async () => {
    const { key, userId } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client)
    await gw.adminOk('DELETE', `/admin/users/${userId}`)
    const message = await expectApiError(chat(client), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain('deleted')
    expect(message).toContain(userId)
    record('owner deleted', message)
  })

  test('owner disabled', async () => {
    const { key, userId } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client)
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { disabled: true })
    const message = await expectApiError(chat(client), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain('disabled')
    record('owner disabled', message)
  })

  test("owner removed from the key's bound team", async () => {
    const { key, userId, teamId } = await userWithKey(gw, {}, { team: true })
    const client = gw.client(key.key)
    await chat(client)
    await gw.adminOk('DELETE', `/admin/teams/${teamId}/members/${userId}`)
    const message = await expectApiError(chat(client), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain(`not a member of team ${teamId}`)
    expect(message).toContain('bound')
    record('removed from bound team', message)
  })

  test("key's team deleted", async () => {
    const { key, teamId } = await userWithKey(gw, {}, { team: true })
    const client = gw.client(key.key)
    await chat(client)
    await gw.adminOk('DELETE', `/admin/teams/${teamId}`)
    const message = await expectApiError(chat(client), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain(`team ${teamId}`)
    expect(message).toContain('deleted')
    record('bound team deleted', message)
  })

  test('OpenAI-Organization naming a team the user is not in', async () => {
    const { key } = await userWithKey(gw)
    const otherTeam = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: otherTeam, name: 'Not yours' })
    const message = await expectApiError(chat(gw.client(key.key, { organization: otherTeam })), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain(otherTeam)
    expect(message).toContain('OpenAI-Organization')
    record('header team not a member', message)
    // A team that does not exist at all is refused the same way.
    await expectApiError(chat(gw.client(key.key, { organization: 'team_nonexistent' })), 'invalid_user_for_key')
    // Without the header the key works.
    expect((await chat(gw.client(key.key))).object).toBe('chat.completion')
  })

  test("OpenAI-Organization naming a team different from the key's bound team", async () => {
    const { key, userId, teamId } = await userWithKey(gw, {}, { team: true })
    const second = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: second, name: 'Second' })
    await gw.adminOk('POST', `/admin/teams/${second}/members`, { user_id: userId })
    // The user IS in the named team; the key is bound to another one.
    const message = await expectApiError(chat(gw.client(key.key, { organization: second })), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain(second)
    expect(message).toContain(`bound to team ${teamId}`)
    record('header team differs from bound team', message)
  })

  test('OpenAI-Organization naming a deleted team the user was in', async () => {
    const { key, userId } = await userWithKey(gw)
    const teamId = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Gone soon' })
    await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
    expect((await chat(gw.client(key.key, { organization: teamId }))).object).toBe('chat.completion')
    await gw.adminOk('DELETE', `/admin/teams/${teamId}`)
    const message = await expectApiError(chat(gw.client(key.key, { organization: teamId })), 'invalid_user_for_key')
    expect(message).toStartWith(INVALID_USER)
    expect(message).toContain('deleted')
    record('header team deleted', message)
  })
})

describe('environment_mismatch (403)', () => {
  test('a sk-prod-… key on a dev gateway, though no database holds it', async () => {
    const prodKey = 'sk-prod-' + base62(43)
    const message = await expectApiError(chat(gw.client(prodKey)), 'environment_mismatch')
    expect(message).toContain('"prod"')
    expect(message).toContain('"dev"')
    expect(message).not.toContain(prodKey)
    record('environment', message)
  })

  test('a prod key this gateway minted and stores is refused just the same', async () => {
    const { key } = await userWithKey(gw, { environment: 'prod' })
    expect(key.key).toStartWith('sk-prod-')
    await expectApiError(chat(gw.client(key.key)), 'environment_mismatch')
  })
})

describe('model_not_allowed (403)', () => {
  test('a model outside the key’s list', async () => {
    const { key } = await userWithKey(gw, { models: ['mock-gpt'] })
    const message = await expectApiError(chat(gw.client(key.key), 'other-gpt'), 'model_not_allowed')
    expect(message).toContain('"other-gpt"')
    expect(message).toContain('mock-gpt')
    record('model', message)
    await expectApiError(gw.client(key.key).embeddings.create({ model: 'mock-embed', input: 'x' }), 'model_not_allowed')
  })

  test("a model outside the user's list, whatever key of theirs is sent; the message names the user and the fix", async () => {
    const { key, userId } = await userWithKey(gw)
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { models: ['mock-gpt'] })
    const message = await expectApiError(chat(gw.client(key.key), 'other-gpt'), 'model_not_allowed')
    expect(message).toContain('"other-gpt"')
    expect(message).toContain(`user ${userId}`)
    expect(message).toContain(`PATCH /admin/users/${userId}`)
    expect(message).toContain(key.display)
    record('user model', message)
    expect((await chat(gw.client(key.key), 'mock-gpt')).object).toBe('chat.completion')
  })

  test("a model outside the team's list: the key's bound team, or the team OpenAI-Organization names", async () => {
    const bound = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('PATCH', `/admin/teams/${bound.teamId}`, { models: ['mock-gpt'] })
    const message = await expectApiError(chat(gw.client(bound.key.key), 'other-gpt'), 'model_not_allowed')
    expect(message).toContain(`team ${bound.teamId}`)
    expect(message).toContain(`PATCH /admin/teams/${bound.teamId}`)
    record('team model', message)
    // A key bound to no team: the team's list binds only requests that name the team.
    const { key, userId } = await userWithKey(gw)
    await gw.adminOk('POST', `/admin/teams/${bound.teamId}/members`, { user_id: userId })
    expect((await chat(gw.client(key.key), 'other-gpt')).object).toBe('chat.completion')
    await expectApiError(chat(gw.client(key.key, { organization: bound.teamId! }), 'other-gpt'), 'model_not_allowed')
  })
})

describe('insufficient_permissions (403)', () => {
  test("a key with scopes ['chat'] calling embeddings", async () => {
    const { key } = await userWithKey(gw, { scopes: ['chat'] })
    const client = gw.client(key.key)
    expect((await chat(client)).object).toBe('chat.completion')
    const message = await expectApiError(client.embeddings.create({ model: 'mock-embed', input: 'x' }), 'insufficient_permissions')
    expect(message).toContain('"embeddings"')
    expect(message).toContain('chat')
    record('scope', message)
    await expectApiError(client.models.list(), 'insufficient_permissions')
  })
})

describe('the order of the rules', () => {
  test('revoked beats expired beats a deleted owner', async () => {
    const { key, userId } = await userWithKey(gw, { expires_at: clock.iso(1000) })
    await gw.adminOk('DELETE', `/admin/users/${userId}`)
    await expectApiError(chat(gw.client(key.key)), 'invalid_user_for_key')
    clock.advance(1001)
    await expectApiError(chat(gw.client(key.key)), 'key_expired')
    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, {})
    await expectApiError(chat(gw.client(key.key)), 'key_revoked')
  })

  test('a prod key with the shortest valid secret is judged by its prefix alone', async () => {
    await expectApiError(chat(gw.client('sk-prod-' + base62(32))), 'environment_mismatch')
  })
})

describe('invalid_admin_key (401)', () => {
  const routes: Array<[string, string]> = [
    ['GET', '/admin/users'],
    ['POST', '/admin/users'],
    ['GET', '/admin/users/usr_x'],
    ['PATCH', '/admin/users/usr_x'],
    ['DELETE', '/admin/users/usr_x'],
    ['POST', '/admin/teams'],
    ['POST', '/admin/teams/team_x/members'],
    ['DELETE', '/admin/teams/team_x/members/usr_x'],
    ['GET', '/admin/keys'],
    ['POST', '/admin/keys'],
    ['GET', '/admin/keys/expiring'],
    ['GET', '/admin/keys/key_x'],
    ['PATCH', '/admin/keys/key_x'],
    ['POST', '/admin/keys/key_x/revoke'],
    ['POST', '/admin/keys/key_x/rotate'],
  ]

  test('no admin key, on every admin route', async () => {
    let first: string | undefined
    for (const [method, path] of routes) {
      const res = await fetch(gw.url + path, { method })
      const { message } = await expectEnvelope(res, 'invalid_admin_key')
      expect(message).toContain('No admin key')
      first ??= message
    }
    record('admin none', first!)
  })

  test('a wrong admin key, on every admin route', async () => {
    let first: string | undefined
    for (const [method, path] of routes) {
      const res = await fetch(gw.url + path, { method, headers: { authorization: 'Bearer not-the-admin-key' } })
      const { message } = await expectEnvelope(res, 'invalid_admin_key')
      expect(message).toContain('wrong')
      expect(message).not.toContain('not-the-admin-key')
      first ??= message
    }
    record('admin wrong', first!)
  })

  test('the admin check comes before the body: invalid JSON, wrong types, unknown fields, huge bodies', async () => {
    const bodies = ['{not json', '[]', '{"id": 5}', '{"bogus": true}', JSON.stringify({ name: 'x'.repeat(100_000) }), '']
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'Basic YWRtaW46YWRtaW4=' }] as Record<string, string>[]) {
      for (const body of bodies) {
        for (const [method, path] of [['POST', '/admin/users'], ['PATCH', '/admin/users/usr_x'], ['POST', '/admin/keys'], ['POST', '/admin/keys/key_x/rotate']] as const) {
          const res = await fetch(gw.url + path, { method, headers: { 'content-type': 'application/json', ...headers }, body })
          await expectEnvelope(res, 'invalid_admin_key')
        }
      }
    }
    // Invalid query strings too.
    await expectEnvelope(await fetch(`${gw.url}/admin/keys?limit=banana&status=nope`), 'invalid_admin_key')
    await expectEnvelope(await fetch(`${gw.url}/admin/keys/expiring?within=forever`), 'invalid_admin_key')
  })

  test('/v1 is no oracle for guesses at the admin key (which /admin/* limits per address): a wrong guess is answered as the admin key itself is, but for its masked form', async () => {
    const guess = `${ADMIN_KEY.slice(0, -1)}X`
    const right = await expectApiError(chat(gw.client(ADMIN_KEY)), 'invalid_api_key')
    const wrong = await expectApiError(chat(gw.client(guess)), 'invalid_api_key')
    expect(wrong.replace(`${guess.slice(0, 12)}…${guess.slice(-4)}`, 'KEY')).toBe(right.replace(`${ADMIN_KEY.slice(0, 12)}…${ADMIN_KEY.slice(-4)}`, 'KEY'))
  })

  test('a gateway key is not an admin key, and the admin key is not a gateway key', async () => {
    const { key } = await userWithKey(gw)
    await expectEnvelope(await fetch(`${gw.url}/admin/users`, { headers: { authorization: `Bearer ${key.key}` } }), 'invalid_admin_key')
    const message = await expectApiError(chat(gw.client(ADMIN_KEY)), 'invalid_api_key')
    expect(message).not.toContain(ADMIN_KEY)
  })

  test('the admin key is accepted in x-api-key too', async () => {
    const ok = await fetch(`${gw.url}/admin/users?limit=1`, { headers: { 'x-api-key': ADMIN_KEY } })
    expect(ok.status).toBe(200)
  })

  test('an empty bearer does not hide the admin key in x-api-key; another Authorization form is refused saying to send Bearer', async () => {
    const ok = await fetch(`${gw.url}/admin/users?limit=1`, { headers: { authorization: 'Bearer ', 'x-api-key': ADMIN_KEY } })
    expect(ok.status).toBe(200)
    const { message } = await expectEnvelope(await fetch(`${gw.url}/admin/users?limit=1`, { headers: { authorization: `Token ${ADMIN_KEY}` } }), 'invalid_admin_key')
    expect(message).toContain('Authorization: Bearer <admin key>')
    expect(message).not.toContain(ADMIN_KEY)
    record('admin authorization form', message)
  })
})

describe('on the real clock', () => {
  let realGw: AuthGateway
  beforeAll(async () => {
    realGw = await startAuthGateway(upstream.url)
  })
  afterAll(() => realGw?.close())

  test('expiry 1 s ahead and rotation grace of 1 s both end on time', async () => {
    const expiring = (await userWithKey(realGw, { expires_at: new Date(Date.now() + 1000).toISOString() })).key
    const rotating = (await userWithKey(realGw)).key
    const successor = await realGw.adminOk<CreatedKey>('POST', `/admin/keys/${rotating.id}/rotate`, { grace_seconds: 1 })
    expect((await chat(realGw.client(expiring.key))).object).toBe('chat.completion')
    expect((await chat(realGw.client(rotating.key))).object).toBe('chat.completion')
    await Bun.sleep(1200)
    await expectApiError(chat(realGw.client(expiring.key)), 'key_expired')
    await expectApiError(chat(realGw.client(rotating.key)), 'key_revoked')
    expect((await chat(realGw.client(successor.key))).object).toBe('chat.completion')
  })
})

describe('messages', () => {
  test('each distinct cause has a distinct message', () => {
    // Run last (bun runs tests of a file in order): every cause above has recorded its message.
    expect(messages.size).toBe(25)
    const byTemplate = new Map<string, string[]>()
    for (const [cause, message] of messages) {
      const t = template(message)
      byTemplate.set(t, [...(byTemplate.get(t) ?? []), cause])
    }
    const shared = [...byTemplate.values()].filter((causes) => causes.length > 1)
    expect(shared).toEqual([])
  })
})
