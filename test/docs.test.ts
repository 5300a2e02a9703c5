/**
 * API docs: the Swagger UI renders with no internet (every asset served locally) and the
 * OpenAPI document describes the client routes with their request bodies.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, expectError } from './support/http.ts'

let gw: TestGateway
beforeAll(async () => {
  gw = await startGateway({ plugins: [] })
})
afterAll(() => gw.close())

interface OpenApiDoc {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { type?: string; properties?: Record<string, unknown>; required?: string[] } }> } }>>
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
