/**
 * The README's "Write a plugin" example is a file of the plugin project fixture, word for word: `bun
 * run typecheck` compiles it as a project importing 'sluice' would, and here it runs, listed in a
 * config as the README says (`{ "use": path, "options" }`).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { resolve } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { postJson } from './support/http.ts'

const EXAMPLE = resolve(import.meta.dir, 'fixtures/plugin-project/require-user-field.ts')
let upstream: MockUpstream
let gw: TestGateway

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: EXAMPLE, options: { header: 'x-user' } }] }))
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

test("the README's example is the fixture's file", async () => {
  const readme = await Bun.file(resolve(import.meta.dir, '../README.md')).text()
  const section = readme.slice(readme.indexOf('### Write a plugin'))
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  expect(block).toBe(await Bun.file(EXAMPLE).text())
})

test('it does what the README says: the header is required, and sent on as the body\'s user', async () => {
  const chat = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }
  const refused = await postJson(`${gw.url}/v1/chat/completions`, chat)
  expect(refused.status).toBe(400)
  expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'invalid_request', message: "Send the end user's id in the x-user header." })
  const served = await postJson(`${gw.url}/v1/chat/completions`, chat, { 'x-user': 'end-user-7' })
  expect(served.status).toBe(200)
  await served.arrayBuffer()
  expect(upstream.stats.lastBody).toMatchObject({ user: 'end-user-7' })
})
