/**
 * The counting rules through the real tiktoken encoders, against the figures OpenAI's cookbook
 * "How to count tokens with tiktoken" published (each one matched the API's own
 * `usage.prompt_tokens` when published), plus the structure of each rule.
 */
import { beforeAll, describe, expect, test } from 'bun:test'
import { Tiktoken } from 'tiktoken/lite'
import { ModelRegistry } from '../../src/models.ts'
import {
  CL100K_TOOLS,
  IMAGE_RULES,
  O200K_TOOLS,
  countBody,
  countInput,
  countMessages,
  countTools,
  imageSize,
  imageTokens,
  knownImageRule,
  segmentedEncode,
  cutsAtCase,
  MAX_RUN,
  segments,
  type Encode,
} from './count.ts'
import { resolveImageRule } from './index.ts'

interface Ranks {
  bpe_ranks: string
  special_tokens: Record<string, number>
  pat_str: string
}

let o200k: Encode
let cl100k: Encode
let o200kWhole: Encode
let cl100kWhole: Encode
beforeAll(async () => {
  const build = (r: Ranks) => new Tiktoken(r.bpe_ranks, r.special_tokens, r.pat_str)
  const o = build((await import('tiktoken/encoders/o200k_base')).default)
  const c = build((await import('tiktoken/encoders/cl100k_base')).default)
  // As the worker builds them: encode_ordinary, long runs cut.
  o200kWhole = (text) => o.encode_ordinary(text).length
  o200k = segmentedEncode(o200kWhole, MAX_RUN, cutsAtCase('o200k_base'))
  cl100kWhole = (text) => c.encode_ordinary(text).length
  cl100k = segmentedEncode(cl100kWhole, MAX_RUN, cutsAtCase('cl100k_base'))
})

/** The cookbook's chat example: six messages, four with a `name`. */
const COOKBOOK_MESSAGES = [
  { role: 'system', content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.' },
  { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
  { role: 'system', name: 'example_assistant', content: 'Things working well together will increase revenue.' },
  { role: 'system', name: 'example_user', content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage." },
  { role: 'system', name: 'example_assistant', content: "Let's talk later when we're less busy about how to do better." },
  { role: 'user', content: "This late pivot means we don't have time to boil the ocean for the client deliverable." },
]

/** The cookbook's tools example: one function with a plain and an enum property. */
const WEATHER_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_current_weather',
      description: 'Get the current weather in a given location',
      parameters: {
        type: 'object',
        properties: {
          location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
          unit: { type: 'string', description: 'The unit of temperature to return', enum: ['celsius', 'fahrenheit'] },
        },
        required: ['location'],
      },
    },
  },
]
const WEATHER_MESSAGES = [
  { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
  { role: 'user', content: "What's the weather like in San Francisco?" },
]

describe("the cookbook's published counts", () => {
  test('the chat example with names: 129 for gpt-3.5-turbo and gpt-4 (cl100k_base), 124 for gpt-4o and gpt-4o-mini (o200k_base)', () => {
    expect(countBody('chat.completions', { messages: COOKBOOK_MESSAGES }, cl100k, CL100K_TOOLS)).toBe(129)
    expect(countBody('chat.completions', { messages: COOKBOOK_MESSAGES }, o200k, O200K_TOOLS)).toBe(124)
  })

  test('the weather-tool example: 105 for gpt-3.5-turbo and gpt-4, 101 for gpt-4o and gpt-4o-mini', () => {
    const body = { messages: WEATHER_MESSAGES, tools: WEATHER_TOOLS }
    expect(countBody('chat.completions', body, cl100k, CL100K_TOOLS)).toBe(105)
    expect(countBody('chat.completions', body, o200k, O200K_TOOLS)).toBe(101)
  })

  test('the same bodies through the token-count endpoint shape (no endpoint hint) count the same', () => {
    expect(countBody('tokens.count', { messages: COOKBOOK_MESSAGES }, o200k, O200K_TOOLS)).toBe(124)
    expect(countBody('tokens.count', { messages: WEATHER_MESSAGES, tools: WEATHER_TOOLS }, cl100k, CL100K_TOOLS)).toBe(105)
  })
})

describe('messages', () => {
  test('3 per message, every string field encoded, 3 to prime the reply', () => {
    const n = countMessages([{ role: 'user', content: 'hello there' }], o200k)
    expect(n).toBe(3 + o200k('user') + o200k('hello there') + 3)
    expect(countMessages([], o200k)).toBe(3)
  })

  test('a name costs its text and one more token', () => {
    const without = countMessages([{ role: 'user', content: 'hi' }], o200k)
    const withName = countMessages([{ role: 'user', content: 'hi', name: 'alice_smith' }], o200k)
    expect(withName - without).toBe(o200k('alice_smith') + 1)
  })

  test('assistant tool calls count their function name and arguments; the tool answer counts its id and content', () => {
    const args = '{"location":"Paris, France","unit":"celsius"}'
    const messages = [
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'get_current_weather', arguments: args } }] },
      { role: 'tool', tool_call_id: 'call_abc123', content: '{"temperature":21}' },
    ]
    const expected = 3 + o200k('assistant') + o200k('get_current_weather') + o200k(args) + (3 + o200k('tool') + o200k('call_abc123') + o200k('{"temperature":21}')) + 3
    expect(countMessages(messages, o200k)).toBe(expected)
    // The legacy single function_call counts the same way.
    const legacy = [{ role: 'assistant', content: null, function_call: { name: 'get_current_weather', arguments: args } }]
    expect(countMessages(legacy, o200k)).toBe(3 + o200k('assistant') + o200k('get_current_weather') + o200k(args) + 3)
  })

  test('multi-part content: text parts encoded, image parts by the image rule', () => {
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in these pictures?' },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          { type: 'image_url', image_url: { url: 'https://example.com/b.png' } },
        ],
      },
    ]
    expect(countMessages(messages, o200k)).toBe(3 + o200k('user') + o200k('What is in these pictures?') + 85 + 765 + 3)
  })

  test('non-string fields other than content, tool calls and function calls add nothing', () => {
    expect(countMessages([{ role: 'user', content: 'x', extra: { a: 1 }, n: 5 }], o200k)).toBe(3 + o200k('user') + o200k('x') + 3)
  })
})

describe('special-token text', () => {
  test('<|endoftext|> and friends are counted as plain text, never an error', () => {
    expect(o200k('<|endoftext|>')).toBe(7)
    expect(cl100k('<|endoftext|>')).toBeGreaterThan(1)
    const messages = [{ role: 'user', content: 'say <|endoftext|> and <|im_start|> please' }]
    expect(countMessages(messages, o200k)).toBe(3 + o200k('user') + o200k('say <|endoftext|> and <|im_start|> please') + 3)
  })
})

describe('tools', () => {
  test("the cookbook's rule, term by term (an encoder that counts characters shows each part)", () => {
    const chars: Encode = (s) => s.length
    const tools = [
      {
        type: 'function',
        function: {
          name: 'f',
          description: 'Does it.',
          parameters: { type: 'object', properties: { a: { type: 'string', description: 'An a.' }, b: { type: 'string', description: 'B', enum: ['x', 'yy'] } } },
        },
      },
    ]
    const expected =
      O200K_TOOLS.funcInit +
      'f:Does it'.length +
      O200K_TOOLS.propInit +
      (O200K_TOOLS.propKey + 'a:string:An a'.length) +
      (O200K_TOOLS.propKey + O200K_TOOLS.enumInit + (O200K_TOOLS.enumItem + 1) + (O200K_TOOLS.enumItem + 2) + 'b:string:B'.length) +
      O200K_TOOLS.funcEnd
    expect(countTools(tools, chars, O200K_TOOLS)).toBe(expected)
  })

  test('a function without properties skips the property terms; no functions costs nothing', () => {
    const chars: Encode = (s) => s.length
    expect(countTools([{ type: 'function', function: { name: 'ping', parameters: { type: 'object', properties: {} } } }], chars, CL100K_TOOLS)).toBe(10 + 'ping:'.length + 12)
    expect(countTools([], chars, CL100K_TOOLS)).toBe(0)
  })

  test('legacy `functions` count like tools', () => {
    const fn = WEATHER_TOOLS[0]!.function
    expect(countBody('chat.completions', { messages: WEATHER_MESSAGES, functions: [fn] }, o200k, O200K_TOOLS)).toBe(101)
  })
})

describe('images', () => {
  /** A PNG header (signature + IHDR) with the given size, as a data URL. */
  const png = (w: number, h: number) => {
    const b = Buffer.alloc(33)
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0)
    b.writeUInt32BE(13, 8)
    b.write('IHDR', 12, 'latin1')
    b.writeUInt32BE(w, 16)
    b.writeUInt32BE(h, 20)
    return `data:image/png;base64,${b.toString('base64')}`
  }
  /** A JPEG with an APP1 segment before its frame header. */
  const jpeg = (w: number, h: number) => {
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0x01, 0x02]), Buffer.alloc(0x0100)])
    const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, h >> 8, h & 0xff, w >> 8, w & 0xff, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    return `data:image/jpeg;base64,${Buffer.concat([Buffer.from([0xff, 0xd8]), app1, sof]).toString('base64')}`
  }
  const gif = (w: number, h: number) => {
    const b = Buffer.alloc(13)
    b.write('GIF89a', 0, 'latin1')
    b.writeUInt16LE(w, 6)
    b.writeUInt16LE(h, 8)
    return `data:image/gif;base64,${b.toString('base64')}`
  }

  /** A WebP with an extended (VP8X) header. */
  const webp = (w: number, h: number) => {
    const b = Buffer.alloc(30)
    b.write('RIFF', 0, 'latin1')
    b.writeUInt32LE(22, 4)
    b.write('WEBPVP8X', 8, 'latin1')
    b.writeUInt32LE(10, 16)
    b.writeUIntLE(w - 1, 24, 3)
    b.writeUIntLE(h - 1, 27, 3)
    return `data:image/webp;base64,${b.toString('base64')}`
  }

  test('low detail is 85; an image of unknown size at high or auto detail is taken as 1024×1024: 765', () => {
    expect(imageTokens('low', null)).toBe(85)
    expect(imageTokens('high', null)).toBe(765)
    expect(imageTokens('auto', null)).toBe(765)
    expect(imageTokens(undefined, null)).toBe(765)
  })

  test("OpenAI's published examples: 1024×1024 high is 765, 2048×4096 high is 1105", () => {
    expect(imageTokens('high', { width: 1024, height: 1024 })).toBe(765)
    expect(imageTokens('high', { width: 2048, height: 4096 })).toBe(1105)
    expect(imageTokens('high', { width: 512, height: 512 })).toBe(255)
  })

  test('the size is read from data URLs (PNG, JPEG, GIF, WebP); remote URLs have none', () => {
    expect(imageSize(png(2048, 4096))).toEqual({ width: 2048, height: 4096 })
    expect(imageSize(jpeg(640, 480))).toEqual({ width: 640, height: 480 })
    expect(imageSize(gif(100, 50))).toEqual({ width: 100, height: 50 })
    expect(imageSize(webp(800, 600))).toEqual({ width: 800, height: 600 })
    expect(imageSize('https://example.com/cat.png')).toBeNull()
    expect(imageSize('data:image/png;base64,!!!')).toBeNull()
    const part = (url: string, detail?: string) => [{ role: 'user', content: [{ type: 'image_url', image_url: { url, detail } }] }]
    const overhead = 3 + o200k('user') + 3
    expect(countMessages(part(png(2048, 4096)), o200k)).toBe(overhead + 1105)
    expect(countMessages(part(png(2048, 4096), 'low'), o200k)).toBe(overhead + 85)
    expect(countMessages(part(jpeg(640, 480)), o200k)).toBe(overhead + 85 + 170 * 2)
  })
})

describe("image rules by model (OpenAI's vision guide, Calculating costs)", () => {
  const size = (width: number, height: number) => ({ width, height })
  const rule = (model: string) => IMAGE_RULES[knownImageRule(model) ?? 'gpt-4o']

  test('gpt-4o-mini: 2833 + 5667 a tile, so 1024×1024 at high detail is 2833 + 4 × 5667', () => {
    expect(imageTokens('high', size(1024, 1024), rule('gpt-4o-mini'))).toBe(25_501)
    expect(imageTokens('auto', null, rule('gpt-4o-mini-2024-07-18'))).toBe(25_501)
    expect(imageTokens('high', size(2048, 4096), rule('gpt-4o-mini'))).toBe(2833 + 6 * 5667)
  })

  test('o1, o1-pro and o3: 75 + 150 a tile; computer-use-preview 65 + 129; gpt-5 70 + 140', () => {
    for (const model of ['o1', 'o1-2024-12-17', 'o1-pro', 'o3', 'o3-pro']) {
      expect({ model, tokens: imageTokens('high', size(1024, 1024), rule(model)) }).toEqual({ model, tokens: 75 + 4 * 150 })
    }
    expect(imageTokens('high', size(1024, 1024), rule('computer-use-preview'))).toBe(65 + 4 * 129)
    expect(imageTokens('high', size(1024, 1024), rule('gpt-5'))).toBe(70 + 4 * 140)
    expect(imageTokens('high', size(1024, 1024), rule('gpt-5-chat-latest'))).toBe(70 + 4 * 140)
  })

  /** The patch rule without a model's multiplier. */
  const patchesOnly = { kind: 'patches', per100: 100 } as const

  test("32 px patches, the guide's examples: 1024×1024 is 1024 patches, 1800×2400 is 1452; times the model's multiplier, rounded up", () => {
    expect(imageTokens('high', size(1024, 1024), patchesOnly)).toBe(1024)
    expect(imageTokens('high', size(1800, 2400), patchesOnly)).toBe(1452)
    expect(imageTokens('high', size(2400, 1800), patchesOnly)).toBe(1452)
    // 1024 × 1.62 = 1658.88; 1452 × 1.62 = 2352.24; 1024 × 2.46 = 2519.04; 1024 × 1.72 = 1761.28.
    expect(imageTokens('high', size(1024, 1024), rule('gpt-4.1-mini'))).toBe(1659)
    expect(imageTokens('high', size(1800, 2400), rule('gpt-4.1-mini-2025-04-14'))).toBe(2353)
    expect(imageTokens('high', size(1024, 1024), rule('gpt-4.1-nano'))).toBe(2520)
    expect(imageTokens('high', size(1024, 1024), rule('o4-mini'))).toBe(1762)
    expect(imageTokens('high', size(1024, 1024), rule('gpt-5-mini'))).toBe(1659)
    expect(imageTokens('high', size(1024, 1024), rule('gpt-5-nano'))).toBe(2520)
    // An unseen size is 1024×1024 here too; a small image is a few patches: 4 × 2 = 8, × 1.62 = 12.96.
    expect(imageTokens(undefined, null, rule('gpt-4.1-mini'))).toBe(1659)
    expect(imageTokens('high', size(128, 64), rule('gpt-4.1-mini'))).toBe(13)
  })

  test('patches: never more than 1536 however large or thin the image, never 0; 50 patches × 1.62 is exactly 81', () => {
    for (const [w, h] of [[8000, 8000], [100_000, 1], [1, 100_000], [4000, 1474], [4097, 33]] as const) {
      const n = imageTokens('high', size(w, h), patchesOnly)
      expect({ w, h, ok: n >= 1 && n <= 1536 }).toEqual({ w, h, ok: true })
    }
    expect(imageTokens('high', size(32 * 10, 32 * 5), rule('gpt-4.1-mini'))).toBe(81)
  })

  test('low detail: the base figure of a tile model; a patch model counts its patches whatever the detail', () => {
    expect(imageTokens('low', size(2048, 4096), rule('gpt-4o'))).toBe(85)
    expect(imageTokens('low', size(2048, 4096), rule('gpt-4o-mini'))).toBe(2833)
    expect(imageTokens('low', size(2048, 4096), rule('o1'))).toBe(75)
    expect(imageTokens('low', size(2048, 4096), rule('o3'))).toBe(75)
    expect(imageTokens('low', size(2048, 4096), rule('gpt-5'))).toBe(70)
    expect(imageTokens('low', size(2048, 4096), rule('computer-use-preview'))).toBe(65)
    expect(imageTokens('low', size(1024, 1024), rule('gpt-4.1-mini'))).toBe(imageTokens('high', size(1024, 1024), rule('gpt-4.1-mini')))
    expect(imageTokens('low', size(1024, 1024), rule('o4-mini'))).toBe(1762)
  })

  test("Claude: width × height / 750 (Anthropic's vision guide), the long side at most 1568 px, at most 1600 tokens, whatever the detail", () => {
    const claude = rule('claude-sonnet-4-5-20250929')
    expect(knownImageRule('anthropic/claude-3-5-haiku-latest')).toBe('claude')
    // The guide's table: 200×200 about 54, 1000×1000 about 1334, 1092×1092 about 1590.
    expect(imageTokens('high', size(200, 200), claude)).toBe(54)
    expect(imageTokens('low', size(1000, 1000), claude)).toBe(1334)
    expect(imageTokens(undefined, size(1092, 1092), claude)).toBe(1590)
    // 1024×1024 (an unseen size too) is 1048576 / 750 = 1398.1, so 1399, where gpt-4o's rule says 765.
    expect(imageTokens('auto', null, claude)).toBe(1399)
    // Larger images are scaled down: 3136×200 to 1568×100 (210), anything large to about 1600.
    expect(imageTokens('high', size(3136, 200), claude)).toBe(210)
    expect(imageTokens('high', size(4000, 3000), claude)).toBe(1600)
    // A group of any name serving Claude counts its images so.
    const provider = { id: 'up', type: 'anthropic' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: '' }] }
    const models = new ModelRegistry([provider], [{ name: 'sonnet', targets: [{ provider: 'up', model: 'claude-sonnet-4-5-20250929' }] }])
    expect(resolveImageRule(models, 'sonnet')).toBe('claude')
  })

  test("families: dated and other - variants, provider prefixes, fine-tunes; the longest family wins; look-alikes are unknown", () => {
    const cases = {
      'gpt-4o-mini-2024-07-18': 'gpt-4o-mini',
      'openai/gpt-4o-mini': 'gpt-4o-mini',
      'ft:gpt-4o-mini-2024-07-18:acme::abc123': 'gpt-4o-mini',
      'GPT-4O-2024-08-06': 'gpt-4o',
      'gpt-4.1-nano-2025-04-14': 'gpt-4.1-nano',
      'gpt-4.1-2025-04-14': 'gpt-4.1',
      'o4-mini-high': 'o4-mini',
      'gpt-5-mini-2025-08-07': 'gpt-5-mini',
      'computer-use-preview-2025-03-11': 'computer-use-preview',
    } as const
    for (const [model, family] of Object.entries(cases)) expect({ model, family: knownImageRule(model) }).toEqual({ model, family })
    for (const model of ['gpt-4ox', 'o10', 'gpt-5.1', 'mock-gpt', 'llama-3', 'claudex', 'gpt-4', '']) expect({ model, family: knownImageRule(model) }).toEqual({ model, family: undefined })
  })

  test("a model the table does not know keeps gpt-4o's figures: 85 + 170 a tile, 85 at low detail", () => {
    const provider = { id: 'up', type: 'openai-compatible' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: '' }] }
    const models = new ModelRegistry([provider], [{ name: 'local', targets: [{ provider: 'up', model: 'llama-3' }] }])
    for (const model of ['local', 'llama-3', 'gpt-4-turbo', 'gpt-5.1']) {
      const images = IMAGE_RULES[resolveImageRule(models, model)]
      expect({ model, high: imageTokens('high', size(1024, 1024), images), low: imageTokens('low', null, images) }).toEqual({ model, high: 765, low: 85 })
    }
  })

  test('resolveImageRule: the client name, then its upstream names; an upstream name, then the groups that target it', () => {
    const provider = { id: 'up', type: 'openai-compatible' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: '' }] }
    const models = new ModelRegistry(
      [provider],
      [
        { name: 'gpt-4o-mini', targets: [{ provider: 'up', model: 'prod-mini-deployment' }] },
        { name: 'vision', targets: [{ provider: 'up', model: 'unknown-1' }, { provider: 'up', model: 'o3-2025-04-16' }] },
        { name: 'cheap', targets: [{ provider: 'up', model: 'gpt-4.1-nano' }] },
      ],
    )
    expect(resolveImageRule(models, 'gpt-4o-mini')).toBe('gpt-4o-mini')
    expect(resolveImageRule(models, 'vision')).toBe('o3')
    expect(resolveImageRule(models, 'cheap')).toBe('gpt-4.1-nano')
    // Settlement passes the upstream model.
    expect(resolveImageRule(models, 'o4-mini-2025-04-16')).toBe('o4-mini')
    expect(resolveImageRule(models, 'prod-mini-deployment')).toBe('gpt-4o-mini')
    expect(resolveImageRule(models, 'unknown-1')).toBe('gpt-4o')
  })

  test("a request body is counted with the model's rule: text as before, each image by the rule", () => {
    const body = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in these pictures?' },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
            { type: 'image_url', image_url: { url: 'https://example.com/b.png' } },
          ],
        },
      ],
    }
    const text = 3 + o200k('user') + o200k('What is in these pictures?') + 3
    expect(countBody('chat.completions', body, o200k, O200K_TOOLS)).toBe(text + 85 + 765)
    expect(countBody('chat.completions', body, o200k, O200K_TOOLS, rule('gpt-4o-mini'))).toBe(text + 2833 + 25_501)
    expect(countBody('tokens.count', body, o200k, O200K_TOOLS, rule('o1'))).toBe(text + 75 + 675)
    expect(countBody('chat.completions', body, o200k, O200K_TOOLS, rule('gpt-4.1-mini'))).toBe(text + 1659 + 1659)
  })
})

describe('completion prompts and embedding inputs', () => {
  test('a string, strings, a token array (its length), token arrays (their lengths)', () => {
    expect(countInput('hello world', o200k)).toBe(o200k('hello world'))
    expect(countInput(['hello', 'brave new world'], o200k)).toBe(o200k('hello') + o200k('brave new world'))
    expect(countInput([15339, 1917, 0], o200k)).toBe(3)
    expect(countInput([[1, 2, 3], [4, 5]], o200k)).toBe(5)
    expect(countInput(undefined, o200k)).toBe(0)
  })

  test('the endpoint picks the field; without one the body shape does', () => {
    expect(countBody('embeddings', { input: ['a b c', 'd'] }, cl100k, CL100K_TOOLS)).toBe(cl100k('a b c') + cl100k('d'))
    expect(countBody('completions', { prompt: 'Say this is a test' }, cl100k, CL100K_TOOLS)).toBe(cl100k('Say this is a test'))
    expect(countBody('tokens.count', { input: [[1, 2], [3]] }, cl100k, CL100K_TOOLS)).toBe(3)
  })
})

describe('long runs without spaces (BPE is quadratic in a piece)', () => {
  test('ordinary text is one segment, not copied', () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(1000)
    const parts = segments(text)
    expect(parts.length).toBe(1)
    expect(parts[0]).toBe(text)
  })

  test('a run longer than the limit is cut, and the pieces cover the text exactly', () => {
    const text = `start ${'a'.repeat(1000)} end`
    const parts = segments(text, 256)
    expect(parts.join('')).toBe(text)
    const longestRun = (p: string) => Math.max(...p.split(/\s+/).map((run) => run.length))
    expect(Math.max(...parts.map(longestRun))).toBeLessThanOrEqual(256)
  })

  test('text without spaces (CJK, URLs, code) is cut before punctuation, where the count does not change', () => {
    const cjk = '今天天气很好，我们去公园散步吧。他说这个问题需要仔细考虑！'.repeat(200)
    expect(segments(cjk).length).toBeGreaterThan(10)
    expect(o200k(cjk)).toBe(o200kWhole(cjk))
    const url = `https://example.com/${'path/segment-'.repeat(100)}?q=1&r=2`
    expect(o200k(url)).toBe(o200kWhole(url))
    const code = 'function(a,b){return a+b;};'.repeat(100)
    expect(o200k(code)).toBe(o200kWhole(code))
  })

  test('long numbers and hex (digits, digits after letters and letters after digits) count as tiktoken counts them whole', () => {
    // Digits are pieces of up to 3 from the start of their run; a cut elsewhere in a run
    // regrouped them (3000 digits counted 1008 for 1000).
    let x = 7
    const pick = (chars: string, n: number) => Array.from({ length: n }, () => chars[(x = (x * 1103515245 + 12345) % 2147483648) % chars.length]).join('')
    const digits = pick('0123456789', 3000)
    const hex = pick('0123456789abcdef', 3000)
    const dotted = pick('0123456789.', 3000)
    for (const text of [digits, hex, dotted, `id=${digits}`, `sha:${hex} and ${digits}`]) {
      expect(o200k(text)).toBe(o200kWhole(text))
      expect(cl100k(text)).toBe(cl100kWhole(text))
    }
  })

  test("o200k_base: long runs of letters of both cases (base64 without digits, glued camelCase) count as tiktoken counts them whole", () => {
    // o200k_base starts a piece at an upper-case letter after a lower-case one; cl100k_base does not (a run of letters is one piece).
    let x = 11
    const pick = (chars: string, n: number) => {
      const each = Array.from(chars)
      return Array.from({ length: n }, () => each[(x = (x * 1103515245 + 12345) % 2147483648) % each.length]).join('')
    }
    const letters = 'abcdefghijklmnopqrstuvwxyz'
    const mixed = pick(letters + letters.toUpperCase(), 3000)
    const camel = Array.from({ length: 300 }, () => pick(letters.toUpperCase(), 1) + pick(letters, 6)).join('')
    const greek = pick('αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ', 3000)
    // Letters beyond the BMP (surrogate pairs) and title-case ones (ǅ).
    const astral = pick('𝐀𝐁𝐂𝐚𝐛𝐜abcABCǅǆ', 3000)
    for (const text of [mixed, camel, greek, astral, `key=${mixed}`, `${mixed} and ${camel}`]) {
      expect(segments(text, MAX_RUN, true).length).toBeGreaterThan(5)
      expect(o200k(text)).toBe(o200kWhole(text))
    }
  })

  test('a cut never splits a surrogate pair', () => {
    const emoji = '😀'.repeat(600)
    for (const part of segments(emoji, 257)) expect(part.charCodeAt(0) >= 0xdc00 && part.charCodeAt(0) <= 0xdfff).toBe(false)
  })

  test('100 KB of one letter counts in well under a second (7 s as one piece), within 1% of the exact figure', () => {
    const text = 'a'.repeat(100_000)
    const started = performance.now()
    const n = o200k(text)
    expect(performance.now() - started).toBeLessThan(1000)
    const exact = 12_500 // tiktoken's count of the whole run, measured once (it takes seconds)
    expect(Math.abs(n - exact) / exact).toBeLessThan(0.01)
  })
})
