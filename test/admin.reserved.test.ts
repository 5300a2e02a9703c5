/**
 * Admin API edges: ids that a route of its own already holds are refused (a provider named
 * `health` could be created but never read: `GET /admin/providers/health` is the balance
 * plugin's key health list), and a create whose every field is optional takes no body at all.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { bootProblems, startGateway, type TestGateway } from './support/gateway.ts'
import { expectError } from './support/http.ts'

const ADMIN_KEY = 'sluice-reserved-test-admin-key-0123456789'
const admin = { authorization: `Bearer ${ADMIN_KEY}` }

let gw: TestGateway
beforeAll(async () => {
  gw = await startGateway({ plugins: [{ use: 'auth', options: { demo_key: false } }, 'balance'] }, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
})
afterAll(() => gw.close())

const call = (method: string, path: string, body?: unknown) =>
  fetch(`${gw.url}${path}`, {
    method,
    headers: body === undefined ? admin : { ...admin, 'content-type': 'application/json' },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })

describe('reserved ids', () => {
  const provider = (id: string) => ({ id, type: 'openai-compatible', base_url: 'http://127.0.0.1:9/v1', keys: [{ id: 'k1', secret: 's' }] })

  test('POST /admin/providers {"id": "health"} is 400 naming id, as a reserved name; the health list stays where it is', async () => {
    const refused = await expectError(await call('POST', '/admin/providers', provider('health')), 'invalid_request')
    expect(refused.param).toBe('id')
    expect(refused.message).toContain('"health" is a reserved name')
    const list = (await (await call('GET', '/admin/providers')).json()) as { data: Array<{ id: string }> }
    expect(list.data.map((p) => p.id)).not.toContain('health')
    expect(await (await call('GET', '/admin/providers/health')).json()).toMatchObject({ object: 'list' })
    // Only that exact segment: the router tells `Health` and `healthy` apart.
    for (const id of ['Health', 'healthy']) {
      expect({ id, status: (await call('POST', '/admin/providers', provider(id))).status }).toEqual({ id, status: 201 })
      expect(await (await call('GET', `/admin/providers/${id}`)).json()).toMatchObject({ object: 'provider', id })
    }
  })

  test('the config file refuses a provider named health, with its path', async () => {
    const problems = await bootProblems({
      providers: [{ id: 'health', type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k1', secret: 's' }] }],
      models: [{ name: 'm', targets: [{ provider: 'health', model: 'm' }] }],
    })
    expect(problems).toEqual([expect.stringMatching(/^\/providers\/0\/id: "health" is a reserved name/)])
  })
})

describe('optional bodies', () => {
  test('POST /admin/users with no body at all creates a user with a generated id (every field is optional)', async () => {
    const res = await fetch(`${gw.url}/admin/users`, { method: 'POST', headers: admin })
    expect(res.status).toBe(201)
    const user = (await res.json()) as { object: string; id: string; email: unknown }
    expect(user).toMatchObject({ object: 'user', email: null, name: null, status: 'active' })
    expect(user.id).toMatch(/^usr_/)
    // Sent as JSON with an empty body, as some clients do, it is the same.
    const empty = await fetch(`${gw.url}/admin/users`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' } })
    expect(empty.status).toBe(201)
    // A body that is there is still checked.
    expect((await expectError(await call('POST', '/admin/users', { id: 5 }), 'invalid_request')).param).toBe('id')
  })
})
