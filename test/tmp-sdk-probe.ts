import OpenAI from 'openai'
import { startMockUpstream } from './fixtures/mock-upstream.ts'
const up = await startMockUpstream()
const client = new OpenAI({ baseURL: up.url, apiKey: 'sk-x', maxRetries: 0 })
const c = await client.chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })
console.log(c.choices[0]?.message.content, c.usage)
const s = await client.chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } })
let text = ''; let usage
for await (const ch of s) { text += ch.choices[0]?.delta.content ?? ''; if (ch.usage) usage = ch.usage }
console.log(text, usage)
const e = await client.embeddings.create({ model: 'mock-embed', input: 'hello' })
console.log(e.data[0]?.embedding.length, e.data[0]?.embedding.slice(0,2), up.stats.lastBody)
try { await client.chat.completions.create({ model: 'mock-fail-429', messages: [] }) } catch (err) { console.log((err as any).status, (err as any).code, (err as any).type) }
await up.stop()
