import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
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
    const first = compiled.Errors(value).First()
    const param = first?.path ? pointerToParam(first.path) : null
    throw new GatewayError('invalid_request', first ? `Invalid value for ${param ? `"${param}"` : 'the body'}: ${first.message}.` : 'The request body is not valid for this endpoint.', { param })
  }
}
