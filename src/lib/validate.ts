import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { GatewayError } from '../errors.ts'

/** `/messages/0/role` → `messages[0].role`, as OpenAI names parameters. */
export function pointerToParam(pointer: string): string {
  return pointer
    .split('/')
    .filter(Boolean)
    .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join('')
}

/**
 * A body check compiled once at boot from the same TypeBox schema the OpenAPI document
 * shows. It checks and never rewrites: the body reaches the upstream as the client sent it.
 */
export function compileCheck<T extends TSchema>(schema: T): (value: Record<string, unknown>) => Record<string, unknown> {
  const compiled = TypeCompiler.Compile(schema)
  return (value) => {
    if (compiled.Check(value)) return value
    throw invalidRequest(compiled.Errors(value).First())
  }
}

/** The 400 for a value a schema refused, from its first error (Elysia's route checks use it too). */
export function invalidRequest(first: ValueError | undefined): GatewayError {
  const reason = first ? explain(first) : undefined
  const param = reason?.path ? pointerToParam(reason.path) : null
  const message = !reason
    ? 'The request body is not valid for this endpoint.'
    : reason.missing && param
      ? `Missing required parameter "${param}".`
      : `Invalid value for ${param ? `"${param}"` : 'the body'}: ${reason.message}.`
  return new GatewayError('invalid_request', message, { param })
}

/** Errors that only say the value is of another type, as opposed to a value of the right type that breaks a bound. */
const WRONG_TYPE: ReadonlySet<ValueErrorType> = new Set([
  ValueErrorType.Array,
  ValueErrorType.Boolean,
  ValueErrorType.Integer,
  ValueErrorType.Literal,
  ValueErrorType.Null,
  ValueErrorType.Number,
  ValueErrorType.Object,
  ValueErrorType.String,
])

interface Reason {
  path: string
  message: string
  /** The value had none of the expected types (nothing more precise to say). */
  wrongType: boolean
  /** A required field is absent. */
  missing?: boolean
}

/**
 * What to tell the client about a failed check. A union (a field that may be null, a prompt of
 * several shapes) fails as a whole with TypeBox's bare "Expected union value"; the variants that
 * got furthest into the value say more (`tools[0].type`, `prompt[1]` of a token list holding a
 * string), and among those one whose type the value had (`temperature` above 2). When they all
 * refused the value's type, the message lists the types it may have. Runs only for a refused body.
 */
function explain(error: ValueError): Reason {
  const own = { path: error.path, message: error.message, wrongType: WRONG_TYPE.has(error.type), missing: error.type === ValueErrorType.ObjectRequiredProperty }
  if (error.type !== ValueErrorType.Union) return own
  const reasons: Reason[] = []
  for (const variant of error.errors) {
    const first = variant.First()
    if (first) reasons.push(explain(first))
  }
  let furthest: Reason[] = []
  for (const r of reasons) {
    const order = furthest.length === 0 ? 1 : compareProgress(r.path, furthest[0]!.path)
    if (order > 0) furthest = [r]
    else if (order === 0) furthest.push(r)
  }
  if (furthest.length === 0) return own
  const precise = furthest.find((r) => !r.wrongType)
  if (precise) return precise
  const kinds = [...new Set(furthest.map((r) => r.message.replace(/^Expected /, '')))]
  return { path: furthest[0]!.path, message: `Expected ${kinds.join(' or ')}`, wrongType: true }
}

/** Which of two error paths lies further into the value: deeper, or at a later item of the same list. */
function compareProgress(a: string, b: string): number {
  const x = a.split('/')
  const y = b.split('/')
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] === y[i]) continue
    const [m, n] = [Number(x[i]), Number(y[i])]
    return Number.isInteger(m) && Number.isInteger(n) ? m - n : 0
  }
  return x.length - y.length
}
