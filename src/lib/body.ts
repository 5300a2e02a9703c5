import { GatewayError } from '../errors.ts'

/**
 * Read a JSON object body, refusing it with 413 past `limit` bytes: from Content-Length
 * before reading anything, else while reading, so an oversized chunked body is never held whole.
 */
export async function readJsonObject(request: Request, limit: number): Promise<Record<string, unknown>> {
  const text = await readText(request, limit)
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
  return declared !== null ? request.text() : readCapped(request, limit)
}

function parseObject(text: string): Record<string, unknown> {
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

async function readCapped(request: Request, limit: number): Promise<string> {
  if (!request.body) return ''
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
  return Buffer.concat(parts).toString('utf8')
}

const tooLarge = (limit: number) =>
  new GatewayError('request_too_large', `The request body is larger than this gateway accepts (${limit} bytes). Send a smaller request.`)
