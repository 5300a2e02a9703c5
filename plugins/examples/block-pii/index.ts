import { Type } from '@sinclair/typebox'
import { definePlugin } from '../../../src/plugin.ts'
import { GatewayError } from '../../../src/errors.ts'
import type { GatewayRequest } from '../../../src/plugin.ts'

/** What this plugin can find, each a name and a pattern. */
const DETECTORS = {
  email: /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g,
  // 13 to 19 digits with optional spaces or dashes, checked with Luhn below to avoid refusing order numbers.
  card: /\b(?:\d[ -]?){12,18}\d\b/g,
  phone: /(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)/g,
  iban: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b/g,
} as const

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
      for (const [name, pattern] of detectors) {
        for (const match of text.matchAll(pattern)) if (name !== 'card' || luhn(match[0])) return name
      }
      return null
    }
    const redact = (text: string): string => {
      let out = text
      for (const [name, pattern] of detectors) {
        out = out.replace(pattern, (m) => (name !== 'card' || luhn(m) ? options.replacement : m))
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
function luhn(candidate: string): boolean {
  const digits = candidate.replace(/\D/g, '')
  if (digits.length < 13 || digits.length > 19) return false
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
