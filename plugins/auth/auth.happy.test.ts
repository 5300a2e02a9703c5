/**
 * Auth plugin and admin API, happy paths: an admin makes users, teams and keys; clients use
 * the keys through the official OpenAI SDK against a listening gateway. The mock upstream
 * is the only fake; time-based rules run on an injected clock.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import {
  ADMIN_KEY,
  Clock,
  chat,
  expectApiError,
  expectExpiringLeavesOutRefusedKeys,
  expectExpiringWindowsClamped,
  expectMembersPaged,
  sha256Hex,
  startAuthGateway,
  uid,
  userWithKey,
  type AuthGateway,
  type CreatedKey,
} from '../../test/support/auth.ts'

const BASE62_SECRET = /^sk-dev-[0-9A-Za-z]{32,}$/

let upstream: MockUpstream
let gw: AuthGateway
const clock = new Clock()

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startAuthGateway(upstream.url, {
    gateway: { now: clock.now },
    config: { plugins: [{ use: 'auth', options: { demo_key: false, last_used_flush_ms: 100 } }] },
  })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

interface List<T> {
  object: 'list'
  data: T[]
  next_cursor: string | null
}

describe('admin creates users, teams, members and keys', () => {
  test('user → 201 with the given id and email; GET returns it', async () => {
    const id = uid('usr')
    const res = await gw.admin('POST', '/admin/users', { id, email: `${id}@example.com`, name: 'Ada' })
    expect(res.status).toBe(201)
    const user = (await res.json()) as Record<string, unknown>
    expect(user).toMatchObject({ object: 'user', id, email: `${id}@example.com`, name: 'Ada', status: 'active', deleted_at: null })
    expect(await gw.adminOk('GET', `/admin/users/${id}`)).toEqual(user)
  })

  test('ids may hold dots, as long as not dots alone: such a user and team are read, changed and deleted by their path', async () => {
    for (const id of [`.${uid('u')}`, `${uid('u')}..`, `a.b.${uid('c')}`]) {
      await gw.adminOk('POST', '/admin/users', { id })
      expect(await gw.adminOk('GET', `/admin/users/${id}`)).toMatchObject({ id, status: 'active' })
      expect(await gw.adminOk('PATCH', `/admin/users/${id}`, { name: 'dotted' })).toMatchObject({ id, name: 'dotted' })
      await gw.adminOk('POST', '/admin/teams', { id, name: 'dotted' })
      await gw.adminOk('POST', `/admin/teams/${id}/members`, { user_id: id })
      expect((await gw.adminOk<List<{ user_id: string }>>('GET', `/admin/teams/${id}/members`)).data.map((m) => m.user_id)).toEqual([id])
      expect(await gw.adminOk('DELETE', `/admin/users/${id}`)).toMatchObject({ id, status: 'deleted' })
    }
  })

  test('user without id gets a generated usr_… id', async () => {
    const res = await gw.admin('POST', '/admin/users', {})
    expect(res.status).toBe(201)
    expect(((await res.json()) as { id: string }).id).toMatch(/^usr_[A-Za-z0-9]+$/)
  })

  test('team → 201, member → 201, members are listed', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const teamRes = await gw.admin('POST', '/admin/teams', { name: 'Platform' })
    expect(teamRes.status).toBe(201)
    const team = (await teamRes.json()) as { id: string; name: string }
    expect(team.id).toMatch(/^team_[A-Za-z0-9]+$/)
    expect(team.name).toBe('Platform')
    const member = await gw.admin('POST', `/admin/teams/${team.id}/members`, { user_id: userId })
    expect(member.status).toBe(201)
    expect(await member.json()).toMatchObject({ team_id: team.id, user_id: userId, role: 'member' })
    const members = await gw.adminOk<List<{ user_id: string }>>('GET', `/admin/teams/${team.id}/members`)
    expect(members.data.map((m) => m.user_id)).toEqual([userId])
  })

  test("a team's members are cursor paged like every other list: 5 with limit=2 come as 2, 2, 1, each once, newest first", () => expectMembersPaged(gw))

  test('GET a deleted team shows it with its deleted_at, as GET shows a deleted user; changing it stays 404', async () => {
    const teamId = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Gone' })
    clock.advance(1000)
    const deleted = await gw.adminOk<{ deleted_at: string }>('DELETE', `/admin/teams/${teamId}`)
    // The answer is the team as stored now, its updated_at the deletion's, as DELETE of a user answers.
    expect(await gw.adminOk('GET', `/admin/teams/${teamId}`)).toEqual({ ...deleted, id: teamId, name: 'Gone' })
    expect(deleted).toMatchObject({ updated_at: deleted.deleted_at })
    expect((await gw.admin('PATCH', `/admin/teams/${teamId}`, { name: 'back' })).status).toBe(404)
    expect((await gw.admin('GET', `/admin/teams/${teamId}/members`)).status).toBe(404)
    const teams = await gw.adminOk<List<{ id: string }>>('GET', '/admin/teams?limit=500')
    expect(teams.data.map((t) => t.id)).not.toContain(teamId)
  })

  test('key → 201 with the plaintext once: sk-dev- prefix, 32+ base62 secret; GET never shows it nor the hash', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const res = await gw.admin('POST', '/admin/keys', { user_id: userId, name: 'ci' })
    expect(res.status).toBe(201)
    const created = (await res.json()) as CreatedKey
    expect(created.key).toMatch(BASE62_SECRET)
    expect(created.id).toMatch(/^key_[A-Za-z0-9]+$/)
    expect(created).toMatchObject({ object: 'api_key', user_id: userId, team_id: null, name: 'ci', environment: 'dev', status: 'active' })
    expect(created.start).toBe(created.key.slice(0, 12))
    expect(created.end).toBe(created.key.slice(-4))
    expect(created.display).toBe(`${created.key.slice(0, 12)}…${created.key.slice(-4)}`)
    expect('hash' in created).toBe(false)

    const hash = sha256Hex(created.key)
    for (const path of [`/admin/keys/${created.id}`, `/admin/keys?user_id=${userId}`, '/admin/keys']) {
      const text = await (await gw.admin('GET', path)).text()
      expect(text).toContain(created.id)
      expect(text).not.toContain(created.key)
      expect(text).not.toContain(created.key.slice(12, -4))
      expect(text).not.toContain(hash)
      expect(text).not.toContain('"hash"')
      expect(text).not.toContain('"key":')
    }
  })
})

describe('clients use a key through the OpenAI SDK', () => {
  let key: CreatedKey
  beforeAll(async () => {
    key = (await userWithKey(gw)).key
  })

  test('chat completion', async () => {
    const completion = await chat(gw.client(key.key))
    expect(completion.object).toBe('chat.completion')
    expect(completion.choices[0]?.message.content).toContain('mock reply')
    // The upstream sees the provider's key, never the client's.
    expect(upstream.stats.lastHeaders?.get('authorization')).not.toContain(key.key)
  })

  test('chat completion stream', async () => {
    const stream = await gw.client(key.key).chat.completions.create({
      model: 'mock-gpt',
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
    })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(text).toContain('mock reply')
    expect(finish).toBe('stop')
  })

  test('embeddings', async () => {
    const result = await gw.client(key.key).embeddings.create({ model: 'mock-embed', input: ['a', 'b'] })
    expect(result.data).toHaveLength(2)
    expect(result.data[0]?.embedding.length).toBeGreaterThan(0)
  })

  test('models list: all configured models for a key without a models restriction', async () => {
    const ids: string[] = []
    for await (const m of gw.client(key.key).models.list()) ids.push(m.id)
    expect(ids.sort()).toEqual(['mock-embed', 'mock-gpt', 'other-gpt'])
  })

  test('x-api-key header works like Authorization: Bearer', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'x-api-key': key.key, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { object: string }).object).toBe('chat.completion')
  })

  test('last_used_at is written after use (batched)', async () => {
    const fresh = (await userWithKey(gw)).key
    await chat(gw.client(fresh.key))
    // The batch is written on an interval (100 ms here) or on close; poll for it.
    const deadline = Date.now() + 3000
    let lastUsed: string | null = null
    while (Date.now() < deadline && lastUsed === null) {
      lastUsed = (await gw.adminOk<{ last_used_at: string | null }>('GET', `/admin/keys/${fresh.id}`)).last_used_at
      if (lastUsed === null) await Bun.sleep(200)
    }
    expect(lastUsed).not.toBeNull()
  }, 15_000)
})

describe('per-key models', () => {
  test('/v1/models lists only the models the key may use; GET /v1/models/{id} agrees', async () => {
    const { key } = await userWithKey(gw, { models: ['mock-gpt', 'mock-embed'] })
    const client = gw.client(key.key)
    const ids: string[] = []
    for await (const m of client.models.list()) ids.push(m.id)
    expect(ids.sort()).toEqual(['mock-embed', 'mock-gpt'])
    expect((await client.models.retrieve('mock-gpt')).id).toBe('mock-gpt')
    // A model the key may not use is as invisible as one that does not exist.
    const message = await expectApiError(client.models.retrieve('other-gpt'), 'model_not_found')
    expect(message).toContain('other-gpt')
    // And it can use the allowed one.
    expect((await chat(client)).object).toBe('chat.completion')
  })
})

describe("the user's and the team's models", () => {
  test('a key may use what its own list, its owner\'s and its team\'s all allow: /v1/models, GET /v1/key and the admin views agree', async () => {
    const { key, userId, teamId } = await userWithKey(gw, { models: ['mock-gpt', 'other-gpt', 'mock-embed'] }, { team: true })
    const user = await gw.adminOk('PATCH', `/admin/users/${userId}`, { models: ['mock-gpt', 'other-gpt'] })
    expect(user).toMatchObject({ models: ['mock-gpt', 'other-gpt'] })
    const team = await gw.adminOk('PATCH', `/admin/teams/${teamId}`, { models: ['other-gpt', 'mock-embed'] })
    expect(team).toMatchObject({ models: ['other-gpt', 'mock-embed'] })
    const client = gw.client(key.key)
    const ids: string[] = []
    for await (const m of client.models.list()) ids.push(m.id)
    expect(ids).toEqual(['other-gpt'])
    expect((await client.get<{ models: string[] }>('/key')).models).toEqual(['other-gpt'])
    expect((await chat(client, 'other-gpt')).object).toBe('chat.completion')
    // Lifted again (null: every model), at once.
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { models: null })
    await gw.adminOk('PATCH', `/admin/teams/${teamId}`, { models: null })
    expect((await client.get<{ models: string[] }>('/key')).models).toEqual(['mock-gpt', 'other-gpt', 'mock-embed'])
    expect((await chat(client, 'mock-gpt')).object).toBe('chat.completion')
    // Set at creation too.
    const created = await gw.adminOk('POST', '/admin/users', { id: uid('usr'), models: ['mock-gpt'] })
    expect(created).toMatchObject({ models: ['mock-gpt'] })
    expect(await gw.adminOk('POST', '/admin/teams', { id: uid('team'), name: 'models', models: [] })).toMatchObject({ models: [] })
  })
})

describe('GET /v1/key', () => {
  test('returns every DESIGN field for the calling key', async () => {
    const expiresAt = clock.iso(10 * 86_400_000)
    const { key, userId } = await userWithKey(gw, {
      name: 'introspect-me',
      models: ['mock-gpt'],
      scopes: ['chat', 'models'],
      limits: { rpm: 60, tpm: 10_000 },
      budget: { usd: 5, period: 'month' },
      expires_at: expiresAt,
    })
    const info = await gw.client(key.key).get<Record<string, unknown>>('/key')
    for (const field of ['id', 'name', 'environment', 'status', 'user_id', 'team_id', 'models', 'scopes', 'limits', 'budget', 'expires_at', 'remaining']) {
      expect(info).toHaveProperty(field)
    }
    expect(info).toMatchObject({
      id: key.id,
      name: 'introspect-me',
      environment: 'dev',
      status: 'active',
      user_id: userId,
      team_id: null,
      models: ['mock-gpt'],
      scopes: ['chat', 'models'],
      limits: { rpm: 60, tpm: 10_000 },
      budget: { usd: 5, period: 'month' },
      expires_at: expiresAt,
    })
    expect(info.remaining).toEqual({ requests: null, tokens: null, budget_tokens: null, budget_usd: null })
    expect(JSON.stringify(info)).not.toContain(key.key)
  })

  test('a key may introspect itself even without any scope for model endpoints', async () => {
    const { key } = await userWithKey(gw, { scopes: ['embeddings'] })
    expect((await gw.client(key.key).get<{ id: string }>('/key')).id).toBe(key.id)
  })
})

describe('teams', () => {
  test('OpenAI-Organization naming a team of the key owner is accepted and sets team_id', async () => {
    const { key, userId } = await userWithKey(gw)
    const teamId = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Billing' })
    await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
    const client = gw.client(key.key, { organization: teamId })
    expect((await chat(client)).object).toBe('chat.completion')
    // The header names a sluice team; it is not the upstream's business.
    expect(upstream.stats.lastHeaders?.get('openai-organization') ?? null).toBeNull()
    const info = await client.get<{ team_id: string | null }>('/key')
    expect(info.team_id).toBe(teamId)
    // Without the header the key has no team.
    expect((await gw.client(key.key).get<{ team_id: string | null }>('/key')).team_id).toBeNull()
  })

  test('a key bound to a team reports it, and the same team in OpenAI-Organization is accepted', async () => {
    const { key, teamId } = await userWithKey(gw, {}, { team: true })
    expect(key.team_id).toBe(teamId)
    const info = await gw.client(key.key, { organization: teamId! }).get<{ team_id: string | null }>('/key')
    expect(info.team_id).toBe(teamId)
    expect((await gw.client(key.key).get<{ team_id: string | null }>('/key')).team_id).toBe(teamId)
  })
})

describe('rotation', () => {
  test('with grace: old and new keys both work during the grace period; old is refused after it', async () => {
    const { key } = await userWithKey(gw, { name: 'rotating' })
    await chat(gw.client(key.key)) // warm the cache with the old record
    const res = await gw.admin('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 60 })
    expect(res.status).toBe(201)
    const rotated = (await res.json()) as CreatedKey & { previous: Record<string, unknown> }
    expect(rotated.key).toMatch(BASE62_SECRET)
    expect(rotated.key).not.toBe(key.key)
    expect(rotated).toMatchObject({ rotated_from: key.id, name: 'rotating', status: 'active' })
    expect(rotated.previous).toMatchObject({ id: key.id, rotated_to: rotated.id, status: 'active', grace_until: clock.iso(60_000) })

    expect((await chat(gw.client(key.key))).object).toBe('chat.completion')
    expect((await chat(gw.client(rotated.key))).object).toBe('chat.completion')
    expect((await gw.client(key.key).get<{ status: string }>('/key')).status).toBe('rotating')

    clock.advance(61_000)
    const message = await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    expect(message).toContain('rotation')
    expect(message).toContain(rotated.start)
    expect((await chat(gw.client(rotated.key))).object).toBe('chat.completion')
    expect(await gw.adminOk('GET', `/admin/keys/${key.id}`)).toMatchObject({ status: 'revoked' })
  })

  test('a key rotated with grace reports, once the grace is over, when and why it stopped, as one rotated without grace does', async () => {
    const { key, userId } = await userWithKey(gw)
    const rotated = await gw.adminOk<CreatedKey & { previous: Record<string, unknown> }>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 60 })
    const graceUntil = clock.iso(60_000)
    // In its grace period it is active: nothing stopped it yet.
    expect(rotated.previous).toMatchObject({ status: 'active', revoked_at: null, revoked_reason: null, grace_until: graceUntil })
    clock.advance(60_000)
    const stopped = { id: key.id, status: 'revoked', revoked_at: graceUntil, revoked_reason: 'rotated', rotated_to: rotated.id, grace_until: graceUntil }
    expect(await gw.adminOk('GET', `/admin/keys/${key.id}`)).toMatchObject(stopped)
    const listed = await gw.adminOk<List<Record<string, unknown>>>('GET', `/admin/keys?user_id=${userId}&status=revoked`)
    expect(listed.data).toEqual([expect.objectContaining(stopped)])

    // Without grace the same fields were stored at rotation: the two read alike.
    const { key: atOnce } = await userWithKey(gw)
    const successor = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${atOnce.id}/rotate`, {})
    expect(await gw.adminOk('GET', `/admin/keys/${atOnce.id}`)).toMatchObject({ status: 'revoked', revoked_at: clock.iso(), revoked_reason: 'rotated', rotated_to: successor.id })
  })

  test('a key revoked by an admin during its grace period keeps that revocation, after the grace too', async () => {
    const { key } = await userWithKey(gw)
    await gw.adminOk('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 60 })
    const revokedAt = clock.iso()
    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
    clock.advance(61_000)
    expect(await gw.adminOk('GET', `/admin/keys/${key.id}`)).toMatchObject({ status: 'revoked', revoked_at: revokedAt, revoked_reason: 'leaked' })
  })

  test('every key of a rotation chain names the first one as its lineage_id (whose limits and budget they share)', async () => {
    const { key } = await userWithKey(gw, { limits: { rpm: 100 } })
    expect(await gw.adminOk('GET', `/admin/keys/${key.id}`)).toMatchObject({ lineage_id: key.id })
    const second = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 60 })
    const third = await gw.adminOk<CreatedKey & { previous: Record<string, unknown> }>('POST', `/admin/keys/${second.id}/rotate`, { grace_seconds: 60 })
    expect(second).toMatchObject({ rotated_from: key.id, lineage_id: key.id, limits: { rpm: 100 } })
    expect(third).toMatchObject({ rotated_from: second.id, lineage_id: key.id, limits: { rpm: 100 } })
    expect(third.previous).toMatchObject({ id: second.id, lineage_id: key.id })
    // Client-facing, each key is still itself.
    expect((await gw.client(third.key).get<{ id: string }>('/key')).id).toBe(third.id)
  })

  test('rotating a key again ends the grace of the keys it replaced no later than its own: no older secret outlives a newer one', async () => {
    const { key: first } = await userWithKey(gw)
    const second = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${first.id}/rotate`, { grace_seconds: 600 })
    await chat(gw.client(first.key))
    // The second key rotated with a shorter grace: the first, in a grace of 600 s, stops with it.
    const third = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${second.id}/rotate`, { grace_seconds: 60 })
    expect(await gw.adminOk('GET', `/admin/keys/${first.id}`)).toMatchObject({ status: 'active', grace_until: clock.iso(60_000) })
    clock.advance(60_000)
    for (const old of [first, second]) {
      const message = await expectApiError(chat(gw.client(old.key)), 'key_revoked')
      expect(message).toContain('grace period ended')
    }
    expect(await gw.adminOk('GET', `/admin/keys/${first.id}`)).toMatchObject({ status: 'revoked', revoked_reason: 'rotated', grace_until: clock.iso() })
    expect((await chat(gw.client(third.key))).object).toBe('chat.completion')

    // Without grace the rotated key is revoked at once, and so is the one it replaced, as a revoke
    // of it would: before, the older key went on working for the rest of its 600 s.
    const { key: a } = await userWithKey(gw)
    const b = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${a.id}/rotate`, { grace_seconds: 600 })
    await chat(gw.client(a.key))
    const c = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${b.id}/rotate`, {})
    await expectApiError(chat(gw.client(b.key)), 'key_revoked')
    // Not sent on to b, refused itself: told that its successor was replaced in turn.
    const told = await expectApiError(chat(gw.client(a.key)), 'key_revoked')
    expect(told).not.toContain(`Use the new key (it starts with ${b.start})`)
    expect(told).toContain(`replaced it (it starts with ${b.start}) was itself replaced or revoked`)
    expect(await gw.adminOk('GET', `/admin/keys/${a.id}`)).toMatchObject({ status: 'revoked' })
    expect((await chat(gw.client(c.key))).object).toBe('chat.completion')
    const audit = await gw.db.selectFrom('audit_log').select('details').where('action', '=', 'key.rotate').where('target_id', '=', b.id).executeTakeFirstOrThrow()
    expect(JSON.parse(audit.details ?? '{}')).toMatchObject({ new_key_id: c.id, grace_seconds: 0, also_ended: [a.id] })

    // A longer grace leaves a shorter one as it was.
    const { key: x } = await userWithKey(gw)
    const y = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${x.id}/rotate`, { grace_seconds: 30 })
    await gw.adminOk('POST', `/admin/keys/${y.id}/rotate`, { grace_seconds: 600 })
    expect(await gw.adminOk('GET', `/admin/keys/${x.id}`)).toMatchObject({ status: 'active', grace_until: clock.iso(30_000) })
  })

  test('models, scopes and expiry changed on a key reach the keys it replaced while they are served: the old key escapes no narrowing', async () => {
    const { key: old } = await userWithKey(gw, { name: 'first' })
    const fresh = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 600 })
    await chat(gw.client(old.key))
    // Narrowed on the new key: before, the old key went on using every model for the rest of its grace.
    await gw.adminOk('PATCH', `/admin/keys/${fresh.id}`, { models: ['other-gpt'], name: 'second' })
    expect(await expectApiError(chat(gw.client(old.key)), 'model_not_allowed')).toContain('other-gpt')
    expect((await gw.client(old.key).get<{ models: string[] }>('/key')).models).toEqual(['other-gpt'])
    expect(await gw.adminOk('GET', `/admin/keys/${old.id}`)).toMatchObject({ name: 'first', models: ['other-gpt'] })
    await gw.adminOk('PATCH', `/admin/keys/${fresh.id}`, { scopes: ['embeddings'] })
    await expectApiError(gw.client(old.key).models.list(), 'insufficient_permissions')
    // Named on the old key, it stays the old key's: an operator may end or narrow it alone.
    await gw.adminOk('PATCH', `/admin/keys/${old.id}`, { scopes: ['chat'] })
    expect(await gw.adminOk('GET', `/admin/keys/${fresh.id}`)).toMatchObject({ scopes: ['embeddings'] })
    await gw.adminOk('PATCH', `/admin/keys/${old.id}`, { scopes: ['embeddings'] })
    const soon = clock.iso(60_000)
    await gw.adminOk('PATCH', `/admin/keys/${fresh.id}`, { expires_at: soon })
    expect(await gw.adminOk('GET', `/admin/keys/${old.id}`)).toMatchObject({ expires_at: soon })
    clock.advance(60_000)
    await expectApiError(gw.client(old.key).embeddings.create({ model: 'other-gpt', input: 'x' }), 'key_expired')
  })

  test('without grace: the old key stops at once', async () => {
    const { key } = await userWithKey(gw)
    await chat(gw.client(key.key))
    const rotated = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, {})
    await expectApiError(chat(gw.client(key.key)), 'key_revoked')
    expect((await chat(gw.client(rotated.key))).object).toBe('chat.completion')
  })
})

describe('listing keys', () => {
  test('GET /admin/keys/expiring?within=7d lists a key expiring in 2 days, not one in 30 days', async () => {
    const soon = (await userWithKey(gw, { expires_at: clock.iso(2 * 86_400_000) })).key
    const later = (await userWithKey(gw, { expires_at: clock.iso(30 * 86_400_000) })).key
    const never = (await userWithKey(gw)).key
    const list = await gw.adminOk<List<{ id: string }>>('GET', '/admin/keys/expiring?within=7d')
    const ids = list.data.map((k) => k.id)
    expect(ids).toContain(soon.id)
    expect(ids).not.toContain(later.id)
    expect(ids).not.toContain(never.id)
    expect((await gw.adminOk<List<{ id: string }>>('GET', '/admin/keys/expiring?within=31d')).data.map((k) => k.id)).toContain(later.id)
    // The default window is 7 days.
    expect((await gw.adminOk<List<{ id: string }>>('GET', '/admin/keys/expiring')).data.map((k) => k.id)).toContain(soon.id)
  })

  test('expiring: a wider window never lists fewer keys, up to ones that expire at the last time stored (9999-12-31T23:59:59.999Z)', () =>
    expectExpiringWindowsClamped(gw, clock.now()))

  test('expiring leaves out keys refused for their owner or team: owner deleted or disabled, bound team deleted or left', () =>
    expectExpiringLeavesOutRefusedKeys(gw, clock.now()))

  test('filters by user_id and by status active | revoked | expired', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const mk = (body: Record<string, unknown> = {}) => gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId, ...body })
    const active = await mk()
    const revoked = await mk()
    await gw.adminOk('POST', `/admin/keys/${revoked.id}/revoke`, { reason: 'leaked' })
    const expiring = await mk({ expires_at: clock.iso(1000) })
    const rotatedOut = await mk()
    const successor = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${rotatedOut.id}/rotate`, { grace_seconds: 1 })
    clock.advance(2000)

    const ids = async (query: string) =>
      (await gw.adminOk<List<{ id: string }>>('GET', `/admin/keys?user_id=${userId}${query}`)).data.map((k) => k.id).sort()
    expect(await ids('')).toEqual([active.id, revoked.id, expiring.id, rotatedOut.id, successor.id].sort())
    expect(await ids('&status=active')).toEqual([active.id, successor.id].sort())
    expect(await ids('&status=revoked')).toEqual([revoked.id, rotatedOut.id].sort())
    expect(await ids('&status=expired')).toEqual([expiring.id])

    // Another user's keys are not listed under this one.
    const other = await userWithKey(gw)
    expect(await ids('')).not.toContain(other.key.id)
    expect((await gw.adminOk<List<{ id: string }>>('GET', `/admin/keys?user_id=${other.userId}`)).data.map((k) => k.id)).toEqual([other.key.id])
  })

  test('expiring leaves out a rotated key past its grace (its successor, with the same expiry, is listed); a key still in its grace stays', async () => {
    const inWindow = clock.iso(2 * 86_400_000)
    const rotatedOut = (await userWithKey(gw, { expires_at: inWindow })).key
    const successor = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${rotatedOut.id}/rotate`, { grace_seconds: 1 })
    const rotating = (await userWithKey(gw, { expires_at: inWindow })).key
    await gw.adminOk('POST', `/admin/keys/${rotating.id}/rotate`, { grace_seconds: 3600 })
    const rotatedAtOnce = (await userWithKey(gw, { expires_at: inWindow })).key
    await gw.adminOk('POST', `/admin/keys/${rotatedAtOnce.id}/rotate`, {})
    clock.advance(2000)
    const listed = new Map<string, string>()
    let cursor: string | null = null
    do {
      const page: List<{ id: string; status: string }> = await gw.adminOk('GET', `/admin/keys/expiring?limit=500${cursor ? `&cursor=${cursor}` : ''}`)
      for (const k of page.data) listed.set(k.id, k.status)
      cursor = page.next_cursor
    } while (cursor !== null)
    expect(listed.has(rotatedOut.id)).toBe(false)
    expect(listed.has(rotatedAtOnce.id)).toBe(false)
    expect(listed.get(successor.id)).toBe('active')
    expect(listed.get(rotating.id)).toBe('active')
    // Everything listed is active, as the route says.
    expect(new Set(listed.values())).toEqual(new Set(['active']))
  })

  test('status=expired leaves out a rotated key past its grace: it is revoked, as its own status says', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const key = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId, expires_at: clock.iso(3000) })
    const successor = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 1 })
    clock.advance(4000)
    const listed = async (status: string) =>
      (await gw.adminOk<List<{ id: string; status: string }>>('GET', `/admin/keys?user_id=${userId}&status=${status}`)).data.map((k) => [k.id, k.status])
    expect(await listed('expired')).toEqual([[successor.id, 'expired']])
    expect(await listed('revoked')).toEqual([[key.id, 'revoked']])
  })

  test('expiring is cursor paged, soonest first: 5 keys with limit=2 come as 2, 2, 1 among the rest, each once, in expiry order', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const made: string[] = []
    // Two share an expiry: the id breaks the tie.
    for (const hours of [5, 1, 3, 3, 2]) {
      made.push((await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId, expires_at: clock.iso(hours * 3_600_000) })).id)
    }
    const pages: Array<Array<{ id: string; expires_at: string }>> = []
    let cursor: string | null = null
    do {
      const page: List<{ id: string; expires_at: string }> = await gw.adminOk('GET', `/admin/keys/expiring?within=1d&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      pages.push(page.data)
      cursor = page.next_cursor
    } while (cursor !== null && pages.length < 1000)
    const all = pages.flat()
    expect(pages.slice(0, -1).every((p) => p.length === 2)).toBe(true)
    expect(new Set(all.map((k) => k.id)).size).toBe(all.length)
    const order = all.map((k) => [k.expires_at, k.id].join(' '))
    expect(order).toEqual([...order].sort())
    const mine = all.map((k) => k.id).filter((id) => made.includes(id))
    const expected = [made[1]!, made[4]!, ...[made[2]!, made[3]!].sort(), made[0]!]
    expect(mine).toEqual(expected)
  })

  test('filters by team_id', async () => {
    const { key, teamId, userId } = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('POST', '/admin/keys', { user_id: userId }) // same user, no team
    const list = await gw.adminOk<List<{ id: string }>>('GET', `/admin/keys?team_id=${teamId}`)
    expect(list.data.map((k) => k.id)).toEqual([key.id])
  })

  test('cursor paging: 5 keys with limit=2 come as 2, 2, 1, each once, newest first', async () => {
    const userId = uid('usr')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    const made: string[] = []
    // Same clock for all five: created_at ties, and the id breaks them.
    for (let i = 0; i < 5; i++) made.push((await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId })).id)
    const pages: string[][] = []
    let cursor: string | null = null
    do {
      const query: string = `/admin/keys?user_id=${userId}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const page: List<{ id: string }> = await gw.adminOk<List<{ id: string }>>('GET', query)
      pages.push(page.data.map((k) => k.id))
      cursor = page.next_cursor
    } while (cursor !== null && pages.length < 10)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    const seen = pages.flat()
    expect(new Set(seen).size).toBe(5)
    expect([...seen].sort()).toEqual([...made].sort())
    // Newest first; equal times fall back to id order, descending.
    expect(seen).toEqual([...made].sort().reverse())
  })

  test('cursor paging over users and teams too', async () => {
    for (let i = 0; i < 3; i++) await gw.adminOk('POST', '/admin/teams', { name: `paged ${i}` })
    const first = await gw.adminOk<List<{ id: string }>>('GET', '/admin/teams?limit=2')
    expect(first.data).toHaveLength(2)
    expect(first.next_cursor).not.toBeNull()
    const second = await gw.adminOk<List<{ id: string }>>('GET', `/admin/teams?limit=2&cursor=${first.next_cursor}`)
    expect(second.data.map((t) => t.id)).not.toContain(first.data[0]!.id)
    const users = await gw.adminOk<List<{ id: string }>>('GET', '/admin/users?limit=1')
    expect(users.data).toHaveLength(1)
    expect(users.next_cursor).not.toBeNull()
  })
})

describe('changes', () => {
  test('PATCH a key: models, scopes, name and expires_at take effect at once', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client, 'other-gpt')
    const patched = await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { models: ['mock-gpt'], name: 'narrowed' })
    expect(patched).toMatchObject({ models: ['mock-gpt'], name: 'narrowed' })
    await expectApiError(chat(client, 'other-gpt'), 'model_not_allowed')
    expect((await chat(client, 'mock-gpt')).object).toBe('chat.completion')
    await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { models: null })
    expect((await chat(client, 'other-gpt')).object).toBe('chat.completion')

    await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { scopes: ['embeddings'] })
    await expectApiError(chat(client), 'insufficient_permissions')
    expect((await client.embeddings.create({ model: 'mock-embed', input: 'x' })).data).toHaveLength(1)
    await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { scopes: null })

    // An expiry in the past is how an admin ends a key now; a later one brings it back.
    await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { expires_at: clock.iso(-1000) })
    await expectApiError(chat(client), 'key_expired')
    const extended = clock.iso(86_400_000)
    expect(await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { expires_at: extended })).toMatchObject({ expires_at: extended, status: 'active' })
    expect((await chat(client)).object).toBe('chat.completion')
  })

  test('PATCH replaces limits and budget whole, on a key, a user and a team, as the documentation says', async () => {
    const { key, userId, teamId } = await userWithKey(gw, { limits: { rpm: 5, tpm: 1000 }, budget: { tokens: 100, usd: 1, period: 'day' } }, { team: true })
    for (const path of [`/admin/keys/${key.id}`, `/admin/users/${userId}`, `/admin/teams/${teamId}`]) {
      await gw.adminOk('PATCH', path, { limits: { rpm: 5, tpm: 1000 }, budget: { tokens: 100, usd: 1, period: 'day' } })
      expect(await gw.adminOk('PATCH', path, { limits: { rpm: 7 }, budget: { usd: 5, period: 'month' } })).toMatchObject({ limits: { rpm: 7 }, budget: { usd: 5, period: 'month' } })
      const after = await gw.adminOk<{ limits: Record<string, unknown>; budget: Record<string, unknown> }>('GET', path)
      expect({ limits: after.limits, budget: after.budget }).toEqual({ limits: { rpm: 7 }, budget: { usd: 5, period: 'month' } })
    }
  })

  test('PATCH a user disabled → refused; enabled again → accepted', async () => {
    const { key, userId } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client)
    expect(await gw.adminOk('PATCH', `/admin/users/${userId}`, { disabled: true })).toMatchObject({ status: 'disabled' })
    await expectApiError(chat(client), 'invalid_user_for_key')
    expect(await gw.adminOk('PATCH', `/admin/users/${userId}`, { disabled: false })).toMatchObject({ status: 'active', disabled_at: null })
    expect((await chat(client)).object).toBe('chat.completion')
  })

  test('DELETE a user is a soft delete: GET shows it as deleted and its keys stay', async () => {
    const { key, userId } = await userWithKey(gw)
    const deleted = await gw.adminOk('DELETE', `/admin/users/${userId}`)
    expect(deleted).toMatchObject({ id: userId, status: 'deleted' })
    expect(await gw.adminOk('GET', `/admin/users/${userId}`)).toMatchObject({ status: 'deleted' })
    expect(await gw.adminOk('GET', `/admin/keys/${key.id}`)).toMatchObject({ id: key.id, user_id: userId })
    const users = await gw.adminOk<List<{ id: string }>>('GET', '/admin/users?limit=500')
    expect(users.data.map((u) => u.id)).not.toContain(userId)
  })
})

describe('the admin documentation (/swagger/json)', () => {
  interface Property {
    description?: string
  }
  interface Doc {
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, Property> } }> } }>>
  }
  const fields = async (path: string, method: string): Promise<Record<string, Property>> => {
    const doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as Doc
    return doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema.properties ?? {}
  }

  test('user_id and team_id that name an existing user or team are described as such, not as ids generated when omitted', async () => {
    const key = await fields('/admin/keys', 'post')
    const member = await fields('/admin/teams/{id}/members', 'post')
    for (const [where, field, kind] of [['POST /admin/keys', key.user_id, 'user'], ['POST /admin/keys', key.team_id, 'team'], ['POST /admin/teams/{id}/members', member.user_id, 'user']] as const) {
      const description = field?.description ?? ''
      expect({ where, kind, description, generated: description.includes('generated') }).toEqual({ where, kind, description: expect.stringContaining(`existing ${kind}`), generated: false })
    }
    // Where an id is the new row's own, it is generated when left out.
    expect((await fields('/admin/users', 'post')).id?.description).toContain('usr_… generated when omitted')
    expect((await fields('/admin/teams', 'post')).id?.description).toContain('team_… generated when omitted')
  })

  test('PATCH of a key, user or team says that limits and budget replace the whole object', async () => {
    for (const path of ['/admin/keys/{id}', '/admin/users/{id}', '/admin/teams/{id}']) {
      const patch = await fields(path, 'patch')
      expect({ path, limits: patch.limits?.description, budget: patch.budget?.description }).toEqual({
        path,
        limits: expect.stringContaining('Replaces the whole limits object'),
        budget: expect.stringContaining('Replaces the whole budget'),
      })
    }
  })
})

describe('audit log', () => {
  test('every admin action writes a row naming its target, and no secret', async () => {
    const userId = uid('usr')
    const teamId = uid('team')
    await gw.adminOk('POST', '/admin/users', { id: userId })
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { name: 'Renamed' })
    await gw.adminOk('POST', '/admin/teams', { id: teamId, name: 'Audited' })
    await gw.adminOk('PATCH', `/admin/teams/${teamId}`, { name: 'Audited 2' })
    await gw.adminOk('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
    const key = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: userId, team_id: teamId })
    await gw.adminOk('PATCH', `/admin/keys/${key.id}`, { name: 'x' })
    const rotated = await gw.adminOk<CreatedKey>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 10 })
    await gw.adminOk('POST', `/admin/keys/${rotated.id}/revoke`, { reason: 'test' })
    await gw.adminOk('DELETE', `/admin/teams/${teamId}/members/${userId}`)
    await gw.adminOk('DELETE', `/admin/teams/${teamId}`)
    await gw.adminOk('DELETE', `/admin/users/${userId}`)

    const rows = await gw.db
      .selectFrom('audit_log')
      .selectAll()
      .where('target_id', 'in', [userId, teamId, key.id, rotated.id])
      .execute()
    const actions = rows.map((r) => `${r.action} ${r.target_type}:${r.target_id}`).sort()
    expect(actions).toEqual(
      [
        `user.create user:${userId}`,
        `user.update user:${userId}`,
        `team.create team:${teamId}`,
        `team.update team:${teamId}`,
        `team.member.add team:${teamId}`,
        `key.create key:${key.id}`,
        `key.update key:${key.id}`,
        `key.rotate key:${key.id}`,
        `key.revoke key:${rotated.id}`,
        `team.member.remove team:${teamId}`,
        `team.delete team:${teamId}`,
        `user.delete user:${userId}`,
      ].sort(),
    )
    for (const row of rows) {
      expect(row.actor).toBe('admin')
      expect(Number.isNaN(Date.parse(row.at))).toBe(false)
      const text = JSON.stringify(row)
      expect(text).not.toContain(key.key)
      expect(text).not.toContain(rotated.key)
      expect(text).not.toContain(ADMIN_KEY)
    }
    const rotate = rows.find((r) => r.action === 'key.rotate')!
    expect(JSON.parse(rotate.details!)).toMatchObject({ new_key_id: rotated.id, grace_seconds: 10 })
  })

  test('reads write no audit rows', async () => {
    const before = await gw.db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    await gw.adminOk('GET', '/admin/users')
    await gw.adminOk('GET', '/admin/keys')
    await gw.adminOk('GET', '/admin/keys/expiring')
    const after = await gw.db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    expect(Number(after.n)).toBe(Number(before.n))
  })
})
