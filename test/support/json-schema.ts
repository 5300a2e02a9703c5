/**
 * A small JSON Schema checker for the keywords the OpenAPI document uses, to hold real answers
 * against the schemas the document declares for them (test/docs.test.ts). Written here rather
 * than taken from the code under test: TypeBox's own checker reads the schema objects the routes
 * hold, not the document a client reads.
 */

export interface JsonSchema {
  $ref?: string
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: boolean | JsonSchema
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  allOf?: JsonSchema[]
  const?: unknown
  enum?: unknown[]
  format?: string
  pattern?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
}

export interface CheckOptions {
  /** Schemas that `$ref`s name, by their full reference (`#/components/schemas/ErrorEnvelope`). */
  refs?: Record<string, JsonSchema>
  /**
   * Fields a schema with `properties` does not declare: `error` reports them unless the schema
   * says `additionalProperties: true` (so an answer cannot hold a field its documentation lacks),
   * `allow` takes them as JSON Schema does.
   * @default 'error'
   */
  undeclared?: 'error' | 'allow'
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

const typeOf = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value)

/** Every way `value` fails `schema`, each with its JSON path; empty when it conforms. */
export function schemaProblems(schema: JsonSchema, value: unknown, options: CheckOptions = {}, path = '$'): string[] {
  const problems: string[] = []
  const check = (s: JsonSchema, v: unknown, p: string) => schemaProblems(s, v, options, p)
  if (schema.$ref !== undefined) {
    const target = options.refs?.[schema.$ref]
    return target ? check(target, value, path) : [`${path}: unknown $ref ${schema.$ref}`]
  }
  for (const part of schema.allOf ?? []) problems.push(...check(part, value, path))
  if (schema.anyOf && !schema.anyOf.some((s) => check(s, value, path).length === 0)) {
    problems.push(`${path}: matches none of anyOf (${schema.anyOf.map((s) => check(s, value, path)[0]).join(' | ')})`)
  }
  if (schema.oneOf && schema.oneOf.filter((s) => check(s, value, path).length === 0).length !== 1) problems.push(`${path}: does not match exactly one of oneOf`)
  if ('const' in schema && value !== schema.const) problems.push(`${path}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`)
  if (schema.enum && !schema.enum.includes(value)) problems.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`)
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type]
    const actual = typeOf(value)
    const fits = types.some((t) => t === actual || (t === 'integer' && Number.isInteger(value)))
    if (!fits) return [...problems, `${path}: ${actual} ${JSON.stringify(value)?.slice(0, 60)} is not ${types.join(' or ')}`]
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${path}: ${value} is below ${schema.minimum}`)
    if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${path}: ${value} is above ${schema.maximum}`)
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) problems.push(`${path}: shorter than ${schema.minLength}`)
    if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`${path}: longer than ${schema.maxLength}`)
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) problems.push(`${path}: "${value}" does not match ${schema.pattern}`)
    if (schema.format === 'date-time' && !RFC3339.test(value)) problems.push(`${path}: "${value}" is not an RFC 3339 time`)
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => problems.push(...check(schema.items!, item, `${path}[${i}]`)))
  if (typeOf(value) === 'object') {
    const object = value as Record<string, unknown>
    for (const name of schema.required ?? []) if (!(name in object)) problems.push(`${path}.${name}: required, missing`)
    for (const [name, field] of Object.entries(object)) {
      const declared = schema.properties?.[name]
      if (declared) problems.push(...check(declared, field, `${path}.${name}`))
      else if (typeof schema.additionalProperties === 'object') problems.push(...check(schema.additionalProperties, field, `${path}.${name}`))
      else if (schema.additionalProperties === false) problems.push(`${path}.${name}: not allowed (additionalProperties false)`)
      else if (schema.properties && schema.additionalProperties !== true && (options.undeclared ?? 'error') === 'error') problems.push(`${path}.${name}: not declared`)
    }
  }
  return problems
}
