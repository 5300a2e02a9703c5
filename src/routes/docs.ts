import { dirname, join } from 'node:path'
import { Elysia } from 'elysia'
import { openapi } from '@elysiajs/openapi'
import { GatewayError } from '../errors.ts'

const ASSETS = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
} as const

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
<script>
window.ui = SwaggerUIBundle({
  url: '/swagger/json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
  persistAuthorization: true
})
</script>
</body>
</html>`

/**
 * Swagger UI at /swagger and the OpenAPI document at /swagger/json. The UI's assets come
 * from the installed swagger-ui-dist package, so the page renders with no internet access.
 */
export function docsRoutes(version: string) {
  // Resolve the folder without importing the package: its entry loads the whole UI bundle into memory.
  const dir = dirname(require.resolve('swagger-ui-dist/package.json'))
  const files = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { path: join(dir, name), type }]))
  return new Elysia({ name: 'sluice.docs' })
    .use(
      openapi({
        path: '/swagger',
        specPath: '/swagger/json',
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
            securitySchemes: {
              bearer: { type: 'http', scheme: 'bearer', description: 'A sluice API key, or the admin key for /admin routes' },
              apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
            },
          },
        },
      }),
    )
    .get('/swagger', () => new Response(PAGE, { headers: { 'content-type': 'text/html; charset=utf-8' } }), { detail: { hide: true } })
    .get(
      '/swagger/assets/:file',
      ({ params }) => {
        const file = files.get(params.file)
        if (!file) throw new GatewayError('not_found', `No asset "${params.file}" under /swagger/assets.`)
        return new Response(Bun.file(file.path), { headers: { 'content-type': file.type, 'cache-control': 'public, max-age=86400' } })
      },
      { detail: { hide: true } },
    )
}
