/**
 * Token counting rules, as OpenAI's cookbook "How to count tokens with tiktoken" gives them.
 * Pure functions over an `encode(text) => token count`, so they are tested without WASM and
 * run unchanged inside the counting worker.
 *
 * Chat: 3 tokens per message, every string field of a message encoded (role, content, name,
 * tool_call_id…), 1 more per `name`, and 3 to prime the reply. Tools: the cookbook's
 * `num_tokens_for_tools` rule. Images: the rule of the model, from OpenAI's vision guide (see
 * {@link imageTokens}). These are the published rules, which matched the API when published; they stay estimates.
 */
import type { Endpoint } from '../../src/plugin.ts'
import { baseModelName } from './encodings.ts'

/** Tokens of one text. Text that looks like a special token (`<|endoftext|>`) is plain text. */
export type Encode = (text: string) => number

export const TOKENS_PER_MESSAGE = 3
export const TOKENS_PER_NAME = 1
/** Every reply is primed with `<|start|>assistant<|message|>`. */
export const REPLY_PRIMER = 3

/** The cookbook's overheads of function definitions. */
export interface ToolConstants {
  funcInit: number
  propInit: number
  propKey: number
  enumInit: number
  enumItem: number
  funcEnd: number
}

/** gpt-4o, gpt-4o-mini and the other o200k models. */
export const O200K_TOOLS: ToolConstants = { funcInit: 7, propInit: 3, propKey: 3, enumInit: -3, enumItem: 3, funcEnd: 12 }
/** gpt-3.5-turbo, gpt-4 and the other cl100k models (and the older encodings, for want of a published figure). */
export const CL100K_TOOLS: ToolConstants = { funcInit: 10, propInit: 3, propKey: 3, enumInit: -3, enumItem: 3, funcEnd: 12 }

export const toolConstantsFor = (encoding: string): ToolConstants => (encoding === 'o200k_base' ? O200K_TOOLS : CL100K_TOOLS)

/**
 * How a model turns an image into prompt tokens, as OpenAI's vision guide ("Images and vision",
 * section "Calculating costs") gives it. `tiles`: `low` detail costs `base`; otherwise the image
 * is scaled (see {@link imageTokens}) and costs `base` + `tile` per 512 px tile. `patches`: the
 * number of 32 px patches covering the image (at most {@link MAX_PATCHES}) times the model's
 * multiplier, whatever the detail (the guide gives these models no low-detail figure). `area`:
 * Anthropic's rule for Claude (its vision guide, "Calculate image costs"), see {@link areaTokens}.
 */
export type ImageRule =
  | { readonly kind: 'tiles'; readonly base: number; readonly tile: number }
  | { readonly kind: 'patches'; readonly per100: number }
  | { readonly kind: 'area' }

const tiles = (base: number, tile: number): ImageRule => ({ kind: 'tiles', base, tile })
/** `per100`: the guide's multiplier × 100, kept whole so 50 patches × 1.62 is 81, not 81.00000000000001. */
const patches = (per100: number): ImageRule => ({ kind: 'patches', per100 })

/**
 * Each model family's image rule. A family covers its dated and other `-` variants
 * (`gpt-4o-mini-2024-07-18`, `o3-pro`); the longest listed family wins, so `gpt-4o-mini`
 * never takes `gpt-4o`'s rule. gpt-image-1 (input fidelity, 512 px shortest side) is not listed:
 * its images arrive on the images endpoints, which are not counted.
 */
export const IMAGE_RULES = {
  'gpt-4o': tiles(85, 170),
  'gpt-4.1': tiles(85, 170),
  'gpt-4.5': tiles(85, 170),
  'gpt-4o-mini': tiles(2833, 5667),
  'gpt-5': tiles(70, 140),
  'gpt-5-chat-latest': tiles(70, 140),
  o1: tiles(75, 150),
  'o1-pro': tiles(75, 150),
  o3: tiles(75, 150),
  'computer-use-preview': tiles(65, 129),
  'gpt-4.1-mini': patches(162),
  'gpt-4.1-nano': patches(246),
  'gpt-5-mini': patches(162),
  'gpt-5-nano': patches(246),
  'o4-mini': patches(172),
  claude: { kind: 'area' },
} as const satisfies Record<string, ImageRule>

export type ImageRuleName = keyof typeof IMAGE_RULES

/** gpt-4o's rule, for every model the table does not know (85 + 170 per tile; `low` 85). */
export const DEFAULT_IMAGE_RULE: ImageRuleName = 'gpt-4o'

const IMAGE_FAMILIES: ReadonlyMap<string, ImageRuleName> = new Map(Object.keys(IMAGE_RULES).map((name) => [name, name as ImageRuleName]))

/**
 * The image rule of a known model family, or undefined: the name (provider prefix and `ft:`
 * stripped, as for encodings), then the name cut back one `-` part at a time, so the longest
 * family that is a whole-part prefix wins (`o4-mini-high` → `o4-mini`; `gpt-4ox` → none).
 */
export function knownImageRule(model: string): ImageRuleName | undefined {
  let name = baseModelName(model)
  for (;;) {
    const rule = IMAGE_FAMILIES.get(name)
    if (rule) return rule
    const dash = name.lastIndexOf('-')
    if (dash <= 0) return undefined
    name = name.slice(0, dash)
  }
}

/** Size assumed for an image whose size the gateway cannot see (a remote URL): 765 tokens at high detail for gpt-4o. */
export const ASSUMED_IMAGE_SIZE = { width: 1024, height: 1024 } as const
/** The patch rule's side and its cap on patches per image. */
export const PATCH_SIZE = 32
export const MAX_PATCHES = 1536

type Json = Record<string, unknown>
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const str = (v: unknown): string => (typeof v === 'string' ? v : '')
const withoutPeriod = (s: string): string => (s.endsWith('.') ? s.slice(0, -1) : s)

/**
 * Prompt tokens of a request body. The endpoint decides which field is the prompt; for any
 * other endpoint (`tokens.count`) the body's shape does: `messages`, else `prompt`, else `input`.
 * `images` is the counted model's image rule (gpt-4o's when not given).
 */
export function countBody(endpoint: Endpoint, body: Json, encode: Encode, tools: ToolConstants, images: ImageRule = IMAGE_RULES[DEFAULT_IMAGE_RULE]): number {
  const kind =
    endpoint === 'chat.completions' ? 'chat' : endpoint === 'completions' ? 'prompt' : endpoint === 'embeddings' ? 'input' : Array.isArray(body.messages) ? 'chat' : body.prompt !== undefined ? 'prompt' : 'input'
  if (kind === 'chat') return countChat(body, encode, tools, images)
  return countInput(kind === 'prompt' ? body.prompt : body.input, encode)
}

/** A chat body: its messages, plus its tool (or legacy `functions`) definitions. */
export function countChat(body: Json, encode: Encode, tools: ToolConstants, images: ImageRule = IMAGE_RULES[DEFAULT_IMAGE_RULE]): number {
  const messages = Array.isArray(body.messages) ? body.messages : []
  const defs = [...(Array.isArray(body.tools) ? body.tools : []), ...(Array.isArray(body.functions) ? body.functions : [])]
  return countMessages(messages, encode, images) + countTools(defs, encode, tools)
}

/** The cookbook's `num_tokens_from_messages`, extended to content parts and tool calls. */
export function countMessages(messages: readonly unknown[], encode: Encode, images: ImageRule = IMAGE_RULES[DEFAULT_IMAGE_RULE]): number {
  let n = 0
  for (const message of messages) {
    if (!isRecord(message)) continue
    n += TOKENS_PER_MESSAGE
    for (const key in message) {
      const value = message[key]
      if (typeof value === 'string') {
        n += encode(value)
        if (key === 'name') n += TOKENS_PER_NAME
      } else if (key === 'content' && Array.isArray(value)) {
        n += countContentParts(value, encode, images)
      } else if (key === 'tool_calls' && Array.isArray(value)) {
        for (const call of value) if (isRecord(call)) n += countFunctionCall(call.function, encode)
      } else if (key === 'function_call') {
        n += countFunctionCall(value, encode)
      }
    }
  }
  return n + REPLY_PRIMER
}

/** An assistant's call: the function name and its arguments, as the model wrote them. */
function countFunctionCall(fn: unknown, encode: Encode): number {
  if (!isRecord(fn)) return 0
  return encode(str(fn.name)) + encode(str(fn.arguments))
}

/**
 * Multi-part content: text (and refusal) parts are encoded, images follow the model's image rule.
 * Audio and file parts have no published rule and count 0.
 */
export function countContentParts(parts: readonly unknown[], encode: Encode, images: ImageRule = IMAGE_RULES[DEFAULT_IMAGE_RULE]): number {
  let n = 0
  for (const part of parts) {
    if (typeof part === 'string') {
      n += encode(part)
      continue
    }
    if (!isRecord(part)) continue
    if (typeof part.text === 'string') n += encode(part.text)
    else if (typeof part.refusal === 'string') n += encode(part.refusal)
    else if (part.type === 'image_url' || isRecord(part.image_url)) {
      const image = isRecord(part.image_url) ? part.image_url : {}
      n += imageTokens(image.detail, imageSize(str(image.url)), images)
    }
  }
  return n
}

/** The cookbook's `num_tokens_for_tools`: `functions` are `{type: 'function', function}` tools or bare legacy functions. */
export function countTools(functions: readonly unknown[], encode: Encode, c: ToolConstants): number {
  let n = 0
  let any = false
  for (const entry of functions) {
    if (!isRecord(entry)) continue
    const fn = isRecord(entry.function) ? entry.function : typeof entry.name === 'string' ? entry : undefined
    if (!fn) continue
    any = true
    n += c.funcInit
    n += encode(`${str(fn.name)}:${withoutPeriod(str(fn.description))}`)
    const properties = isRecord(fn.parameters) && isRecord(fn.parameters.properties) ? fn.parameters.properties : undefined
    if (!properties) continue
    const keys = Object.keys(properties)
    if (keys.length === 0) continue
    n += c.propInit
    for (const key of keys) {
      n += c.propKey
      const property = isRecord(properties[key]) ? (properties[key] as Json) : {}
      if (Array.isArray(property.enum)) {
        n += c.enumInit
        for (const item of property.enum) n += c.enumItem + encode(String(item))
      }
      n += encode(`${key}:${typeName(property.type)}:${withoutPeriod(str(property.description))}`)
    }
  }
  return any ? n + c.funcEnd : 0
}

/** `"string"`, or `["string", "null"]` as `string,null`. */
function typeName(type: unknown): string {
  if (typeof type === 'string') return type
  if (Array.isArray(type)) return type.filter((t) => typeof t === 'string').join(',')
  return ''
}

/**
 * A completion `prompt` or an embeddings `input`: a string, strings, or token arrays (already
 * tokens: their length counts, whatever the encoding).
 */
export function countInput(input: unknown, encode: Encode): number {
  if (typeof input === 'string') return encode(input)
  if (!Array.isArray(input)) return 0
  let n = 0
  for (const item of input) {
    if (typeof item === 'string') n += encode(item)
    else if (typeof item === 'number') n += 1
    else if (Array.isArray(item)) n += item.length
  }
  return n
}

/**
 * Tokens of one image under a model's rule. Tiles: `low` detail is the base figure; otherwise
 * (`high`, `auto`, none) the image is scaled to fit 2048×2048, then down so its shorter side is
 * at most 768 px, and costs base + tile × its 512 px tiles. Patches: see {@link patchTokens}.
 * Without a known size the image is taken as 1024×1024 (gpt-4o: 768×768, 4 tiles, 765 tokens).
 * `auto` is counted as `high`, the larger figure.
 */
export function imageTokens(detail: unknown, size: { width: number; height: number } | null, rule: ImageRule = IMAGE_RULES[DEFAULT_IMAGE_RULE]): number {
  let { width, height } = size ?? ASSUMED_IMAGE_SIZE
  if (!(width > 0 && height > 0)) ({ width, height } = ASSUMED_IMAGE_SIZE)
  if (rule.kind === 'patches') return patchTokens(width, height, rule.per100)
  if (rule.kind === 'area') return areaTokens(width, height)
  if (detail === 'low') return rule.base
  if (width > 2048 || height > 2048) {
    const scale = 2048 / Math.max(width, height)
    width = Math.floor(width * scale)
    height = Math.floor(height * scale)
  }
  if (Math.min(width, height) > 768) {
    const scale = 768 / Math.min(width, height)
    width = Math.floor(width * scale)
    height = Math.floor(height * scale)
  }
  return rule.base + rule.tile * Math.ceil(width / 512) * Math.ceil(height / 512)
}

/**
 * The guide's patch rule: the 32 px patches that cover the image; past 1536 the image is scaled
 * by r = √(32² × 1536 / (w × h)), then by as much more as fits its tighter side to whole patches,
 * and the patches counted again (capped at 1536). Tokens are patches × the model's multiplier,
 * rounded up (the guide does not say how; up never counts less than the bill).
 * The guide's example: 1800×2400 is 57 × 75 = 4275 patches, scaled to 33 × 44 = 1452.
 */
function patchTokens(width: number, height: number, per100: number): number {
  let n = Math.ceil(width / PATCH_SIZE) * Math.ceil(height / PATCH_SIZE)
  if (n > MAX_PATCHES) {
    const r = Math.sqrt((PATCH_SIZE * PATCH_SIZE * MAX_PATCHES) / (width * height))
    const across = (width * r) / PATCH_SIZE
    const down = (height * r) / PATCH_SIZE
    // At least one patch a side, so a sliver of an image still scales by its other side.
    const fit = Math.min(Math.max(1, Math.floor(across)) / across, Math.max(1, Math.floor(down)) / down)
    n = Math.min(MAX_PATCHES, wholeCeil(across * fit) * wholeCeil(down * fit))
  }
  return Math.ceil((n * per100) / 100)
}

/** Anthropic's limits: an image is scaled down until its long side is at most 1568 px and it costs at most about 1600 tokens. */
const AREA_MAX_SIDE = 1568
const AREA_MAX_TOKENS = 1600
/** Pixels a token under the area rule. */
const PIXELS_PER_TOKEN = 750

/**
 * Anthropic's rule for Claude: width × height / 750 tokens, rounded up, after the image is scaled
 * (aspect kept) so its long side is at most 1568 px; scaled further until it costs at most 1600,
 * which is then what it costs. The detail is not read: Claude has none. The guide's examples:
 * 200×200 about 54, 1000×1000 about 1334, 1092×1092 about 1590.
 */
function areaTokens(width: number, height: number): number {
  const long = Math.max(width, height)
  if (long > AREA_MAX_SIDE) {
    const scale = AREA_MAX_SIDE / long
    width = Math.max(1, Math.floor(width * scale))
    height = Math.max(1, Math.floor(height * scale))
  }
  return Math.min(AREA_MAX_TOKENS, Math.ceil((width * height) / PIXELS_PER_TOKEN))
}

/** Ceiling of a value that is a whole number in exact arithmetic but may carry float error (33.000000000000004 is 33). */
const wholeCeil = (x: number): number => Math.ceil(x - 1e-9)

/** Base64 characters read from a data URL to find the size: enough for a JPEG with EXIF before its frame header. */
const IMAGE_HEADER_CHARS = 96 * 1024

/** Width and height of a PNG, GIF, JPEG or WebP sent as a base64 data URL; null for anything else (remote URLs). */
export function imageSize(url: string): { width: number; height: number } | null {
  if (!url.startsWith('data:')) return null
  const comma = url.indexOf(',')
  if (comma < 0 || !url.slice(0, comma).endsWith(';base64')) return null
  const head = url.slice(comma + 1, comma + 1 + IMAGE_HEADER_CHARS)
  const b = Buffer.from(head.slice(0, head.length - (head.length % 4)), 'base64')
  if (b.length >= 24 && b[0] === 0x89 && b.toString('latin1', 1, 4) === 'PNG') return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) }
  if (b.length >= 10 && b.toString('latin1', 0, 3) === 'GIF') return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) }
  if (b.length >= 30 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return webpSize(b)
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(b)
  return null
}

function webpSize(b: Buffer): { width: number; height: number } | null {
  const chunk = b.toString('latin1', 12, 16)
  if (chunk === 'VP8X') return { width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) }
  if (chunk === 'VP8 ') return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff }
  if (chunk === 'VP8L') {
    const bits = b.readUInt32LE(21)
    return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >> 14) & 0x3fff) }
  }
  return null
}

/** The first start-of-frame marker's size; markers are walked by their lengths. */
function jpegSize(b: Buffer): { width: number; height: number } | null {
  let i = 2
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null
    const marker = b[i + 1]!
    if (marker === 0xff) {
      i++
      continue
    }
    const length = b.readUInt16BE(i + 2)
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { width: b.readUInt16BE(i + 7), height: b.readUInt16BE(i + 5) }
    }
    i += 2 + length
  }
  return null
}

/**
 * Longest run of non-space (or space) characters encoded in one piece. BPE merging is
 * quadratic in a piece's length (100 KB of one letter takes tiktoken 7 s), so longer runs —
 * base64, minified code, CJK text without spaces — are cut, preferably where tiktoken's own
 * pattern starts a new piece: before punctuation or a digit that follows a letter, and so on
 * (see cutBefore). A cut elsewhere (inside a run of letters tiktoken takes as one piece) may move
 * the count by a token: such a piece's BPE merges run across the whole of it, by rank, so no
 * place in it is known to be a token boundary without running them.
 */
export const MAX_RUN = 256
/** How far back from the limit a cut looks for such a boundary. */
const CUT_LOOKBACK = 64

/**
 * Whether an encoding's pattern starts a piece at an upper-case letter that follows a lower-case
 * one (o200k_base: `[upper]*[lower]+` is a piece, so `fooBar` is `foo`, `Bar`); cl100k_base and the
 * older ones take a run of letters as one piece.
 */
export const cutsAtCase = (encoding: string): boolean => encoding === 'o200k_base'

/**
 * `text` in pieces that are safe to encode separately; `[text]` (no copy) for ordinary text.
 * `atCase`: the encoding starts a piece at a lower- to upper-case change (see cutsAtCase).
 */
export function segments(text: string, limit: number = MAX_RUN, atCase = false): string[] {
  if (text.length <= limit) return [text]
  let out: string[] | undefined
  let start = 0
  let runStart = 0
  let inSpace = isSpace(text.charCodeAt(0))
  for (let i = 1; i < text.length; i++) {
    const space = isSpace(text.charCodeAt(i))
    if (space !== inSpace) {
      inSpace = space
      runStart = i
      continue
    }
    if (i - runStart < limit) continue
    const cut = inSpace ? i : cutBefore(text, i, runStart, atCase)
    ;(out ??= []).push(text.slice(start, cut))
    start = runStart = cut
  }
  if (!out) return [text]
  out.push(text.slice(start))
  return out
}

/**
 * A cut position in the run from `runStart` (a piece's start: after a space or a cut), close
 * before `i` and at most `i`, where tiktoken's own pattern (cl100k_base, o200k_base) starts a
 * new piece if there is one: before punctuation or a digit that follows a letter, before an
 * ASCII letter or punctuation that follows a digit, before a digit that follows punctuation,
 * and with `atCase` (o200k_base) before an upper- or title-case letter that follows a lower-case one.
 * Else, in a run of digits, a multiple of 3 digits into it (digits are pieces of up to 3 from the
 * start of their run). Never inside a surrogate pair.
 */
function cutBefore(text: string, i: number, runStart: number, atCase: boolean): number {
  const floor = Math.max(runStart + 1, i - CUT_LOOKBACK)
  for (let j = i; j > floor; j--) {
    const c = text.charCodeAt(j)
    const before = text.charCodeAt(j - 1)
    if ((isPunctuation(c) || isDigit(c)) && isLetter(before)) return j
    if (isDigit(before) && (isPunctuation(c) || isAsciiLetter(c))) return j
    if (isDigit(c) && isPunctuation(before)) return j
    if (atCase && startsCase(text, j)) return j
  }
  if (isDigit(text.charCodeAt(i)) && isDigit(text.charCodeAt(i - 1))) {
    // A cut inside digits was made a multiple of 3 into them: counting from the run's start is the same.
    let start = i - 1
    while (start > runStart && isDigit(text.charCodeAt(start - 1))) start--
    const cut = i - ((i - start) % 3)
    if (cut > floor) return cut
  }
  const c = text.charCodeAt(i)
  return c >= 0xdc00 && c <= 0xdfff ? i - 1 : i
}

const LOWER_CASE = /^\p{Ll}$/u
const UPPER_CASE = /^[\p{Lu}\p{Lt}]$/u

/**
 * Whether the character at `j` is an upper- or title-case letter (\p{Lu}, \p{Lt}) and the one
 * before it a lower-case one (\p{Ll}): where o200k_base's pattern ends a piece of letters and
 * starts the next. (Letters of neither case, \p{Lm} and \p{Lo} such as CJK, belong to both sides
 * of its pattern, and start nothing.)
 */
function startsCase(text: string, j: number): boolean {
  const c = text.charCodeAt(j)
  const before = text.charCodeAt(j - 1)
  if (c < 0x80 && before < 0x80) return c >= 65 && c <= 90 && before >= 97 && before <= 122
  // A low surrogate at j is inside a pair: no letter starts there.
  if (c >= 0xdc00 && c <= 0xdfff) return false
  const previous = before >= 0xdc00 && before <= 0xdfff && j >= 2 ? text.slice(j - 2, j) : text[j - 1]!
  return UPPER_CASE.test(String.fromCodePoint(text.codePointAt(j)!)) && LOWER_CASE.test(previous)
}

function isSpace(c: number): boolean {
  return (
    c === 32 || (c >= 9 && c <= 13) || c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000
  )
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57
const isAsciiLetter = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122)

function isPunctuation(c: number): boolean {
  if (c < 0x80) return !isSpace(c) && !isDigit(c) && !((c >= 65 && c <= 90) || (c >= 97 && c <= 122))
  // General punctuation, CJK symbols and punctuation, fullwidth ASCII punctuation.
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x3001 && c <= 0x303f) || (c >= 0xff01 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20) || (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65)
}

const isLetter = (c: number): boolean => !isSpace(c) && !isDigit(c) && !isPunctuation(c)

/** Tokens of `text` through an encoder of one piece at a time, cut by {@link segments} (`atCase`: see cutsAtCase). */
export function segmentedEncode(encodeOne: Encode, limit: number = MAX_RUN, atCase = false): Encode {
  return (text) => {
    const parts = segments(text, limit, atCase)
    let n = 0
    for (const part of parts) n += encodeOne(part)
    return n
  }
}
