import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY, Clock, expectEnvelope, startAuthGateway, uid, userWithKey, type AuthGateway } from './support/auth.ts'

interface Diagnosis {
  object: string
  allowed: boolean
  status: number
  error: { code: string; message: string } | null
  retry_after: number | null
  quota: string
  max_request_tokens: number | null
  key: { id: string; status: string; user_id: string; team_id: string | null } | null
  remaining: { requests: number | null } | null
}

describe('key doctor', () => {
  let mock: MockUpstream
  let gw: AuthGateway
  const clock = new Clock()
  const diagnose = async (body: unknown) => {
    const res = await gw.admin('POST', '/admin/doctor', body)
    return { status: res.status, body: (await res.json()) as Diagnosis }
  }

  beforeAll(async () => {
    mock = await startMockUpstream()
    gw = await startAuthGateway(mock.url, {
      config: {
        plugins: [{ use: 'auth', options: { demo_key: false } }, 'quota'],
        // The mock waits 1.5 s before it answers: a request that holds its max_parallel slot meanwhile.
        models: [
          { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
          { name: 'other-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
          { name: 'slow-gpt', targets: [{ provider: 'up', model: 'mock-slow-1500' }] },
        ],
      },
      gateway: { now: clock.now },
    })
  })
  afterAll(async () => {
    await gw?.close()
    await mock?.stop()
  })

  test('an allowed key: the same answer as the gateway, with owner, status and what is left', async () => {
    const { key, userId } = await userWithKey(gw, { models: ['mock-gpt'], limits: { rpm: 5 } })
    const { status, body } = await diagnose({ key: key.key, model: 'mock-gpt' })
    expect(status).toBe(200)
    expect(body.allowed).toBe(true)
    expect(body.status).toBe(200)
    expect(body.key).toMatchObject({ id: key.id, status: 'active', user_id: userId })
    expect(body.remaining?.requests).toBe(5)
    expect(body.quota).toBe('ok')
    expect(JSON.stringify(body)).not.toContain(key.key)
    // The doctor counts nothing against the key.
    expect((await diagnose({ key: key.key, model: 'mock-gpt' })).body.remaining?.requests).toBe(5)
  })

  test('a key that no limit or budget applies to has "no limits", though the quota plugin describes it', async () => {
    const { key } = await userWithKey(gw)
    const { body } = await diagnose({ key: key.key, model: 'mock-gpt' })
    expect(body).toMatchObject({ allowed: true, quota: 'no limits', remaining: { requests: null } })
  })

  test('each refusal is explained with the code a client would get', async () => {
    const { key } = await userWithKey(gw, { models: ['mock-gpt'] })
    expect((await diagnose({ key: key.key, model: 'other-gpt' })).body.error?.code).toBe('model_not_allowed')
    expect((await diagnose({ key: 'sk-prod-' + 'a'.repeat(40), model: 'mock-gpt' })).body.error?.code).toBe('environment_mismatch')
    expect((await diagnose({ key: 'nonsense', model: 'mock-gpt' })).body.error?.code).toBe('invalid_api_key')
    // An unknown model: the client's own message (what to do too), a key pasted as the model masked in it, as the client gets it.
    const { key: any } = await userWithKey(gw)
    const unknown = await diagnose({ key: any.key, model: `Bearer ${key.key}` })
    const client = (await (await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${any.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: `Bearer ${key.key}`, messages: [{ role: 'user', content: 'x' }] }) })).json()) as { error: unknown }
    expect(unknown.body.error).toEqual(client.error as Diagnosis['error'])
    expect(JSON.stringify(unknown.body)).not.toContain(key.key)
    const team = uid('team')
    await gw.adminOk('POST', '/admin/teams', { id: team, name: 'T' })
    const named = await diagnose({ key: key.key, model: 'mock-gpt', team })
    expect(named.body.error?.code).toBe('invalid_user_for_key')
    expect(named.body.error?.message).toStartWith('Invalid user associated with this key')

    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, { reason: 'test' })
    const revoked = await diagnose({ key_id: key.id, model: 'mock-gpt' })
    expect(revoked.body).toMatchObject({ allowed: false, status: 401, error: { code: 'key_revoked' }, key: { id: key.id, status: 'revoked' } })
  })

  test('an expired key picked by id, and a spent limit', async () => {
    const { key } = await userWithKey(gw, { expires_at: clock.iso(60_000) })
    clock.advance(61_000)
    const expired = await diagnose({ key_id: key.id })
    expect(expired.body).toMatchObject({ allowed: false, status: 401, error: { code: 'key_expired' }, key: { status: 'expired' } })

    const limited = await userWithKey(gw, { limits: { rpm: 1 } })
    await gw.client(limited.key.key).chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })
    const spent = await diagnose({ key: limited.key.key, model: 'mock-gpt' })
    // The quota's own refusal, as the client gets it, with its wait.
    expect(spent.body).toMatchObject({ allowed: false, status: 429, error: { code: 'rate_limit_exceeded' }, quota: 'exhausted: requests', retry_after: 60 })
    expect(spent.body.error!.message).toContain('Rate limit reached for requests')
  })

  test('what admission would answer: a full max_parallel set refuses, and a budget with a little left allows only that much', async () => {
    const parallel = await userWithKey(gw, { limits: { max_parallel: 1 } })
    const running = gw.client(parallel.key.key).chat.completions.create({ model: 'slow-gpt', messages: [{ role: 'user', content: 'hi' }] })
    await Bun.sleep(300)
    const busy = await diagnose({ key: parallel.key.key, model: 'mock-gpt' })
    // Before: "allowed" with nothing exhausted, while the gateway answered 429.
    expect(busy.body).toMatchObject({ allowed: false, status: 429, error: { code: 'rate_limit_exceeded' } })
    expect(busy.body.error!.message).toContain('Too many requests in flight')
    await running
    expect((await diagnose({ key: parallel.key.key, model: 'mock-gpt' })).body).toMatchObject({ allowed: true, error: null })

    // A user's budget of 30 tokens with a key whose own rpm has room: the least request fits, and
    // the doctor says how many tokens a request may reserve.
    const small = await userWithKey(gw, { limits: { rpm: 100 } })
    await gw.adminOk('PATCH', `/admin/users/${small.userId}`, { budget: { tokens: 30, period: 'total' } })
    const room = await diagnose({ key: small.key.key, model: 'mock-gpt' })
    expect(room.body).toMatchObject({ allowed: true, max_request_tokens: 30 })
    // Spent: refused with insufficient_quota, named for the user (the budget never renews, no wait).
    const answer = await gw.client(small.key.key).chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })
    const used = answer.usage!.total_tokens
    await gw.adminOk('PATCH', `/admin/users/${small.userId}`, { budget: { tokens: used, period: 'total' } })
    const spent = await diagnose({ key: small.key.key, model: 'mock-gpt' })
    expect(spent.body).toMatchObject({ allowed: false, status: 429, error: { code: 'insufficient_quota' }, retry_after: null, max_request_tokens: 0 })
    expect(spent.body.error!.message).toContain(`user ${small.userId}`)
  })

  test('a key or team no HTTP header can carry (the display form pasted, a line break) is explained, not a failure', async () => {
    const { key } = await userWithKey(gw)
    // What the admin API and the console show of a key: its start, "…", its last four.
    const display = (await gw.adminOk('GET', `/admin/keys/${key.id}`)).display as string
    const shown = await diagnose({ key: display, model: 'mock-gpt' })
    expect(shown.status).toBe(200)
    expect(shown.body).toMatchObject({ allowed: false, status: 401, error: { code: 'invalid_api_key' }, key: null })
    expect(shown.body.error!.message).toContain('key_id')
    const broken = await diagnose({ key: `${key.key.slice(0, 20)}\n${key.key.slice(20)}` })
    expect(broken.body).toMatchObject({ allowed: false, status: 401, error: { code: 'invalid_api_key' } })
    expect(broken.body.error!.message).toContain('line break')
    expect(JSON.stringify(broken.body)).not.toContain(key.key.slice(20))
    // A team id is letters, digits and _ . : -: nothing a client could name holds "é…".
    const team = await gw.admin('POST', '/admin/doctor', { key: key.key, team: 'équipe…' })
    expect((await expectEnvelope(team, 'invalid_request')).param).toBe('team')
  })

  test("the doctor's refusal is the client's, word for word: unknown model, model not allowed, scope", async () => {
    const free = await userWithKey(gw)
    const restricted = await userWithKey(gw, { models: ['other-gpt'] })
    const scoped = await userWithKey(gw, { scopes: ['embeddings'] })
    const narrowed = await userWithKey(gw)
    await gw.adminOk('PATCH', `/admin/users/${narrowed.userId}`, { models: ['other-gpt'] })
    const cases = [
      { key: narrowed.key.key, model: 'mock-gpt' },
      { key: free.key.key, model: 'no-such-model' },
      { key: restricted.key.key, model: 'mock-gpt' },
      { key: scoped.key.key, model: 'mock-gpt' },
    ]
    for (const { key, model } of cases) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      })
      const client = (await res.json()) as { error: Record<string, unknown> }
      const { body } = await diagnose({ key, model })
      // Before: the doctor's model_not_found left out what to do (GET /v1/models) and echoed the name unescaped.
      expect({ model, status: body.status, error: body.error }).toEqual({ model, status: res.status, error: client.error as Diagnosis['error'] })
    }
  })

  test('listing models and counting tokens are not counted against limits: with the rpm spent the doctor allows them, as the gateway does', async () => {
    const { key } = await userWithKey(gw, { limits: { rpm: 1 } })
    await gw.client(key.key).chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })
    const models = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } })
    expect(models.status).toBe(200)
    const count = await fetch(`${gw.url}/v1/tokens/count`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(count.status).toBe(200)
    for (const endpoint of ['models.list', 'tokens.count']) {
      const { body } = await diagnose({ key: key.key, model: 'mock-gpt', endpoint })
      // Before: allowed false, 429 rate_limit_exceeded, for requests the gateway answers 200.
      expect({ endpoint, allowed: body.allowed, status: body.status, error: body.error }).toEqual({ endpoint, allowed: true, status: 200, error: null })
      // What is left is still shown: a chat would be refused.
      expect(body.quota).toBe('exhausted: requests')
    }
    expect((await diagnose({ key: key.key, model: 'mock-gpt', endpoint: 'embeddings' })).body).toMatchObject({ allowed: false, status: 429 })
  })

  test('a refused key bound to a team shows that team, as GET /admin/keys does', async () => {
    const { key, teamId, userId } = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('DELETE', `/admin/teams/${teamId}/members/${userId}`)
    for (const body of [{ key: key.key }, { key_id: key.id }]) {
      const { body: answer } = await diagnose(body)
      expect(answer).toMatchObject({ allowed: false, status: 403, error: { code: 'invalid_user_for_key' } })
      // Before: team_id null, as if the key were bound to no team, beside a message naming the team.
      expect(answer.key).toMatchObject({ id: key.id, team_id: teamId })
    }
  })

  test('bad input and no admin key', async () => {
    expect((await diagnose({})).status).toBe(400)
    expect((await diagnose({ key: 'a', key_id: 'b' })).status).toBe(400)
    expect((await diagnose({ key_id: 'key_missing' })).status).toBe(404)
    const anon = await gw.admin('POST', '/admin/doctor', { key: 'x' }, { authorization: 'Bearer wrong' })
    expect(anon.status).toBe(401)
  })

  test('the admin key is checked before the body is read: 401 whatever the body, 400 only with the key', async () => {
    const callers: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: 'Token wrong' }, { 'x-api-key': 'wrong' }]
    const bodies: (string | undefined)[] = ['{', undefined, '', JSON.stringify({ key: 'x' })]
    for (const caller of callers) {
      for (const body of bodies) {
        const headers = body === undefined ? caller : { ...caller, 'content-type': 'application/json' }
        const res = await fetch(`${gw.url}/admin/doctor`, { method: 'POST', headers, body })
        expect({ caller, body, status: res.status }).toEqual({ caller, body, status: 401 })
        await expectEnvelope(res, 'invalid_admin_key')
      }
    }
    const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }
    const broken = await fetch(`${gw.url}/admin/doctor`, { method: 'POST', headers: admin, body: '{' })
    await expectEnvelope(broken, 'invalid_request')
    const mistyped = await fetch(`${gw.url}/admin/doctor`, { method: 'POST', headers: admin, body: JSON.stringify({ key: 5 }) })
    expect((await expectEnvelope(mistyped, 'invalid_request')).param).toBe('key')
  })
})
