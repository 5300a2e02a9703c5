/**
 * API docs: the Swagger UI renders with no internet (every asset served locally) and the
 * OpenAPI document describes the client and admin routes with their request bodies, and the
 * admin routes with the admin key they take.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, expectError } from './support/http.ts'

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
  responses?: Record<string, { content?: Record<string, { schema: Schema }> }>
  security?: Array<Record<string, string[]>>
}
interface OpenApiDoc {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
  components: { securitySchemes: Record<string, { type: string; scheme?: string }> }
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
