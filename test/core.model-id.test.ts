/**
 * `GET /v1/models/{id}` with ids that need percent-encoding in a path: a slash, a space, a
 * percent sign. The router decodes the path parameter once; the id must not be decoded again.
 * A slash may also arrive raw (clients that do not encode the id): the id is still one id.
 * Real HTTP on 127.0.0.1, no plugin.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { expectError } from './support/http.ts'

const NAMES = ['mock-gpt', 'acme/llama 3', '50%-off', '%41'] as const

let upstream: MockUpstream
let gw: TestGateway

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway(upstreamConfig(upstream.url, { models: NAMES.map((name) => ({ name, targets: [{ provider: 'up', model: 'mock-gpt' }] })) }))
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

describe('GET /v1/models/{id} decodes the id once', () => {
  test('"%25" (a lone percent sign, no such model) → 404 model_not_found, not 500', async () => {
    const error = await expectError(await fetch(`${gw.url}/v1/models/%25`), 'model_not_found')
    expect(error.message).toContain('"%"')
  })

  test('every served id, percent-encoded, is found as itself', async () => {
    for (const name of NAMES) {
      const res = await fetch(`${gw.url}/v1/models/${encodeURIComponent(name)}`)
      expect({ name, status: res.status }).toEqual({ name, status: 200 })
      expect(((await res.json()) as { id: string }).id).toBe(name)
    }
  })

  test('an id whose decoded form looks encoded is not decoded again: "%2541" is "%41", not "A"', async () => {
    const res = await fetch(`${gw.url}/v1/models/%2541`)
    expect(((await res.json()) as { id: string }).id).toBe('%41')
    await expectError(await fetch(`${gw.url}/v1/models/A`), 'model_not_found')
  })

  test('an id sent with a raw slash, as openai-python puts it in the path, is found as itself', async () => {
    // openai-python builds f"/models/{model}": the slash goes out as a slash, the space as %20.
    const res = await fetch(`${gw.url}/v1/models/acme/llama%203`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ id: 'acme/llama 3', object: 'model', owned_by: 'sluice' })
    // One trailing slash is ignored there as after an id without a slash.
    for (const path of ['acme/llama%203/', 'mock-gpt/']) expect((await fetch(`${gw.url}/v1/models/${path}`)).status).toBe(200)
    const missing = await expectError(await fetch(`${gw.url}/v1/models/acme/llama%204`), 'model_not_found')
    expect(missing.message).toContain('"acme/llama 4"')
  })

  test('an id with a malformed escape is named as sent, not as "null"', async () => {
    const error = await expectError(await fetch(`${gw.url}/v1/models/%zz`), 'model_not_found')
    expect(error.message).toContain('"%zz"')
  })

  test('the OpenAI SDK retrieves a model whose id holds a slash and a space', async () => {
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${gw.url}/v1`, maxRetries: 0 })
    expect((await client.models.retrieve('acme/llama 3')).id).toBe('acme/llama 3')
  })
})
