import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib'
import { GatewayError } from '../errors.ts'

/**
 * Read a JSON object body, refusing it with 413 past `limit` bytes: from Content-Length
 * before reading anything, else while reading, so an oversized chunked body is never held whole.
 * A body not all there within `timeoutMs` (0: no limit) is refused with 408 and its connection
 * closed: a client (known or not) cannot hold the gateway's sockets by sending it slowly.
 */
export async function readJsonObject(request: Request, limit: number, timeoutMs = 0): Promise<Record<string, unknown>> {
  const text = await withDeadline(readText(request, limit), timeoutMs)
  if (text.length === 0) throw new GatewayError('invalid_request', 'The request body is empty; send a JSON object.')
  return parseObject(text)
}

/**
 * A JSON object body that may be left out (an empty body reads as undefined), refused with 400 when
 * it is there but is not a JSON object, whatever its Content-Type: broken JSON is never taken for
 * "no body", which would run the call with its defaults instead of what the caller meant.
 */
export async function readOptionalJsonObject(request: Request, limit: number): Promise<Record<string, unknown> | undefined> {
  const text = await readText(request, limit)
  return text.trim().length === 0 ? undefined : parseObject(text)
}

async function readText(request: Request, limit: number): Promise<string> {
  const declared = request.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit)
  const encoding = request.headers.get('content-encoding')
  if (encoding !== null && !IDENTITY.test(encoding)) return decoded(await readCapped(request, limit), encoding, limit)
  return declared !== null ? request.text() : readCapped(request, limit).then(utf8)
}

const IDENTITY = /^\s*(?:identity)?\s*$/i

/** Decoders for a compressed body; each stops at `limit` bytes of output, so a small bomb is a 413, not memory. */
const DECODERS: Readonly<Record<string, (bytes: Buffer, limit: number) => Buffer>> = {
  gzip: (bytes, limit) => gunzipSync(bytes, { maxOutputLength: limit }),
  'x-gzip': (bytes, limit) => gunzipSync(bytes, { maxOutputLength: limit }),
  // HTTP's deflate is zlib-wrapped (RFC 9110, 8.4.1.2); some clients send the raw stream, which is taken too.
  deflate: (bytes, limit) => (zlibWrapped(bytes) ? inflateSync : inflateRawSync)(bytes, { maxOutputLength: limit }),
  br: (bytes, limit) => brotliDecompressSync(bytes, { maxOutputLength: limit }),
}

/**
 * A body sent compressed (`Content-Encoding`), as some clients send large prompts: decoded
 * within the same limit as a plain body. An encoding not known here is refused rather than read
 * as text, which would only fail later as "not valid JSON".
 */
function decoded(bytes: Buffer, encoding: string, limit: number): string {
  const name = encoding.trim().toLowerCase()
  const decode = DECODERS[name]
  if (!decode) {
    throw new GatewayError('invalid_request', `Content-Encoding "${name.slice(0, 40)}" is not supported; send the body uncompressed, or as gzip, deflate or br.`)
  }
  try {
    return utf8(decode(bytes, limit))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit)
    throw new GatewayError('invalid_request', `The request body is not valid ${name} (${(error as Error).message}); it says Content-Encoding: ${name}.`)
  }
}

const utf8 = (bytes: Buffer): string => bytes.toString('utf8')

/** zlib's two-byte header (RFC 1950): method 8 (deflate), and a check value that makes it a multiple of 31. */
const zlibWrapped = (bytes: Buffer): boolean => bytes.length >= 2 && (bytes[0]! & 0x0f) === 8 && (bytes[0]! * 256 + bytes[1]!) % 31 === 0

/**
 * How deep a request's JSON may nest. JSON.parse takes far deeper, but what then walks the value
 * does not: JSON.stringify of a value 40,000 levels deep blocks the event loop for about 2 s, and
 * past about 50,000 it overflows the stack. A body must be at least twice this long to nest deeper
 * (`[` and `]` for each level), so shorter ones, nearly all, are never scanned.
 */
export const MAX_JSON_DEPTH = 10_000

function parseObject(text: string): Record<string, unknown> {
  if (text.length > 2 * MAX_JSON_DEPTH && nestsDeeper(text, MAX_JSON_DEPTH)) {
    throw new GatewayError('invalid_request', `The request body nests JSON values more than ${MAX_JSON_DEPTH} levels deep; flatten it and send it again.`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new GatewayError('invalid_request', `The request body is not valid JSON (${(error as Error).message}). Send a JSON object with Content-Type: application/json.`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GatewayError('invalid_request', 'The request body must be a JSON object.')
  }
  return value as Record<string, unknown>
}

/**
 * Whether JSON text nests objects and arrays more than `max` deep. Strings are skipped with native
 * searches for their quotes, so a large prompt costs little; brackets inside them do not count.
 * Text that is not JSON gives some answer, and JSON.parse then refuses it.
 */
function nestsDeeper(text: string, max: number): boolean {
  let depth = 0
  let i = 0
  while (i < text.length) {
    const quote = text.indexOf('"', i)
    const end = quote === -1 ? text.length : quote
    for (; i < end; i++) {
      const c = text.charCodeAt(i)
      if (c === 0x7b || c === 0x5b) {
        if (++depth > max) return true
      } else if (c === 0x7d || c === 0x5d) depth--
    }
    if (quote === -1) return false
    // The string's end: the next quote not escaped by an odd run of backslashes.
    let from = quote + 1
    for (;;) {
      const close = text.indexOf('"', from)
      if (close === -1) return false
      let slashes = 0
      while (text.charCodeAt(close - 1 - slashes) === 0x5c) slashes++
      from = close + 1
      if (slashes % 2 === 0) break
    }
    i = from
  }
  return false
}

async function readCapped(request: Request, limit: number): Promise<Buffer> {
  if (!request.body) return Buffer.alloc(0)
  const reader = request.body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      throw tooLarge(limit)
    }
    parts.push(value)
  }
  return Buffer.concat(parts)
}

/** A body being read, the time it must have arrived by, and how to give up on it. */
interface PendingBody {
  readonly by: number
  readonly ms: number
  readonly fail: (error: GatewayError) => void
}

/** Bodies being read under a deadline: one interval checks them all, as the body watchdog does, instead of a timer each. */
const reading = new Set<PendingBody>()
let sweeper: ReturnType<typeof setInterval> | null = null
const SWEEP_MS = 500

function sweep(): void {
  if (reading.size === 0) {
    clearInterval(sweeper!)
    sweeper = null
    return
  }
  const now = performance.now()
  for (const body of reading) {
    if (now < body.by) continue
    reading.delete(body)
    body.fail(
      new GatewayError('invalid_request', `The request body did not arrive within ${body.ms / 1000} s; send it whole, at once.`, {
        status: 408,
        headers: { connection: 'close' },
      }),
    )
  }
}

/** `read`, or a 408 once `ms` have passed (checked every SWEEP_MS); the read itself goes on, and is dropped. */
function withDeadline<T>(read: Promise<T>, ms: number): Promise<T> {
  if (ms <= 0) return read
  return new Promise<T>((resolve, reject) => {
    const body: PendingBody = { by: performance.now() + ms, ms, fail: reject }
    reading.add(body)
    if (sweeper === null) {
      sweeper = setInterval(sweep, SWEEP_MS)
      sweeper.unref?.()
    }
    read.then(
      (value) => {
        reading.delete(body)
        resolve(value)
      },
      (error: unknown) => {
        reading.delete(body)
        reject(error)
      },
    )
  })
}

/**
 * The refusal of a body over `limit` bytes; `close`: its connection is closed after the answer (the
 * body was not read, so the connection stands in the middle of it).
 */
export const tooLarge = (limit: number, close = false): GatewayError =>
  new GatewayError('request_too_large', `The request body is larger than this gateway accepts (${limit} bytes). Send a smaller request.`, close ? { headers: { connection: 'close' } } : undefined)
