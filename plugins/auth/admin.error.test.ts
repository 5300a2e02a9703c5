/**
 * Admin API, bad input: every refusal is the error envelope with the right status, and the
 * database is exactly as it was before (every table dumped and compared).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import {
  ADMIN_KEY,
  countRows,
  dumpDatabase,
  expectEnvelope,
  startAuthGateway,
  uid,
  userWithKey,
  type AuthErrorCode,
  type AuthGateway,
  type CreatedKey,
} from '../../test/support/auth.ts'

let upstream: MockUpstream
let gw: AuthGateway

/** A user in a team, a user outside it, a key, a revoked key: the fixtures the refusals aim at. */
const fx = {
  user: uid('usr'),
  email: `${uid('mail')}@example.com`,
  outsider: uid('usr'),
  disabled: uid('usr'),
  deleted: uid('usr'),
  team: uid('team'),
  otherTeam: uid('team'),
  deletedTeam: uid('team'),
  key: undefined as unknown as CreatedKey,
  revoked: undefined as unknown as CreatedKey,
  rotated: undefined as unknown as CreatedKey,
}

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startAuthGateway(upstream.url)
  await gw.adminOk('POST', '/admin/users', { id: fx.user, email: fx.email })
  await gw.adminOk('POST', '/admin/users', { id: fx.outsider })
  await gw.adminOk('POST', '/admin/users', { id: fx.disabled })
  await gw.adminOk('PATCH', `/admin/users/${fx.disabled}`, { disabled: true })
  await gw.adminOk('POST', '/admin/users', { id: fx.deleted })
  await gw.adminOk('DELETE', `/admin/users/${fx.deleted}`)
  await gw.adminOk('POST', '/admin/teams', { id: fx.team, name: 'Team' })
  await gw.adminOk('POST', '/admin/teams', { id: fx.otherTeam, name: 'Other' })
  await gw.adminOk('POST', '/admin/teams', { id: fx.deletedTeam, name: 'Deleted' })
  await gw.adminOk('DELETE', `/admin/teams/${fx.deletedTeam}`)
  await gw.adminOk('POST', `/admin/teams/${fx.team}/members`, { user_id: fx.user })
  fx.key = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: fx.user, team_id: fx.team })
  fx.revoked = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: fx.user })
  await gw.adminOk('POST', `/admin/keys/${fx.revoked.id}/revoke`, { reason: 'test' })
  const original = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: fx.user })
  await gw.adminOk('POST', `/admin/keys/${original.id}/rotate`, { grace_seconds: 3600 })
  fx.rotated = original
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

/**
 * Send a request that must be refused with `code`, and check that no row of any table
 * changed. Returns the envelope's message and param.
 */
async function refused(method: string, path: string, body: unknown, code: AuthErrorCode) {
  const before = await dumpDatabase(gw.db)
  const res = await gw.admin(method, path, body)
  const error = await expectEnvelope(res, code)
  expect(await dumpDatabase(gw.db)).toBe(before)
  return error
}

describe('wrong types → 400 invalid_request naming the field', () => {
  const cases: Array<[string, string, unknown, string]> = [
    ['POST', '/admin/users', { id: 5 }, 'id'],
    ['POST', '/admin/users', { email: 7 }, 'email'],
    ['POST', '/admin/users', { name: true }, 'name'],
    ['POST', '/admin/users', { limits: { rpm: 'many' } }, 'limits.rpm'],
    ['POST', '/admin/users', { budget: { usd: 5, period: 'fortnight' } }, 'budget.period'],
    ['POST', '/admin/teams', { name: 1 }, 'name'],
    ['POST', '/admin/teams', {}, 'name'],
    ['POST', '/admin/keys', {}, 'user_id'],
    ['POST', '/admin/keys', { user_id: ['a'] }, 'user_id'],
    ['POST', '/admin/keys', { user_id: fx.user, models: 'mock-gpt' }, 'models'],
    ['POST', '/admin/keys', { user_id: fx.user, scopes: ['admin'] }, 'scopes[0]'],
    ['POST', '/admin/keys', { user_id: fx.user, environment: 'Prod!' }, 'environment'],
    ['POST', '/admin/keys', { user_id: fx.user, expires_at: 1_900_000_000 }, 'expires_at'],
    ['PATCH', `/admin/users/${fx.user}`, { disabled: 'yes' }, 'disabled'],
    ['POST', `/admin/teams/${fx.team}/members`, { user_id: fx.outsider, role: 'owner' }, 'role'],
  ]
  for (const [method, path, body, param] of cases) {
    test(`${method} ${path.replace(/_[a-z0-9]+/g, '_…')} ${JSON.stringify(body).slice(0, 60)}`, async () => {
      const error = await refused(method, path, body, 'invalid_request')
      expect(error.param ?? '').toStartWith(param.split(/[.[]/)[0]!)
    })
  }

  test('keys by id: PATCH, rotate with wrong types', async () => {
    await refused('PATCH', `/admin/keys/${fx.key.id}`, { models: [1, 2] }, 'invalid_request')
    await refused('PATCH', `/admin/keys/${fx.key.id}`, { scopes: 'chat' }, 'invalid_request')
    await refused('POST', `/admin/keys/${fx.key.id}/rotate`, { grace_seconds: '60' }, 'invalid_request')
    await refused('POST', `/admin/keys/${fx.key.id}/rotate`, { grace_seconds: -1 }, 'invalid_request')
    await refused('POST', `/admin/keys/${fx.key.id}/rotate`, { grace_seconds: 1.5 }, 'invalid_request')
    await refused('POST', `/admin/keys/${fx.key.id}/revoke`, { reason: 42 }, 'invalid_request')
  })

  test('a field of several allowed shapes is refused naming them, not with "Expected union value"', async () => {
    const role = await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: fx.outsider, role: 'owner' }, 'invalid_request')
    expect(role.message).toBe(`Invalid value for "role": Expected 'member' or 'admin' or null.`)
    const expiry = await refused('POST', '/admin/keys', { user_id: fx.user, expires_at: 5 }, 'invalid_request')
    expect(expiry.message).toBe('Invalid value for "expires_at": Expected string or null.')
  })

  test('bodies that are not JSON objects', async () => {
    for (const body of ['{broken', '[]', '"a string"', '42', 'null']) {
      await refused('POST', '/admin/users', body, 'invalid_request')
      await refused('POST', '/admin/keys', body, 'invalid_request')
      await refused('PATCH', `/admin/keys/${fx.key.id}`, body, 'invalid_request')
    }
  })

  test('where the body may be left out (revoke, rotate), one that is there but broken is refused, not taken for none', async () => {
    for (const body of ['{"reason": "leaked', '[]', 'null', 'plain text']) {
      const error = await refused('POST', `/admin/keys/${fx.key.id}/revoke`, body, 'invalid_request')
      expect(error.message).toMatch(/not valid JSON|must be a JSON object/)
      await refused('POST', `/admin/keys/${fx.key.id}/rotate`, body, 'invalid_request')
    }
    // Without a Content-Type (curl -d sends a form type), a JSON object is still read as JSON.
    const res = await fetch(`${gw.url}/admin/keys/${fx.key.id}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` }, body: '{"reason": 7}' })
    expect((await expectEnvelope(res, 'invalid_request')).param).toBe('reason')
    expect((await gw.adminOk<{ status: string }>('GET', `/admin/keys/${fx.key.id}`)).status).toBe('active')
  })

  test('a path parameter the router cannot decode (%ff) → 400 naming it, on every admin route group', async () => {
    for (const [method, path] of [
      ['GET', '/admin/keys/%ff'],
      ['PATCH', '/admin/users/%ff'],
      ['POST', '/admin/keys/%ff/revoke'],
      ['DELETE', `/admin/teams/${fx.team}/members/%ff`],
      ['GET', '/admin/providers/%ff'],
    ] as const) {
      const error = await refused(method, path, method === 'GET' || method === 'DELETE' ? undefined : {}, 'invalid_request')
      expect(error.param).toBe(path.endsWith('members/%ff') ? 'user_id' : 'id')
    }
  })
})

describe('ids of dots alone → 400', () => {
  test('a user or team id of dots alone, which no path could reach (/admin/users/.. is /admin), is refused naming id; as user_id or team_id, naming that', async () => {
    for (const dots of ['.', '..', '...']) {
      expect((await refused('POST', '/admin/users', { id: dots }, 'invalid_request')).param).toBe('id')
      expect((await refused('POST', '/admin/teams', { id: dots, name: 'dots' }, 'invalid_request')).param).toBe('id')
      expect((await refused('POST', '/admin/keys', { user_id: dots }, 'invalid_request')).param).toBe('user_id')
      expect((await refused('POST', '/admin/keys', { user_id: fx.user, team_id: dots }, 'invalid_request')).param).toBe('team_id')
      expect((await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: dots }, 'invalid_request')).param).toBe('user_id')
    }
  })
})

describe('unknown fields → 400', () => {
  test('a field the schema does not have is refused, never stored', async () => {
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ['POST', '/admin/users', { id: uid('usr'), role: 'admin' }, 'role'],
      ['POST', '/admin/teams', { name: 'T', owner: fx.user }, 'owner'],
      ['POST', '/admin/keys', { user_id: fx.user, hash: 'a'.repeat(64) }, 'hash'],
      ['POST', '/admin/keys', { user_id: fx.user, key: 'sk-dev-' + 'A'.repeat(43) }, 'key'],
      ['POST', '/admin/keys', { user_id: fx.user, status: 'active' }, 'status'],
      ['PATCH', `/admin/keys/${fx.revoked.id}`, { status: 'active' }, 'status'],
      ['PATCH', `/admin/keys/${fx.key.id}`, { user_id: fx.outsider }, 'user_id'],
      ['PATCH', `/admin/users/${fx.user}`, { deleted_at: null }, 'deleted_at'],
      ['POST', `/admin/keys/${fx.key.id}/rotate`, { grace: 60 }, 'grace'],
    ]
    for (const [method, path, body, param] of cases) {
      const error = await refused(method, path, body, 'invalid_request')
      expect(error.param).toBe(param)
    }
  })
})

describe('references → 404 / 400', () => {
  test('a key for an unknown user → 404', async () => {
    const error = await refused('POST', '/admin/keys', { user_id: 'usr_nobody' }, 'not_found')
    expect(error.message).toContain('usr_nobody')
  })

  test('a key for a deleted user → 404; for a disabled user → 400', async () => {
    await refused('POST', '/admin/keys', { user_id: fx.deleted }, 'not_found')
    const error = await refused('POST', '/admin/keys', { user_id: fx.disabled }, 'invalid_request')
    expect(error.message).toContain('disabled')
  })

  test("a key for a team the user isn't in → 400 naming team_id; for an unknown or deleted team → 404", async () => {
    const error = await refused('POST', '/admin/keys', { user_id: fx.outsider, team_id: fx.team }, 'invalid_request')
    expect(error.param).toBe('team_id')
    expect(error.message).toContain('not a member')
    await refused('POST', '/admin/keys', { user_id: fx.user, team_id: 'team_nowhere' }, 'not_found')
    await refused('POST', '/admin/keys', { user_id: fx.user, team_id: fx.deletedTeam }, 'not_found')
  })

  test('members: unknown team or user → 404; removing a non-member → 404', async () => {
    await refused('POST', '/admin/teams/team_nowhere/members', { user_id: fx.user }, 'not_found')
    await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: 'usr_nobody' }, 'not_found')
    await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: fx.deleted }, 'not_found')
    await refused('DELETE', `/admin/teams/${fx.team}/members/${fx.outsider}`, undefined, 'not_found')
  })

  test('unknown ids → 404 on every route that takes one', async () => {
    for (const [method, path, body] of [
      ['GET', '/admin/keys/key_nope', undefined],
      ['PATCH', '/admin/keys/key_nope', { name: 'x' }],
      ['POST', '/admin/keys/key_nope/revoke', {}],
      ['POST', '/admin/keys/key_nope/rotate', {}],
      ['GET', '/admin/users/usr_nope', undefined],
      ['PATCH', '/admin/users/usr_nope', { name: 'x' }],
      ['DELETE', '/admin/users/usr_nope', undefined],
      ['GET', '/admin/teams/team_nope', undefined],
      ['PATCH', '/admin/teams/team_nope', { name: 'x' }],
      ['DELETE', '/admin/teams/team_nope', undefined],
      ['PATCH', `/admin/users/${fx.deleted}`, { name: 'x' }],
      ['DELETE', `/admin/users/${fx.deleted}`, undefined],
      ['DELETE', `/admin/teams/${fx.deletedTeam}`, undefined],
    ] as const) {
      const error = await refused(method, path, body, 'not_found')
      expect(error.message).toMatch(/No (key|user|team) with id/)
    }
  })
})

describe('conflicts → 409', () => {
  test('duplicate user id', async () => {
    const error = await refused('POST', '/admin/users', { id: fx.user }, 'conflict')
    expect(error.message).toContain(fx.user)
  })

  test('a deleted user id cannot be reused either, and the 409 says so rather than "already exists"', async () => {
    const error = await refused('POST', '/admin/users', { id: fx.deleted }, 'conflict')
    expect(error.message).toContain(`"${fx.deleted}" belongs to a user deleted at`)
    expect(error.message).toContain('ids are not reused')
  })

  test('nor a deleted team id, which GET shows deleted, and the 409 says so', async () => {
    const error = await refused('POST', '/admin/teams', { id: fx.deletedTeam, name: 'again' }, 'conflict')
    expect(error.message).toContain(`"${fx.deletedTeam}" belongs to a team deleted at`)
    expect(error.message).toContain('ids are not reused')
    expect(await gw.adminOk('GET', `/admin/teams/${fx.deletedTeam}`)).toMatchObject({ id: fx.deletedTeam, deleted_at: expect.any(String) })
  })

  test('the email of a deleted user: the 409 names the deleted user that keeps it', async () => {
    const email = `${uid('gone')}@example.com`
    const gone = await gw.adminOk<{ id: string }>('POST', '/admin/users', { email })
    await gw.adminOk('DELETE', `/admin/users/${gone.id}`)
    const error = await refused('POST', '/admin/users', { id: uid('usr'), email }, 'conflict')
    expect(error.message).toContain(`belongs to user ${gone.id}, deleted at`)
  })

  test('duplicate email, on create and on PATCH', async () => {
    await refused('POST', '/admin/users', { id: uid('usr'), email: fx.email }, 'conflict')
    await refused('PATCH', `/admin/users/${fx.outsider}`, { email: fx.email }, 'conflict')
  })

  test('duplicate team id', async () => {
    await refused('POST', '/admin/teams', { id: fx.team, name: 'again' }, 'conflict')
  })

  test('duplicate membership', async () => {
    const error = await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: fx.user }, 'conflict')
    expect(error.message).toContain('already a member')
  })

  test('revoking twice', async () => {
    const error = await refused('POST', `/admin/keys/${fx.revoked.id}/revoke`, {}, 'conflict')
    expect(error.message).toContain('already revoked')
  })

  test('rotating a revoked key', async () => {
    await refused('POST', `/admin/keys/${fx.revoked.id}/rotate`, {}, 'conflict')
  })

  test('rotating a key that was already rotated (its successor is the one to rotate)', async () => {
    const error = await refused('POST', `/admin/keys/${fx.rotated.id}/rotate`, { grace_seconds: 30 * 86400 }, 'conflict')
    expect(error.message).toContain('rotated')
  })
})

describe('rotation of a key its owner or team refuses → refused as creating one for them is', () => {
  test('owner deleted → 404, disabled → 400, bound team deleted → 404, owner no longer in the bound team → 400; nothing is minted', async () => {
    const deleted = await userWithKey(gw)
    await gw.adminOk('DELETE', `/admin/users/${deleted.userId}`)
    const disabled = await userWithKey(gw)
    await gw.adminOk('PATCH', `/admin/users/${disabled.userId}`, { disabled: true })
    const teamGone = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('DELETE', `/admin/teams/${teamGone.teamId}`)
    const leftTeam = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('DELETE', `/admin/teams/${leftTeam.teamId}/members/${leftTeam.userId}`)

    const cases = [
      [deleted, 'not_found', `its owner, user ${deleted.userId}, was deleted at`],
      [disabled, 'invalid_request', `its owner, user ${disabled.userId}, is disabled`],
      [teamGone, 'not_found', `it is bound to team ${teamGone.teamId}, which was deleted at`],
      [leftTeam, 'invalid_request', `its owner, user ${leftTeam.userId}, is not a member of team ${leftTeam.teamId}`],
    ] as const
    for (const [{ userId, teamId, key }, code, says] of cases) {
      // The code creation answers for the same owner and team.
      await refused('POST', '/admin/keys', { user_id: userId, ...(teamId ? { team_id: teamId } : {}) }, code)
      for (const body of [{}, { grace_seconds: 3600 }]) {
        const error = await refused('POST', `/admin/keys/${key.id}/rotate`, body, code)
        expect(error.message).toStartWith(`Key ${key.id} cannot be rotated: ${says}`)
      }
    }
  })

  test('once the owner is enabled again, its key rotates', async () => {
    const { userId, key } = await userWithKey(gw)
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { disabled: true })
    await refused('POST', `/admin/keys/${key.id}/rotate`, {}, 'invalid_request')
    await gw.adminOk('PATCH', `/admin/users/${userId}`, { disabled: false })
    expect(await gw.adminOk('POST', `/admin/keys/${key.id}/rotate`, {})).toMatchObject({ rotated_from: key.id, status: 'active' })
  })
})

describe('SQL metacharacters', () => {
  const evil = "'; DROP TABLE users; --"

  test('in ids: refused by the id pattern; tables intact', async () => {
    await refused('POST', '/admin/users', { id: evil }, 'invalid_request')
    await refused('POST', '/admin/teams', { id: evil, name: 'x' }, 'invalid_request')
    await refused('POST', '/admin/keys', { user_id: evil }, 'invalid_request')
    await refused('POST', `/admin/teams/${fx.team}/members`, { user_id: evil }, 'invalid_request')
  })

  test('in path and query parameters: not found or empty, tables intact', async () => {
    const path = encodeURIComponent(evil)
    await refused('GET', `/admin/users/${path}`, undefined, 'not_found')
    await refused('DELETE', `/admin/users/${path}`, undefined, 'not_found')
    await refused('GET', `/admin/keys/${path}`, undefined, 'not_found')
    await refused('POST', `/admin/keys/${path}/revoke`, {}, 'not_found')
    await refused('DELETE', `/admin/teams/${fx.team}/members/${path}`, undefined, 'not_found')
    const list = await gw.adminOk<{ data: unknown[] }>('GET', `/admin/keys?user_id=${encodeURIComponent(evil)}&team_id=${encodeURIComponent("x' OR '1'='1")}`)
    expect(list.data).toEqual([])
  })

  test('in names: stored and returned literally; tables intact', async () => {
    const before = await countRows(gw.db)
    const user = await gw.adminOk<{ id: string; name: string }>('POST', '/admin/users', { name: evil, email: `x'--@example.com` })
    expect(user.name).toBe(evil)
    expect((await gw.adminOk<{ name: string; email: string }>('GET', `/admin/users/${user.id}`)).name).toBe(evil)
    const team = await gw.adminOk<{ id: string; name: string }>('POST', '/admin/teams', { name: evil })
    expect(team.name).toBe(evil)
    const key = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: user.id, name: evil, metadata: { [evil]: evil } })
    expect(key.name).toBe(evil)
    expect(key.metadata).toEqual({ [evil]: evil })
    const after = await countRows(gw.db)
    expect(after.users).toBe(before.users + 1)
    expect(after.teams).toBe(before.teams + 1)
    expect(after.api_keys).toBe(before.api_keys + 1)
    expect((await gw.db.selectFrom('users').select('name').where('id', '=', user.id).executeTakeFirstOrThrow()).name).toBe(evil)
  })
})

describe('sizes', () => {
  test('a 1 MB name → 400 or 413, nothing stored', async () => {
    for (const [path, body] of [
      ['/admin/users', { name: 'n'.repeat(1024 * 1024) }],
      ['/admin/teams', { name: 'n'.repeat(1024 * 1024) }],
      ['/admin/keys', { user_id: fx.user, name: 'n'.repeat(1024 * 1024) }],
    ] as const) {
      const before = await dumpDatabase(gw.db)
      const res = await gw.admin('POST', path, body)
      expect([400, 413]).toContain(res.status)
      await expectEnvelope(res, res.status === 413 ? 'request_too_large' : 'invalid_request')
      expect(await dumpDatabase(gw.db)).toBe(before)
    }
  })

  test('an admin body over 1 MiB → 413, before it is read whole', async () => {
    const res = await gw.admin('PATCH', `/admin/keys/${fx.key.id}`, { metadata: { blob: 'x'.repeat(1024 * 1024) } })
    await expectEnvelope(res, 'request_too_large')
  })

  test('metadata over 16 KiB → 400 naming metadata', async () => {
    const error = await refused('POST', '/admin/users', { metadata: { blob: 'x'.repeat(20_000) } }, 'invalid_request')
    expect(error.param).toBe('metadata')
  })

  test('too many models, too long a model name → 400', async () => {
    await refused('POST', '/admin/keys', { user_id: fx.user, models: Array.from({ length: 1001 }, (_, i) => `m${i}`) }, 'invalid_request')
    await refused('POST', '/admin/keys', { user_id: fx.user, models: ['m'.repeat(300)] }, 'invalid_request')
  })
})

describe('times', () => {
  test('expires_at in the past → 400', async () => {
    const error = await refused('POST', '/admin/keys', { user_id: fx.user, expires_at: '2001-01-01T00:00:00Z' }, 'invalid_request')
    expect(error.param).toBe('expires_at')
    expect(error.message).toContain('future')
  })

  test('expires_at not RFC 3339 → 400 naming expires_at', async () => {
    for (const bad of [
      'tomorrow',
      '2030-01-01',
      '2030-01-01 00:00:00',
      '2030-01-01T00:00:00', // no offset: which time zone?
      '2030-02-30T00:00:00Z', // no such day
      '2030-13-01T00:00:00Z',
      '2030-01-01T24:00:00Z',
      '2030-01-01T00:00:00+2',
      '1893456000',
      '2030-01-01T00:00:00Zjunk',
    ]) {
      const error = await refused('POST', '/admin/keys', { user_id: fx.user, expires_at: bad }, 'invalid_request')
      expect(error.param).toBe('expires_at')
      expect(error.message).toContain('RFC 3339')
      await refused('PATCH', `/admin/keys/${fx.key.id}`, { expires_at: bad }, 'invalid_request')
    }
  })

  test('RFC 3339 forms that are valid are accepted: Z, offsets, fractions', async () => {
    for (const good of ['2031-01-01T00:00:00Z', '2031-01-01T02:00:00+02:00', '2031-01-01T00:00:00.123456Z', '2031-01-01t00:00:00z']) {
      const key = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: fx.user, expires_at: good })
      expect(Date.parse(key.expires_at!)).toBe(Date.parse(good.toUpperCase()))
    }
  })

  test('expires_at later than 9999-12-31T23:59:59.999Z in UTC → 400: stored times, fixed-width text, cannot hold it', async () => {
    // Year 9999 with an offset west of UTC is year 10000 in UTC.
    const late = '9999-12-31T23:30:00-01:00'
    expect((await refused('POST', '/admin/keys', { user_id: fx.user, expires_at: late }, 'invalid_request')).param).toBe('expires_at')
    expect((await refused('PATCH', `/admin/keys/${fx.key.id}`, { expires_at: late }, 'invalid_request')).param).toBe('expires_at')
    const last = await gw.adminOk<CreatedKey>('POST', '/admin/keys', { user_id: fx.user, expires_at: '9999-12-31T22:59:59.999-01:00' })
    expect(last.expires_at).toBe('9999-12-31T23:59:59.999Z')
  })

  test('a bad `within` for /admin/keys/expiring → 400', async () => {
    for (const bad of ['forever', '7', '-1d', '7days', '1y']) {
      await refused('GET', `/admin/keys/expiring?within=${bad}`, undefined, 'invalid_request')
    }
  })
})

describe('lists', () => {
  test('a bad cursor → 400 naming cursor', async () => {
    const forged = (text: string) => Buffer.from(text).toString('base64url')
    // Each decodes to a time and an id, but not to any this API gives out: a time Date.parse takes
    // though no stored time has its form (text order would not be time order), an id holding NUL.
    const tampered = [forged('2026|key_1'), forged('1|key_1'), forged('2026-01-01|key_1'), forged('2026-01-01T00:00:00.000Z|key\u0000x'), forged('2026-01-01T00:00:00.000Z|')]
    for (const cursor of ['zzz', forged('not a date|key_1'), '%00', 'a'.repeat(300), ...tampered]) {
      for (const list of ['/admin/keys', '/admin/users', '/admin/teams', '/admin/keys/expiring', `/admin/teams/${fx.team}/members`]) {
        const error = await refused('GET', `${list}?cursor=${encodeURIComponent(cursor)}`, undefined, 'invalid_request')
        expect(error.param).toBe('cursor')
      }
    }
  })

  test('a bad limit or status → 400', async () => {
    for (const query of ['limit=0', 'limit=501', 'limit=two', 'limit=1.5', 'limit=-3', 'status=deleted']) {
      const error = await refused('GET', `/admin/keys?${query}`, undefined, 'invalid_request')
      expect(error.param).toBe(query.split('=')[0]!)
    }
    for (const list of ['/admin/users', '/admin/teams', '/admin/keys/expiring', `/admin/teams/${fx.team}/members`]) {
      expect((await refused('GET', `${list}?limit=1000`, undefined, 'invalid_request')).param).toBe('limit')
    }
  })

  test('an empty user_id or team_id filter → 400 naming it, not every key of every user (a script whose variable was empty would act on them all)', async () => {
    for (const query of ['user_id=', 'team_id=', `user_id=&team_id=${fx.team}`]) {
      const error = await refused('GET', `/admin/keys?${query}`, undefined, 'invalid_request')
      expect({ query, param: error.param }).toEqual({ query, param: query.startsWith('user_id') ? 'user_id' : 'team_id' })
    }
  })

  test('an unknown query parameter → 400 naming it, on every list', async () => {
    for (const list of ['/admin/keys', '/admin/users', '/admin/teams', '/admin/keys/expiring', `/admin/teams/${fx.team}/members`]) {
      expect((await refused('GET', `${list}?foo=1`, undefined, 'invalid_request')).param).toBe('foo')
    }
  })
})

describe('the database after all of it', () => {
  test('a key still works and the tables hold what the happy calls made', async () => {
    const { key } = await userWithKey(gw)
    expect((await gw.client(key.key).models.list()).data.length).toBeGreaterThan(0)
    const counts = await countRows(gw.db)
    expect(counts.users).toBeGreaterThan(4)
  })
})
