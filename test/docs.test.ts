/**
 * API docs: the Swagger UI renders with no internet (every asset served locally) and the
 * OpenAPI document describes the client and admin routes with their request bodies, and the
 * admin routes with the admin key they take.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'
import { loadConfig } from '../src/config/load.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { ERROR_CODES } from '../src/errors.ts'
import { BudgetSchema, LimitsSchema } from '../src/limits.ts'
import { resolvePlugins } from '../src/plugin-loader.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, expectError } from './support/http.ts'
import { schemaProblems, type CheckOptions, type JsonSchema } from './support/json-schema.ts'

const ADMIN_KEY = 'sluice-docs-test-admin-key-0123456789'

let gw: TestGateway
beforeAll(async () => {
  // Every built-in plugin, so that the document has each one's admin routes.
  gw = await startGateway(
    { plugins: [{ use: 'auth', options: { demo_key: false } }, 'quota', 'tokens', 'balance', 'logging'] },
    { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } },
  )
})
afterAll(() => gw.close())

interface Schema {
  type?: string
  properties?: Record<string, Schema>
  required?: string[]
  anyOf?: Schema[]
  oneOf?: Schema[]
}
interface Operation {
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> }
  responses?: Record<string, { description?: string; content?: Record<string, { schema: Schema & JsonSchema }> }>
  security?: Array<Record<string, string[]>>
  parameters?: Array<{ name: string; in: string; required?: boolean }>
}
interface OpenApiDoc {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
  components: { securitySchemes: Record<string, { type: string; scheme?: string }>; schemas: Record<string, JsonSchema> }
}

describe('GET /swagger', () => {
  let html: string
  let res: Response
  beforeAll(async () => {
    res = await fetch(`${gw.url}/swagger`)
    html = await res.text()
  })

  test('is an HTML page', () => {
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/html')
    expect(res.headers.get('x-request-id')).toMatch(REQUEST_ID)
    expect(html).toContain('<div id="swagger-ui">')
    expect(html).toContain("'/swagger/json'")
  })

  test('references no remote URL: no CDN, nothing off this host', () => {
    expect(html).not.toMatch(/https?:\/\//i)
    expect(html).not.toMatch(/(src|href)\s*=\s*["']\/\//i)
  })

  test("Swagger UI's online validator is off: nothing sends this gateway's address to validator.swagger.io", () => {
    // Swagger UI's default validatorUrl is https://validator.swagger.io/validator, asked for a badge
    // with the document's URL whenever the page is opened by a host name other than localhost.
    expect(html).toMatch(/SwaggerUIBundle\(\{[^]*\bvalidatorUrl: null\b[^]*\}\)/)
  })

  test('a Content-Security-Policy allows this origin only, and the inline script by its hash', () => {
    const csp = res.headers.get('content-security-policy') ?? ''
    const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name!, values]))
    expect(directives.get('default-src')).toEqual(["'none'"])
    expect(directives.get('connect-src')).toEqual(["'self'"])
    expect(directives.get('img-src')).toEqual(["'self'", 'data:'])
    expect(directives.get('frame-ancestors')).toEqual(["'none'"])
    expect(directives.get('base-uri')).toEqual(["'none'"])
    // No host, no scheme, no 'unsafe-…' anywhere: self, data: images and hashes only.
    for (const [name, values] of directives) {
      for (const value of values) expect({ name, value, allowed: /^('self'|'none'|'sha256-[A-Za-z0-9+/]+=*'|data:)$/.test(value) }).toEqual({ name, value, allowed: true })
    }
    const inline = [...html.matchAll(/<script>([^]*?)<\/script>/g)].map((m) => m[1]!)
    expect(inline).toHaveLength(1)
    const hash = new Bun.CryptoHasher('sha256').update(inline[0]!).digest('base64')
    expect(directives.get('script-src')).toEqual(["'self'", `'sha256-${hash}'`])
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
  })

  test('every script and stylesheet is a local /swagger/assets/ file that answers 200 with the right content type', async () => {
    const scripts = [...html.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)].map((m) => m[1]!)
    const styles = [...html.matchAll(/<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g)].map((m) => m[1]!)
    expect(scripts.length).toBeGreaterThanOrEqual(1)
    expect(styles.length).toBeGreaterThanOrEqual(1)
    const all = [...scripts.map((s) => [s, 'javascript'] as const), ...styles.map((s) => [s, 'text/css'] as const)]
    for (const [path, type] of all) {
      expect(path).toStartWith('/swagger/assets/')
      const asset = await fetch(`${gw.url}${path}`)
      expect({ path, status: asset.status }).toEqual({ path, status: 200 })
      expect(asset.headers.get('content-type') ?? '').toContain(type)
      const body = await asset.text()
      expect(body.length).toBeGreaterThan(1000)
    }
    expect(scripts).toContain('/swagger/assets/swagger-ui-bundle.js')
    expect(styles).toContain('/swagger/assets/swagger-ui.css')
  })

  test('an unknown asset is 404 not_found in the envelope, and paths cannot climb out of the asset folder', async () => {
    await expectError(await fetch(`${gw.url}/swagger/assets/nope.js`), 'not_found')
    const climb = await fetch(`${gw.url}/swagger/assets/..%2F..%2Fpackage.json`)
    expect(climb.status).toBe(404)
    expect(await climb.text()).not.toContain('"dependencies"')
  })
})

describe('GET /swagger/json', () => {
  let doc: OpenApiDoc
  beforeAll(async () => {
    const res = await fetch(`${gw.url}/swagger/json`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('application/json')
    doc = (await res.json()) as OpenApiDoc
  })

  test('is an OpenAPI 3 document titled sluice', () => {
    expect(doc.openapi).toStartWith('3.')
    expect(doc.info.title).toBe('sluice')
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/)
  })

  test('lists the client and operational routes with their methods', () => {
    const expected: Array<[string, string]> = [
      ['/v1/chat/completions', 'post'],
      ['/v1/completions', 'post'],
      ['/v1/embeddings', 'post'],
      ['/v1/models', 'get'],
      ['/v1/models/{id}', 'get'],
      ['/health', 'get'],
      ['/ready', 'get'],
    ]
    for (const [path, method] of expected) expect({ path, method, present: doc.paths[path]?.[method] !== undefined }).toEqual({ path, method, present: true })
    // The docs do not document themselves.
    expect(Object.keys(doc.paths).some((p) => p.startsWith('/swagger'))).toBe(false)
  })

  test('the POST routes carry their JSON request body schema', () => {
    const required: Array<[string, string[]]> = [
      ['/v1/chat/completions', ['model', 'messages']],
      ['/v1/completions', ['model', 'prompt']],
      ['/v1/embeddings', ['model', 'input']],
    ]
    for (const [path, fields] of required) {
      const schema = doc.paths[path]?.post?.requestBody?.content['application/json']?.schema
      expect({ path, type: schema?.type }).toEqual({ path, type: 'object' })
      expect({ path, required: [...(schema?.required ?? [])].sort() }).toEqual({ path, required: [...fields].sort() })
      for (const field of fields) expect(schema?.properties?.[field]).toBeDefined()
    }
    const chat = doc.paths['/v1/chat/completions']?.post?.requestBody?.content['application/json']?.schema
    expect(Object.keys(chat?.properties ?? {})).toEqual(expect.arrayContaining(['stream', 'stream_options', 'max_tokens', 'temperature', 'tools']))
  })
})

describe('GET /swagger/json: the admin API', () => {
  let doc: OpenApiDoc
  /** Every operation under /admin, as [method, path, operation]. */
  let admin: Array<[string, string, Operation]>
  beforeAll(async () => {
    doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as OpenApiDoc
    admin = Object.entries(doc.paths)
      .filter(([path]) => path.startsWith('/admin/'))
      .flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => [method, path, op] as [string, string, Operation]))
  })
  const jsonSchema = (op: Operation | undefined) => op?.requestBody?.content['application/json']?.schema

  test('the routes that take a body, whatever checks the admin key first, are there with one', () => {
    // The auth plugin's routes check the admin key in an onParse hook, which once left their body out of the document.
    const withBody: Array<[string, string]> = [
      ['post', '/admin/users'],
      ['patch', '/admin/users/{id}'],
      ['post', '/admin/teams'],
      ['patch', '/admin/teams/{id}'],
      ['post', '/admin/teams/{id}/members'],
      ['post', '/admin/keys'],
      ['patch', '/admin/keys/{id}'],
      ['post', '/admin/keys/{id}/revoke'],
      ['post', '/admin/keys/{id}/rotate'],
      ['post', '/admin/providers'],
      ['patch', '/admin/providers/{id}'],
      ['post', '/admin/models'],
      ['patch', '/admin/models/{name}'],
      ['post', '/admin/doctor'],
    ]
    for (const [method, path] of withBody) {
      expect({ method, path, documented: doc.paths[path]?.[method]?.requestBody !== undefined }).toEqual({ method, path, documented: true })
    }
  })

  test('every POST, PATCH or PUT under /admin that takes a body documents it as a JSON schema with its fields', () => {
    const writes = admin.filter(([method, , op]) => ['post', 'patch', 'put'].includes(method) && op.requestBody)
    expect(writes.length).toBeGreaterThanOrEqual(14)
    for (const [method, path, op] of writes) {
      const schema = jsonSchema(op)
      const fields = Object.keys(schema?.properties ?? {}).length
      const union = (schema?.anyOf ?? schema?.oneOf ?? []).length
      expect({ method, path, described: fields > 0 || union > 0 }).toEqual({ method, path, described: true })
    }
  })

  test("POST /admin/keys documents CreateKey's fields; revoke and rotate may be sent with no body", () => {
    const create = jsonSchema(doc.paths['/admin/keys']?.post)
    expect(Object.keys(create?.properties ?? {})).toEqual(expect.arrayContaining(['user_id', 'expires_at', 'team_id', 'models', 'scopes', 'limits', 'budget']))
    expect(create?.required).toEqual(['user_id'])
    expect(doc.paths['/admin/keys']?.post?.requestBody?.required).toBe(true)
    expect(Object.keys(jsonSchema(doc.paths['/admin/keys/{id}/rotate']?.post)?.properties ?? {})).toEqual(['grace_seconds'])
    expect(Object.keys(jsonSchema(doc.paths['/admin/keys/{id}/revoke']?.post)?.properties ?? {})).toEqual(['reason'])
    expect(doc.paths['/admin/keys/{id}/revoke']?.post?.requestBody?.required).toBe(false)
    expect(doc.paths['/admin/keys/{id}/rotate']?.post?.requestBody?.required).toBe(false)
  })

  test('every /admin operation takes the admin key, a bearer scheme of its own', () => {
    expect(doc.components.securitySchemes.admin).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(admin.length).toBeGreaterThanOrEqual(30)
    for (const [method, path, op] of admin) expect({ method, path, security: op.security }).toEqual({ method, path, security: [{ admin: [] }] })
    // The client routes keep the API key schemes.
    expect(doc.paths['/v1/chat/completions']?.post?.security).toEqual([{ bearer: [] }, { apiKey: [] }])
  })

  test('POST /admin/keys and its rotate document the 201 answer, field for field what the API sends', async () => {
    const shape = (path: string) => doc.paths[path]?.post?.responses?.['201']?.content?.['application/json']?.schema
    const fields = (schema: Schema | undefined) => Object.keys(schema?.properties ?? {}).sort()
    const call = async (path: string, body: unknown) => {
      const res = await fetch(`${gw.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      expect({ path, status: res.status }).toEqual({ path, status: 201 })
      return (await res.json()) as Record<string, unknown>
    }
    const user = await call('/admin/users', {})
    const key = await call('/admin/keys', { user_id: user.id })
    expect(fields(shape('/admin/keys'))).toEqual(Object.keys(key).sort())
    expect(fields(shape('/admin/keys'))).toContain('key')
    const rotated = await call(`/admin/keys/${key.id}/rotate`, {})
    expect(fields(shape('/admin/keys/{id}/rotate'))).toEqual(Object.keys(rotated).sort())
    expect(fields(shape('/admin/keys/{id}/rotate')?.properties?.previous)).toEqual(Object.keys(rotated.previous as object).sort())
  })
})

describe('GET /swagger/json: responses', () => {
  const ENVELOPE = '#/components/schemas/ErrorEnvelope'
  let doc: OpenApiDoc
  let operations: Array<[string, string, Operation]>
  let refs: CheckOptions['refs']
  beforeAll(async () => {
    doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as OpenApiDoc
    operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => [method, path, op] as [string, string, Operation]))
    refs = Object.fromEntries(Object.entries(doc.components.schemas).map(([name, schema]) => [`#/components/schemas/${name}`, schema]))
  })
  const isEnvelope = (schema: JsonSchema | undefined) => schema?.$ref === ENVELOPE || (schema?.allOf ?? []).some((s) => s.$ref === ENVELOPE)
  const errorStatuses = (op: Operation | undefined) =>
    Object.entries(op?.responses ?? {})
      .filter(([status, response]) => /^[45]/.test(status) && isEnvelope(response.content?.['application/json']?.schema))
      .map(([status]) => status)
  /** The schema the document declares for `status` of an operation, as JSON. */
  const declared = (method: string, path: string, status: number, type = 'application/json') => {
    const schema = doc.paths[path]?.[method]?.responses?.[String(status)]?.content?.[type]?.schema
    expect({ method, path, status, declared: schema !== undefined }).toEqual({ method, path, status, declared: true })
    return schema!
  }
  /** A real answer against the schema declared for its status: no field undeclared, none missing or of another type. */
  const conforms = async (method: string, path: string, res: Response, undeclared: CheckOptions['undeclared'] = 'error') => {
    const body = (await res.json()) as unknown
    expect({ method, path, status: res.status, problems: schemaProblems(declared(method, path, res.status), body, { refs, undeclared }) }).toEqual({ method, path, status: res.status, problems: [] })
    return body as Record<string, unknown>
  }
  const adminCall = (method: string, path: string, body?: unknown) =>
    fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }) })

  test('the error envelope is one schema in components', () => {
    const envelope = doc.components.schemas.ErrorEnvelope
    expect(envelope?.required).toEqual(['error'])
    expect(Object.keys(envelope?.properties?.error?.properties ?? {}).sort()).toEqual(['code', 'message', 'param', 'type'])
  })

  test('every operation declares a 2xx answer and at least one error in the envelope', () => {
    expect(operations.length).toBeGreaterThanOrEqual(50)
    for (const [method, path, op] of operations) {
      const ok = Object.keys(op.responses ?? {}).filter((status) => /^2/.test(status))
      expect({ method, path, ok: ok.length > 0, errors: errorStatuses(op).length > 0 }).toEqual({ method, path, ok: true, errors: true })
    }
  })

  test('every /admin operation declares 401 invalid_admin_key; creates answer 201', () => {
    for (const [method, path, op] of operations.filter(([, path]) => path.startsWith('/admin/'))) {
      expect({ method, path, has401: errorStatuses(op).includes('401') }).toEqual({ method, path, has401: true })
    }
    const creates: Array<[string, string]> = [
      ['post', '/admin/users'],
      ['post', '/admin/teams'],
      ['post', '/admin/teams/{id}/members'],
      ['post', '/admin/keys'],
      ['post', '/admin/keys/{id}/rotate'],
      ['post', '/admin/providers'],
      ['post', '/admin/models'],
    ]
    for (const [method, path] of creates) {
      expect({ method, path, statuses: Object.keys(doc.paths[path]?.[method]?.responses ?? {}).filter((s) => /^2/.test(s)) }).toEqual({ method, path, statuses: ['201'] })
    }
    expect(errorStatuses(doc.paths['/admin/users']?.post)).toEqual(expect.arrayContaining(['400', '401', '409']))
    expect(errorStatuses(doc.paths['/admin/users/{id}']?.get)).toEqual(expect.arrayContaining(['401', '404']))
  })

  test('the model routes declare the errors of the client table, and a stream as text/event-stream', () => {
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/embeddings']) {
      expect({ path, errors: errorStatuses(doc.paths[path]?.post) }).toEqual({ path, errors: expect.arrayContaining(['400', '401', '403', '404', '413', '429', '502', '503', '504']) })
      expect(declared('post', path, 200)).toBeDefined()
    }
    for (const path of ['/v1/chat/completions', '/v1/completions']) expect(declared('post', path, 200, 'text/event-stream')).toMatchObject({ type: 'string' })
    expect(errorStatuses(doc.paths['/v1/models/{id}']?.get)).toEqual(expect.arrayContaining(['401', '403', '404']))
  })

  test('503 not_ready is declared wherever the gateway answers it: every /v1 route (a key not cached while the database is down), every /admin route (the database, a missing master key)', () => {
    const described = (method: string, path: string, status: string) => {
      const op = doc.paths[path]?.[method]
      return { method, path, status, declared: errorStatuses(op).includes(status), description: op?.responses?.[status]?.description ?? '' }
    }
    const client = operations.filter(([, path]) => path.startsWith('/v1/'))
    const admin = operations.filter(([, path]) => path.startsWith('/admin/'))
    expect(client.length).toBeGreaterThanOrEqual(7)
    for (const [method, path] of [...client, ...admin]) {
      expect(described(method, path, '503')).toEqual({ method, path, status: '503', declared: true, description: expect.stringContaining('not_ready') })
    }
    // The model routes' 503 keeps the upstream's and the quota's codes beside it.
    expect(described('post', '/v1/chat/completions', '503').description).toContain('no_healthy_upstream')
    expect(described('post', '/v1/chat/completions', '503').description).toContain('quota_backend_unavailable')
    expect(described('get', '/admin/providers', '503').description).toContain('master key')
  })

  test("the admin guard's refusals are declared on every /admin operation: 400 (a path value not percent-encoded UTF-8, NUL, a limit not in digits, a body not a JSON object), 413 (a body over 1 MiB)", async () => {
    const admin = operations.filter(([, path]) => path.startsWith('/admin/'))
    expect(admin.length).toBeGreaterThanOrEqual(40)
    const big = JSON.stringify({ metadata: 'x'.repeat(1024 * 1024) })
    for (const [method, path] of admin) {
      const plain = path.replace(/\{[^}]+\}/g, 'x')
      const tries: Array<[string, string, string | undefined]> = [
        ['NUL in the query', `${plain}?q=%00`, undefined],
        ['a limit not in digits', `${plain}?limit=ten`, undefined],
      ]
      if (path.includes('{')) tries.push(['a path value not percent-encoded UTF-8', path.replace(/\{[^}]+\}/, '%ff').replace(/\{[^}]+\}/g, 'x'), undefined])
      if (method !== 'get') tries.push(['a body not JSON', plain, '{"a":'], ['a body over 1 MiB', plain, big])
      for (const [what, url, body] of tries) {
        const res = await fetch(`${gw.url}${url}`, { method: method.toUpperCase(), headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, ...(body !== undefined && { body }) })
        const status = String(res.status)
        expect({ method, path, what, status: /^4(00|13)$/.test(status) }).toEqual({ method, path, what, status: true })
        expect({ method, path, what, status, declared: errorStatuses(doc.paths[path]?.[method]).includes(status) }).toEqual({ method, path, what, status, declared: true })
        await conforms(method, path, res)
      }
    }
  })

  test('a page size is documented as the integer it is, with no default the gateway refuses (Swagger UI filled limit=0 into Try it out)', () => {
    const limits = operations.flatMap(([method, path, op]) => (op.parameters ?? []).filter((p) => p.name === 'limit' && p.in === 'query').map((p) => ({ method, path, schema: (p as { schema?: JsonSchema & { default?: unknown } }).schema })))
    expect(limits.length).toBeGreaterThanOrEqual(8)
    for (const { method, path, schema } of limits) {
      expect({ method, path, type: schema?.type, anyOf: schema?.anyOf, default: schema?.default }).toEqual({ method, path, type: 'integer', anyOf: undefined, default: undefined })
    }
  })

  test("the envelope's code is documented as the table's or, on an upstream's own 4xx, the upstream's", () => {
    const code = doc.components.schemas.ErrorEnvelope?.properties?.error?.properties?.code as (JsonSchema & { description?: string }) | undefined
    expect(code?.description ?? '').toMatch(/table/)
    expect(code?.description ?? '').toMatch(/upstream's own 4xx answer, the upstream's code/)
    expect(doc.paths['/v1/chat/completions']?.post?.responses?.['4XX']?.description ?? '').toMatch(/its code when it sent one/)
  })

  test('every /v1 operation documents the OpenAI-Organization header', () => {
    const client = operations.filter(([, path]) => path.startsWith('/v1/'))
    expect(client.length).toBeGreaterThanOrEqual(7)
    for (const [method, path, op] of client) {
      const header = op.parameters?.find((p) => p.in === 'header' && p.name.toLowerCase() === 'openai-organization')
      expect({ method, path, header: header && { required: header.required } }).toEqual({ method, path, header: { required: false } })
    }
    // The path parameter stays beside it.
    expect(doc.paths['/v1/models/{id}']?.get?.parameters?.some((p) => p.in === 'path' && p.name === 'id')).toBe(true)
  })

  test('real answers match their declared schemas: users, teams, keys, lists, errors, providers, models, /v1/key', async () => {
    const user = await conforms('post', '/admin/users', await adminCall('POST', '/admin/users', { email: 'docs@example.com', limits: { rpm: 5 }, budget: { usd: 1, period: 'month' }, metadata: { a: 1 } }))
    await conforms('get', '/admin/users/{id}', await adminCall('GET', `/admin/users/${user.id}`))
    await conforms('get', '/admin/users', await adminCall('GET', '/admin/users'))
    const team = await conforms('post', '/admin/teams', await adminCall('POST', '/admin/teams', { name: 'Docs' }))
    await conforms('post', '/admin/teams/{id}/members', await adminCall('POST', `/admin/teams/${team.id}/members`, { user_id: user.id }))
    await conforms('get', '/admin/teams/{id}/members', await adminCall('GET', `/admin/teams/${team.id}/members`))
    const key = await conforms('post', '/admin/keys', await adminCall('POST', '/admin/keys', { user_id: user.id, team_id: team.id, models: ['mock-gpt'], expires_at: '2099-01-01T00:00:00Z' }))
    await conforms('get', '/admin/keys/{id}', await adminCall('GET', `/admin/keys/${key.id}`))
    await conforms('get', '/admin/keys', await adminCall('GET', `/admin/keys?user_id=${user.id}`))
    await conforms('get', '/admin/keys/expiring', await adminCall('GET', '/admin/keys/expiring?within=1000w'))
    await conforms('get', '/admin/providers', await adminCall('GET', '/admin/providers'))
    await conforms('get', '/admin/models', await adminCall('GET', '/admin/models'))
    await conforms('get', '/admin/providers/health', await adminCall('GET', '/admin/providers/health'))
    await conforms('post', '/admin/doctor', await adminCall('POST', '/admin/doctor', { key_id: key.id, model: 'mock-gpt' }))
    const rotated = await conforms('post', '/admin/keys/{id}/rotate', await adminCall('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: 60 }))
    // The old key in its grace period: GET /v1/key answers its grace_until too.
    const info = await conforms('get', '/v1/key', await fetch(`${gw.url}/v1/key`, { headers: { authorization: `Bearer ${key.key}` } }))
    expect(info.grace_until).toBe((rotated.previous as Record<string, unknown>).grace_until)
    // Its schema is open to the fields plugins add, so the check above cannot see one left out of it.
    expect(Object.keys(declared('get', '/v1/key', 200).properties ?? {}).sort()).toEqual(Object.keys(info).sort())
    const chat = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${rotated.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })
    // OpenAI adds fields over time: the chat completion's schema is open, and so is this check.
    await conforms('post', '/v1/chat/completions', chat, 'allow')
    await conforms('get', '/v1/models', await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${rotated.key}` } }))
    // Errors: each in the envelope its operation declares for that status.
    await conforms('get', '/admin/users/{id}', await adminCall('GET', '/admin/users/nobody'))
    await conforms('post', '/admin/users', await adminCall('POST', '/admin/users', { id: user.id }))
    await conforms('post', '/admin/users', await adminCall('POST', '/admin/users', { id: 5 }))
    await conforms('get', '/admin/users', await fetch(`${gw.url}/admin/users`))
    await conforms('get', '/v1/models/{id}', await fetch(`${gw.url}/v1/models/nope`, { headers: { authorization: `Bearer ${rotated.key}` } }))
    await conforms('get', '/v1/key', await fetch(`${gw.url}/v1/key`))
  })
})

/**
 * README.md, checked against the code it describes: what an operator copies from it (config
 * snippets, variables, routes) must work as written.
 */
describe('README.md', () => {
  const ROOT = resolve(import.meta.dir, '..')
  let readme: string
  let doc: OpenApiDoc
  beforeAll(async () => {
    readme = await Bun.file(join(ROOT, 'README.md')).text()
    doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as OpenApiDoc
  })

  /** The variables named in the first column of the Configuration section's table. */
  const tableVariables = (): string[] => {
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1))
    const rows = section.split('\n').filter((line) => /^\| `/.test(line))
    return rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)].map((m) => m[1]!))
  }

  /** Every variable the gateway's own code reads from its environment (src/, plugins/; tests aside). */
  const variablesRead = async (): Promise<Set<string>> => {
    const read = new Set<string>()
    for (const folder of ['src', 'plugins']) {
      for await (const file of new Bun.Glob('**/*.ts').scan({ cwd: join(ROOT, folder) })) {
        if (file.endsWith('.test.ts')) continue
        const text = await Bun.file(join(ROOT, folder, file)).text()
        for (const m of text.matchAll(/\benv\.([A-Za-z_][A-Za-z0-9_]*)|\benv\[\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\]/g)) read.add((m[1] ?? m[2])!)
      }
    }
    // The console's bundle is built with process.env.NODE_ENV defined as "production": no variable is read.
    read.delete('NODE_ENV')
    return read
  }

  test('every environment variable of the Configuration table is one the gateway reads, and every one it reads is in the table', async () => {
    const documented = tableVariables()
    expect(documented).toContain('SLUICE_ADMIN_KEY')
    const read = await variablesRead()
    expect(documented.filter((name) => !read.has(name))).toEqual([])
    expect([...read].filter((name) => !documented.includes(name)).sort()).toEqual([])
  })

  /** The README's ```jsonc blocks, parsed (a `// …` comment after a value dropped). */
  const jsoncBlocks = (): Array<{ text: string; value: unknown }> =>
    [...readme.matchAll(/```jsonc\n([^]*?)```/g)].map((m) => {
      const text = m[1]!.replace(/([}\],])[ \t]*\/\/[^\n]*/g, '$1')
      // A block may list several providers, comma-separated, as they sit in the "providers" array.
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch {
        value = JSON.parse(`[${text}]`)
      }
      return { text, value }
    })

  /** The environment a snippet's `${NAME}`s need, each set; and a master key, which prod needs. */
  const envFor = (text: string): Record<string, string> => ({
    ...Object.fromEntries([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => [m[1]!, 'sk-readme-example'])),
    SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
  })

  const load = (config: Record<string, unknown>, env: Record<string, string> = {}) =>
    loadConfig({ config: config as ConfigFile, env, cwd: ROOT, resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS) })

  /** A provider for each id a model snippet's targets name (the snippet shows the model alone). */
  const standIns = (models: Array<{ targets: Array<{ provider: string }> }>) =>
    [...new Set(models.flatMap((m) => m.targets.map((t) => t.provider)))].map((id) => ({ id, type: 'mock', keys: [{ id: 'k', secret: '' }] }))

  test('every jsonc snippet is valid as what it shows: a config file, providers, a model group, or limits and a budget', async () => {
    const blocks = jsoncBlocks()
    expect(blocks.length).toBeGreaterThanOrEqual(5)
    const kinds: string[] = []
    for (const { text, value } of blocks) {
      const env = envFor(text)
      const entries = (Array.isArray(value) ? value : [value]) as Array<Record<string, unknown>>
      if (!Array.isArray(value) && ('providers' in entries[0]! || 'plugins' in entries[0]!)) {
        kinds.push('config')
        // Loaded as the gateway loads a file in the repository's folder: its plugin paths resolve from there.
        const config = await load(entries[0]!, env)
        expect(config.providers.length).toBeGreaterThan(0)
      } else if (entries.every((e) => 'type' in e && 'keys' in e)) {
        kinds.push('providers')
        await load({ providers: entries }, env)
      } else if (entries.every((e) => 'targets' in e)) {
        kinds.push('model')
        const models = entries as Array<{ targets: Array<{ provider: string }> }>
        await load({ providers: standIns(models), models }, env)
      } else if (entries.every((e) => 'limits' in e || 'budget' in e)) {
        kinds.push('limits')
        for (const e of entries) {
          expect({ limits: [...Value.Errors(LimitsSchema, e.limits)].map((x) => x.message) }).toEqual({ limits: [] })
          expect({ budget: [...Value.Errors(BudgetSchema, e.budget)].map((x) => x.message) }).toEqual({ budget: [] })
        }
      } else {
        throw new Error(`a jsonc snippet of no kind this test knows; teach it to check this one:\n${text}`)
      }
    }
    expect(new Set(kinds)).toEqual(new Set(['config', 'providers', 'model', 'limits']))
  })

  test('the inline config fragments ("console", "server", a logging "alerts" option, pricing\'s "service_tiers") are valid where they go', async () => {
    const fragments = [...readme.matchAll(/`("(console|server|limits|alerts|service_tiers)": *\{[^`]*\})`/g)]
    const checked: string[] = []
    for (const [, text, key] of fragments) {
      let value: unknown
      try {
        value = JSON.parse(`{${text}}`)
      } catch {
        continue // a shape in prose, such as "server": {"port", "host"}
      }
      if (key === 'alerts') await load({ plugins: [{ use: 'logging', options: value }] })
      else if (key === 'service_tiers') await load({ models: [{ name: 'm', targets: [{ provider: 'p', model: 'm' }], pricing: { input: 1, output: 2, ...(value as object) } }], providers: standIns([{ targets: [{ provider: 'p' }] }]) })
      else await load(value as Record<string, unknown>)
      checked.push(key!)
    }
    expect(new Set(checked)).toEqual(new Set(['console', 'server', 'alerts', 'service_tiers']))
  })

  test("every option of every built-in plugin is named in the README, and logging's alerts options in its Alerts paragraph", () => {
    interface ObjectSchema { properties?: Record<string, ObjectSchema> }
    const missing: string[] = []
    for (const [name, factory] of Object.entries(BUILTIN_PLUGINS)) {
      const options = (factory() as unknown as { definition: { options?: ObjectSchema } }).definition.options
      const keys = Object.keys(options?.properties ?? {})
      expect({ name, options: keys.length > 0 }).toEqual({ name, options: true })
      for (const key of keys) if (!readme.includes(`\`${key}\``)) missing.push(`${name}: ${key}`)
    }
    const alerts = (BUILTIN_PLUGINS.logging!() as unknown as { definition: { options: ObjectSchema } }).definition.options.properties!.alerts!
    const start = readme.indexOf('Alerts: `"alerts"')
    expect(start).toBeGreaterThan(0)
    const paragraph = readme.slice(start, readme.indexOf('\n\n', start))
    for (const key of Object.keys(alerts.properties ?? {})) if (!paragraph.includes(`"${key}"`) && !paragraph.includes(`\`${key}\``)) missing.push(`logging: alerts.${key}`)
    expect(missing).toEqual([])
  })

  test("the Errors table is the gateway's closed set of codes, each with its status", () => {
    const start = readme.indexOf('## Errors')
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1))
    const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])])
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status])))
    expect(rows).toHaveLength(Object.keys(ERROR_CODES).length)
  })

  test('every metric the README names is one the code registers (src/, plugins/)', async () => {
    let source = ''
    for (const folder of ['src', 'plugins']) {
      for await (const file of new Bun.Glob('**/*.ts').scan({ cwd: join(ROOT, folder) })) if (!file.endsWith('.test.ts')) source += await Bun.file(join(ROOT, folder, file)).text()
    }
    const named = [...new Set([...readme.matchAll(/`((?:sluice|process)_[a-z_]+)/g)].map((m) => m[1]!))]
    // The request log's, named after the first by their suffix (`_queue_capacity`, `_written_total`…).
    const suffixes = [...new Set([...readme.matchAll(/`(_[a-z_]+)(?:\{[a-z,]*\})?`/g)].map((m) => m[1]!))].filter((s) => s !== '_overflow')
    expect(named.length).toBeGreaterThan(20)
    expect(suffixes.length).toBeGreaterThan(3)
    const all = [...named, ...suffixes.map((suffix) => `sluice_request_log${suffix}`)]
    expect(all.filter((name) => !new RegExp(`['"\`]${name}['"\`]`).test(source))).toEqual([])
  })

  test('every file of the repository the README names is there (a reader cannot open one that is not)', () => {
    const named = [...new Set([...readme.matchAll(/`((?:\.\/)?[A-Za-z0-9_.\/-]+\.(?:ts|md|json|toml)|(?:src|test|plugins|benchmarks|migrations)\/[A-Za-z0-9_.\/-]*)`/g)].map((m) => m[1]!))]
    // The user's own config files, and the browser tests' screenshots folder, which a run makes.
    const notOurs = /^(\.\/)?sluice\.config\.(ts|json)$|^test\/artifacts\/$/
    const paths = named.filter((path) => !notOurs.test(path))
    expect(paths.length).toBeGreaterThan(10)
    expect(paths.filter((path) => !existsSync(join(ROOT, path)))).toEqual([])
  })

  test("the defaults the README gives for the built-in plugins' options are their schemas' defaults", () => {
    interface OptionSchema { default?: unknown; properties?: Record<string, OptionSchema> }
    /** The text the README gives each plugin's options in: its own section; auth's in the Plugins section before the first plugin's. */
    const sectionOf = (plugin: string): string => {
      const start = plugin === 'auth' ? readme.indexOf('## Plugins') : readme.indexOf(`### \`${plugin}\``)
      expect({ plugin, found: start > 0 }).toEqual({ plugin, found: true })
      return readme.slice(start, readme.indexOf('\n### ', start + 1))
    }
    /** A default as written: a number, a quoted string, true or false, []; anything else (prose) is not compared. */
    const literal = (text: string): { value: unknown } | null => {
      const t = text.trim()
      if (/^-?\d+(\.\d+)?$/.test(t)) return { value: Number(t) }
      if (/^`?"[^"]*"`?$/.test(t)) return { value: t.replace(/^`?"|"`?$/g, '') }
      if (/^`?(true|false)`?$/.test(t)) return { value: t.replace(/`/g, '') === 'true' }
      if (/^`?\[\]`?$/.test(t)) return { value: [] }
      return null
    }
    const compared: string[] = []
    const wrong: Array<{ option: string; readme: unknown; schema: unknown }> = []
    for (const [plugin, factory] of Object.entries(BUILTIN_PLUGINS)) {
      const options = (factory() as unknown as { definition: { options: OptionSchema } }).definition.options.properties ?? {}
      const section = sectionOf(plugin)
      const given = new Map<string, string>()
      // Tables: | `a`, `b` | 1, 2 | …
      for (const row of section.matchAll(/^\| ((?:`[a-z_]+`(?:, )?)+) \| ([^|]*) \|/gm)) {
        const names = [...row[1]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!)
        const values = names.length > 1 ? row[2]!.split(',') : [row[2]!]
        names.forEach((name, i) => given.set(name, values[i] ?? ''))
      }
      // Prose: `name` (default…), up to a colon or the parenthesis' end.
      for (const m of section.matchAll(/`([a-z_]+)`\s*\(([^):]*)[):]/g)) if (!given.has(m[1]!)) given.set(m[1]!, m[2]!)
      for (const [name, schema] of Object.entries(options)) {
        const written = given.get(name)
        const value = written === undefined ? null : literal(written)
        if (value === null || schema.default === undefined) continue
        compared.push(`${plugin}.${name}`)
        if (!Bun.deepEquals(value.value, schema.default)) wrong.push({ option: `${plugin}.${name}`, readme: value.value, schema: schema.default })
      }
    }
    expect(wrong).toEqual([])
    // Most of them are compared: a README that stops giving them in a form read here is noticed.
    expect(compared.length).toBeGreaterThan(35)
  })

  test('the defaults the README gives for the config and the variables are what a gateway with neither gets', async () => {
    const config = await loadConfig({ config: {}, env: {}, cwd: ROOT })
    /** The number the README writes right after `before` (a field's "(default N"). */
    const after = (before: string): number => {
      const at = readme.indexOf(before)
      expect({ before, found: at >= 0 }).toEqual({ before, found: true })
      return Number(/^\s*(\d+)/.exec(readme.slice(at + before.length))?.[1])
    }
    expect({
      body_timeout_ms: after('`limits.body_timeout_ms` (default'),
      idle_timeout_s: after('`limits.idle_timeout_s` (default'),
      hook_timeout_ms: after('`limits.hook_timeout_ms` (default'),
      shutdown_grace_ms: after('`"server": {"shutdown_grace_ms":'),
      session_ttl_ms: after('"session_ttl_ms":'),
    }).toEqual({
      body_timeout_ms: config.bodyTimeoutMs,
      idle_timeout_s: config.idleTimeoutS,
      hook_timeout_ms: config.hookTimeoutMs,
      shutdown_grace_ms: config.shutdownGraceMs,
      session_ttl_ms: config.console.sessionTtlMs,
    })
    expect(readme).toContain('`"console": {"enabled": true, "session_ttl_ms": 28800000}` configures the console (these are the defaults)')
    expect(config.console.enabled).toBe(true)
    // The variables' table: the defaults column.
    const row = (name: string): string => readme.split('\n').find((line) => line.startsWith(`| \`${name}\``))?.split('|')[2]?.trim() ?? ''
    expect({ port: row('PORT`, `HOST'), database: row('DATABASE_URL'), env: row('SLUICE_ENV'), log: row('LOG_LEVEL') }).toEqual({
      port: `\`${config.port}\`, \`${config.host}\``,
      database: `\`${config.databaseUrl}\``,
      env: `\`${config.environment}\``,
      log: `\`${config.logLevel}\``,
    })
  })

  test('every route the README names with its method is one the API serves and documents', () => {
    // Console routes (/console/*) are the console page's own and are left out of the document.
    const named = [...readme.matchAll(/`(GET|POST|PATCH|PUT|DELETE) (\/(?:v1|admin)[^`\s?]*)`/g)].map((m) => [m[1]!.toLowerCase(), m[2]!] as const)
    expect(named.length).toBeGreaterThan(10)
    const missing = named.filter(([method, path]) => doc.paths[path]?.[method] === undefined)
    expect(missing).toEqual([])
  })
})
