import { dirname, join } from 'node:path'
import { Elysia } from 'elysia'
import { openapi } from '@elysiajs/openapi'
import { getPossiblePath, unwrapSchema } from '@elysiajs/openapi/openapi'
import { OptionalKind } from '@sinclair/typebox'
import { GatewayError } from '../errors.ts'
import { echo } from '../lib/key-text.ts'
import { adminErrors, ErrorEnvelope, INTERNAL_ERROR } from './schemas.ts'

const SPEC_PATH = '/swagger/json'

const ASSETS = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
} as const

/**
 * The page's one inline script. `validatorUrl: null`: Swagger UI's default sends the document's
 * address to validator.swagger.io (a badge image) whenever the page is opened by a host name other
 * than localhost, and the docs must work, and tell nobody, with no internet. `persistAuthorization:
 * false`: the keys given to Authorize (the admin key among them) stay in the page's memory; persisted,
 * they sat in plain text in the origin's localStorage for good, past the browser's close and a
 * console sign-out, readable by any script of the origin (the console keeps the admin key out of
 * reach of scripts for that reason: an HttpOnly session cookie).
 */
const INIT = `
window.ui = SwaggerUIBundle({
  url: '/swagger/json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
  persistAuthorization: false,
  validatorUrl: null
})
`

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice API</title>
<link rel="stylesheet" href="/swagger/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/swagger/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/swagger/assets/swagger-ui-bundle.js"></script>
<script src="/swagger/assets/swagger-ui-standalone-preset.js"></script>
<script>${INIT}</script>
</body>
</html>`

/**
 * The one <style> element Swagger UI writes (swagger-ui-dist 5.x), in the SVG of its logo. Allowed
 * by its hash; were another version to change it, the logo would lose its colours, nothing else.
 */
const LOGO_STYLE = '.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}'

const sha256 = (text: string) => `'sha256-${new Bun.CryptoHasher('sha256').update(text).digest('base64')}'`

/**
 * This origin only, as the console's page: the assets are served here and the document is read
 * from here; the inline script and style are allowed by their hashes alone. Swagger UI's SVG icons
 * are data: URLs.
 */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': [
    "default-src 'none'",
    `script-src 'self' ${sha256(INIT)}`,
    `style-src 'self' ${sha256(LOGO_STYLE)}`,
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const

/**
 * Swagger UI at /swagger and the OpenAPI document at /swagger/json. The UI's assets come
 * from the installed swagger-ui-dist package, so the page renders with no internet access.
 */
export function docsRoutes(version: string) {
  // Resolve the folder without importing the package: its entry loads the whole UI bundle into memory.
  const dir = dirname(require.resolve('swagger-ui-dist/package.json'))
  const files = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { path: join(dir, name), type }]))
  const docs = new Elysia({ name: 'sluice.docs' })
  // Every route of the app this is used in: what the openapi plugin reads too (protected in Elysia's types only).
  const appRoutes = () => (docs as unknown as { getGlobalRoutes(): readonly DocumentedRoute[] }).getGlobalRoutes()
  return docs
    // Local: runs for this instance's routes only, the document's among them (registered below).
    .onAfterHandle(({ path, response }) => {
      if (path === SPEC_PATH && response !== null && typeof response === 'object') complete(response as OpenApiDoc, appRoutes())
    })
    .use(
      openapi({
        path: '/swagger',
        specPath: SPEC_PATH,
        provider: null,
        exclude: { paths: [/^\/swagger/] },
        documentation: {
          info: {
            title: 'sluice',
            version,
            description:
              'An OpenAI-compatible AI gateway. Client routes take `Authorization: Bearer sk-<env>-…` (or `x-api-key`); admin routes take the admin key. Every error is `{"error": {"message", "type", "param", "code"}}`.',
          },
          components: {
            schemas: { ErrorEnvelope },
            securitySchemes: {
              bearer: { type: 'http', scheme: 'bearer', description: 'A sluice API key (sk-<env>-…)' },
              apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'A sluice API key, for clients that cannot send a bearer token' },
              // Its own scheme, so that Swagger UI holds the admin key and an API key at once and sends each where it belongs.
              admin: { type: 'http', scheme: 'bearer', description: 'The admin key: SLUICE_ADMIN_KEY, or the one printed at first start' },
            },
          },
        },
      }),
    )
    .get('/swagger', () => new Response(PAGE, { headers: PAGE_HEADERS }), { detail: { hide: true } })
    .get(
      '/swagger/assets/:file',
      ({ params }) => {
        const file = files.get(params.file)
        if (!file) throw new GatewayError('not_found', `No asset "${echo(params.file)}" under /swagger/assets.`)
        return new Response(Bun.file(file.path), { headers: { 'content-type': file.type, 'cache-control': 'public, max-age=86400' } })
      },
      { detail: { hide: true } },
    )
}

/** Every /admin route is behind the admin key (adminGuard, or its own check); one that is not says so in its `security`. */
const ADMIN_SECURITY = [{ admin: [] }]

interface Operation {
  requestBody?: { content?: Record<string, unknown>; required?: boolean }
  security?: unknown[]
  responses?: Record<string, unknown>
  parameters?: Array<{ name: string; in: string; schema?: ParameterSchema }>
}
interface ParameterSchema {
  type?: unknown
  format?: unknown
  default?: unknown
  description?: unknown
  anyOf?: ParameterSchema[]
}
interface OpenApiDoc {
  paths?: Record<string, Record<string, Operation>>
}
interface DocumentedRoute {
  method: string
  path: string
  hooks?: { body?: unknown; detail?: { responses?: Record<string, unknown>; parameters?: Array<{ name: string; in: string }> } }
}

const isAdmin = (path: string) => path === '/admin' || path.startsWith('/admin/')

/**
 * The errors every /admin operation may answer: the admin guard's 400 (a path value not percent-encoded
 * UTF-8, NUL anywhere, a `limit` not in digits, a body that is not a JSON object), no admin key, and
 * the database (or a stored secret) unavailable.
 */
const ADMIN_EVERYWHERE = adminErrors(400, 401, 429, 503)
/** What the admin guard answers a body over ADMIN_BODY_LIMIT, on every /admin method that may carry one. */
const ADMIN_TOO_LARGE = adminErrors(413)

/**
 * Fills in what @elysiajs/openapi leaves out of the document, in place (the plugin builds it once
 * and serves that object again, so this is idempotent):
 *
 * - A route's `body` schema. Once a route has a parse hook, the plugin documents its body under the
 *   content types of its parsers named by string (`parse: 'json'`…) and skips those that are
 *   functions, such as adminGuard's `onParse` check of the admin key: the body of every guarded
 *   route came out as `content: {}`, and the empty requestBody replaced any `detail.requestBody`.
 *   It is documented here as JSON, what the API takes, with the very schema that validates it;
 *   required unless the schema is optional (a key's revoke and rotate take no body as well).
 * - A route's `detail.responses` and `detail.parameters` where the plugin replaced them: its
 *   `response` schemas take the place of every response of `detail`, and its path and query
 *   parameters the place of those of `detail` (the OpenAI-Organization header of /v1/models/{id}).
 * - The errors every operation of a kind may answer, in the envelope: 400 invalid_request, 401
 *   invalid_admin_key, 429 rate_limit_exceeded (wrong admin keys) and 503 not_ready on every /admin operation (413 request_too_large on those
 *   but GET), 500 internal_error on all.
 * - A number in the query or the path as the number it is. Elysia documents the string it coerces
 *   too, `anyOf: [{type: string, format: integer, default: 0}, {type: integer}]`, and Swagger UI
 *   fills that default into Try it out: every paged list was sent `limit=0`, which the gateway refuses.
 * - The admin key for every /admin operation that declares no `security`.
 */
function complete(doc: OpenApiDoc, routes: readonly DocumentedRoute[]): void {
  for (const route of routes) {
    for (const path of getPossiblePath(route.path)) {
      const operation = doc.paths?.[path.replace(/:([^/]+)/g, '{$1}')]?.[route.method.toLowerCase()]
      if (!operation) continue
      completeBody(operation, route.hooks?.body)
      const detail = route.hooks?.detail
      // A copy, never the object of `detail`: one constant may document several routes.
      if (detail?.responses) operation.responses = { ...detail.responses, ...operation.responses }
      const missing = (detail?.parameters ?? []).filter((p) => !operation.parameters?.some((q) => q.name === p.name && q.in === p.in))
      if (missing.length > 0) operation.parameters = [...(operation.parameters ?? []), ...missing]
    }
  }
  for (const [path, operations] of Object.entries(doc.paths ?? {})) {
    for (const [method, operation] of Object.entries(operations)) {
      for (const parameter of operation.parameters ?? []) if (parameter.schema) parameter.schema = asNumber(parameter.schema)
      operation.responses = { ...(isAdmin(path) && ADMIN_EVERYWHERE), ...(isAdmin(path) && method !== 'get' && ADMIN_TOO_LARGE), ...operation.responses }
      operation.responses['500'] ??= INTERNAL_ERROR
      if (isAdmin(path)) operation.security ??= ADMIN_SECURITY
    }
  }
}

/** Elysia's `anyOf` of a numeric string and a number, for a query or path value, as that number; any other schema as it is. */
function asNumber(schema: ParameterSchema): ParameterSchema {
  const branches = schema.anyOf
  if (branches?.length !== 2) return schema
  const coerced = branches.find((b) => b.type === 'string' && (b.format === 'integer' || b.format === 'number'))
  const number = branches.find((b) => b.type === 'integer' || b.type === 'number')
  if (!coerced || !number) return schema
  return { ...number, ...(schema.description !== undefined && { description: schema.description }) }
}

/** The request body of `operation` from the route's `body` schema, when the plugin left it empty (see {@link complete}). */
function completeBody(operation: Operation, body: unknown): void {
  const requestBody = operation.requestBody
  if (!body || !requestBody?.content || Object.keys(requestBody.content).length > 0) return
  const schema = unwrapSchema(body as Parameters<typeof unwrapSchema>[0])
  if (!schema) return
  requestBody.content['application/json'] = { schema }
  requestBody.required = !(typeof body === 'object' && OptionalKind in body)
}
