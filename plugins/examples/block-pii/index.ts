import { Type } from '@sinclair/typebox'
import { definePlugin } from '../../../src/plugin.ts'
import { GatewayError } from '../../../src/errors.ts'
import type { GatewayRequest } from '../../../src/plugin.ts'

/** Where a match sits in a text: start and end offsets. */
type Span = readonly [start: number, end: number]

/**
 * What this plugin can find: each a name and a function giving the spans of its matches.
 *
 * Long numbers are common in prompts (order and tracking numbers, ISBNs, arithmetic), so a
 * bare run of digits counts as neither a phone number nor, on its own, a card number:
 * - a phone number needs a phone's shape: a leading `+` and country code
 *   (`+1 415 555 0100`, `+14155550100`, `+44 (0)20 7946 0958`), an area code in parentheses
 *   (`(415) 555-0100`), or three groups split by one kind of separator, the last of four digits
 *   (`415-555-0100`, `415.555.0100`, `020 7946 0958`); 8 to 15 digits in all (E.164 allows 15);
 * - a card number is 14 to 19 digits (optionally grouped by spaces or dashes) that pass Luhn
 *   and start with an issuer prefix in a length that issuer uses (see {@link CARD_ISSUERS}).
 *   13-digit numbers are not taken for cards: only old Visa cards had 13 digits, and refusing
 *   every Luhn-valid 13-digit number starting with 4 would refuse many order numbers.
 */
const DETECTORS = {
  email: (text: string) => regexSpans(text, /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g),
  card: cardSpans,
  phone: (text: string) => regexSpans(text, PHONE, (m) => within(m.replace(/\D/g, '').length, 8, 15)),
  iban: (text: string) => regexSpans(text, /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b/g),
} satisfies Record<string, (text: string) => Span[]>

/** Phone-shaped text (see {@link DETECTORS}); never a part of a longer run of digits. */
const PHONE = new RegExp(
  String.raw`(?<![\w+]|\d[ .-])(?:` +
    // International: + and a country code, then digit groups (an area code may sit in parentheses).
    String.raw`\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,5}` +
    // National, the area code in parentheses.
    String.raw`|\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,2}` +
    // National, three groups split by the same separator, the last of four digits (not a thousands grouping).
    String.raw`|(?:1[ .-])?\d{2,5}(?<sep>[ .-])\d{3,4}\k<sep>\d{4}(?!\k<sep>\d)` +
    String.raw`)(?!\w|[.-]\d)`,
  'g',
)

/**
 * Issuer prefixes (IIN ranges) and the lengths their cards are issued in: Visa, Mastercard,
 * American Express, Diners Club, JCB, Discover, UnionPay and Maestro.
 */
const CARD_ISSUERS: ReadonlyArray<readonly [prefix: RegExp, min: number, max: number]> = [
  [/^4/, 16, 19], // Visa (16 or 19; 13-digit Visa numbers are no longer issued)
  [/^(?:5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)/, 16, 16], // Mastercard
  [/^3[47]/, 15, 15], // American Express
  [/^3(?:0[0-5]|[689])/, 14, 19], // Diners Club
  [/^35(?:2[89]|[3-8]\d)/, 16, 19], // JCB
  [/^(?:6011|64[4-9]|65)/, 16, 19], // Discover
  [/^62/, 16, 19], // UnionPay
  [/^(?:50|5[6-8]|6\d)/, 16, 19], // Maestro
]

/** Whether a string of digits is a payment card number: an issuer's prefix and length, and Luhn. */
function isCardNumber(digits: string): boolean {
  return CARD_ISSUERS.some(([prefix, min, max]) => prefix.test(digits) && within(digits.length, min, max)) && luhn(digits)
}

/**
 * Card numbers: in each run of digit groups (split by single spaces or dashes), the first
 * whole groups that make a card number, so a card followed by its CVV or preceded by a
 * quantity is still found. A bare run of digits is taken whole.
 */
function cardSpans(text: string): Span[] {
  const spans: Span[] = []
  for (const run of text.matchAll(/(?<!\w)\d+(?:[ -]\d+)*(?!\w)/g)) {
    const groups = [...run[0].matchAll(/\d+/g)].map((g) => ({ start: run.index + g.index, digits: g[0] }))
    for (let i = 0; i < groups.length; i++) {
      let digits = ''
      for (let j = i; j < groups.length && digits.length < 19; j++) {
        digits += groups[j]!.digits
        if (digits.length >= 14 && digits.length <= 19 && isCardNumber(digits)) {
          spans.push([groups[i]!.start, groups[j]!.start + groups[j]!.digits.length])
          i = j
          break
        }
      }
    }
  }
  return spans
}

/** The spans of a global pattern's matches that `accept` allows. */
function regexSpans(text: string, pattern: RegExp, accept: (match: string) => boolean = () => true): Span[] {
  const spans: Span[] = []
  for (const m of text.matchAll(pattern)) if (accept(m[0])) spans.push([m.index, m.index + m[0].length])
  return spans
}

const within = (n: number, min: number, max: number): boolean => n >= min && n <= max

type Detector = keyof typeof DETECTORS

const Options = Type.Object(
  {
    /** Which kinds of personal data to look for. @default ["email", "card", "phone", "iban"] */
    detect: Type.Array(Type.Union(Object.keys(DETECTORS).map((k) => Type.Literal(k))), { default: Object.keys(DETECTORS), minItems: 1 }),
    /** `block` refuses the request with 400; `redact` replaces the match and lets it through. @default "block" */
    action: Type.Union([Type.Literal('block'), Type.Literal('redact')], { default: 'block' }),
    /** Text put in place of a match when redacting. @default "[REDACTED]" */
    replacement: Type.String({ default: '[REDACTED]' }),
  },
  { additionalProperties: false },
)

/**
 * Example plugin: keeps personal data out of prompts. It reads chat messages, legacy
 * prompts and embedding inputs in the `admit` stage, before any upstream sees them.
 */
export const blockPii = definePlugin({
  name: 'block-pii',
  options: Options,
  setup({ options, logger }) {
    const detectors = options.detect.map((name) => [name as Detector, DETECTORS[name as Detector]] as const)

    const find = (text: string): Detector | null => {
      for (const [name, spansOf] of detectors) if (spansOf(text).length > 0) return name
      return null
    }
    const redact = (text: string): string => {
      let out = text
      for (const [, spansOf] of detectors) {
        // From the end, so earlier offsets stay valid.
        for (const [start, end] of spansOf(out).reverse()) out = out.slice(0, start) + options.replacement + out.slice(end)
      }
      return out
    }

    return {
      admit(req: GatewayRequest) {
        const texts = promptTexts(req.body)
        if (texts.length === 0) return
        if (options.action === 'block') {
          for (const { text, param } of texts) {
            const kind = find(text)
            if (kind) {
              logger.info('request blocked for personal data', { request_id: req.id, kind, param })
              return new GatewayError('invalid_request', `The request contains personal data (${kind}) in ${param}; remove it and retry. This gateway does not forward personal data.`, { param })
            }
          }
          return
        }
        req.body = mapPromptTexts(req.body, redact)
      },
    }
  },
})

interface Located {
  text: string
  param: string
}

/** Every piece of prompt text in a chat, completion or embeddings body, with where it sits. */
function promptTexts(body: Record<string, unknown>): Located[] {
  const out: Located[] = []
  if (Array.isArray(body.messages)) {
    body.messages.forEach((m: unknown, i) => {
      const content = (m as { content?: unknown }).content
      if (typeof content === 'string') out.push({ text: content, param: `messages[${i}].content` })
      else if (Array.isArray(content)) {
        content.forEach((part: unknown, j) => {
          const text = (part as { text?: unknown }).text
          if (typeof text === 'string') out.push({ text, param: `messages[${i}].content[${j}].text` })
        })
      }
    })
  }
  for (const field of ['prompt', 'input'] as const) {
    const value = body[field]
    if (typeof value === 'string') out.push({ text: value, param: field })
    else if (Array.isArray(value)) value.forEach((v, i) => typeof v === 'string' && out.push({ text: v, param: `${field}[${i}]` }))
  }
  return out
}

/** A copy of the body with every prompt text passed through `fn`. */
function mapPromptTexts(body: Record<string, unknown>, fn: (s: string) => string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body }
  if (Array.isArray(body.messages)) {
    out.messages = body.messages.map((m: unknown) => {
      const msg = m as Record<string, unknown>
      if (typeof msg.content === 'string') return { ...msg, content: fn(msg.content) }
      if (Array.isArray(msg.content)) {
        return { ...msg, content: msg.content.map((p: unknown) => (typeof (p as { text?: unknown }).text === 'string' ? { ...(p as object), text: fn((p as { text: string }).text) } : p)) }
      }
      return msg
    })
  }
  for (const field of ['prompt', 'input'] as const) {
    const value = body[field]
    if (typeof value === 'string') out[field] = fn(value)
    else if (Array.isArray(value)) out[field] = value.map((v) => (typeof v === 'string' ? fn(v) : v))
  }
  return out
}

/** The Luhn checksum every payment card number satisfies. */
function luhn(digits: string): boolean {
  let sum = 0
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

export default blockPii
