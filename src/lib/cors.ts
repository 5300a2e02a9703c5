/**
 * Cross-origin access to the client API (`/v1/*`) for web pages of the origins an operator
 * lists (`server.cors.origins`): the answers carry `Access-Control-Allow-Origin`, and a browser's
 * preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before any
 * plugin, since it carries no key. The admin API never takes part: the console is served from the
 * gateway's own origin, and a page elsewhere must not drive it with an operator's session.
 */
import { TOKEN_LIST } from './http-token.ts'

export interface CorsSettings {
  /** Exact origins (`https://app.example.com`), or `*` for any. */
  origins: readonly string[]
  /** Seconds a browser may keep a preflight's answer. */
  maxAgeS: number
}

/** What a client page may read of an answer besides the CORS-safelisted headers. */
const EXPOSED = [
  'x-request-id',
  'retry-after',
  'x-should-retry',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
].join(', ')

/**
 * The problem with a configured origin, or null: an origin is a scheme, a host and maybe a port,
 * written as browsers send it (`https://app.example.com`, no path, no trailing slash), or `*` alone.
 */
export function originProblem(origin: string, all: readonly string[]): string | null {
  if (origin === '*') return all.length === 1 ? null : '"*" allows every origin: list it alone'
  const parsed = URL.parse(origin)
  if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') || parsed.origin !== origin) {
    return `"${origin}" is not an origin as browsers send it (scheme://host[:port], lower case, no path): ${parsed && parsed.origin !== 'null' ? `"${parsed.origin}"` : 'e.g. "https://app.example.com"'}`
  }
  return null
}

export class Cors {
  private readonly any: boolean
  private readonly allowed: ReadonlySet<string>

  constructor(private readonly settings: CorsSettings) {
    this.any = settings.origins.includes('*')
    this.allowed = new Set(settings.origins)
  }

  /** Whether a path takes part: the client API only. */
  static applies(url: string): boolean {
    // The path's slash is the first from the 9th character on (see routable in src/server.ts).
    return url.startsWith('/v1/', url.indexOf('/', 8))
  }

  /** The origin to name in an answer to a request from `origin`, or null when it is not allowed. */
  private allow(origin: string | null): string | null {
    if (origin === null) return null
    if (this.any) return '*'
    return this.allowed.has(origin) ? origin : null
  }

  /**
   * The answer to a browser's preflight of a client API route, or null when the request is none
   * (no `Origin` or no `Access-Control-Request-Method`: an ordinary OPTIONS). A preflight from an
   * origin not listed gets no CORS header, and the browser does not send the request.
   */
  preflight(request: Request, methods: readonly string[]): Response | null {
    const origin = request.headers.get('origin')
    const method = request.headers.get('access-control-request-method')
    if (origin === null || method === null) return null
    const headers: Record<string, string> = { vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers', allow: methods.join(', ') }
    const allowed = this.allow(origin)
    if (allowed !== null) {
      headers['access-control-allow-origin'] = allowed
      headers['access-control-allow-methods'] = methods.join(', ')
      const asked = request.headers.get('access-control-request-headers')
      // The headers a client page sends (Authorization, x-api-key, OpenAI-Organization, the SDKs' own): any it asks for.
      if (asked !== null && TOKEN_LIST.test(asked.trim())) headers['access-control-allow-headers'] = asked.trim()
      headers['access-control-max-age'] = String(this.settings.maxAgeS)
    }
    return new Response(null, { status: 204, headers })
  }

  /** Let the page of an allowed origin read an answer of the client API. */
  decorate(request: Request, response: Response): Response {
    const allowed = this.allow(request.headers.get('origin'))
    if (allowed === null) return response
    try {
      setCors(response.headers, allowed)
      return response
    } catch {
      // Headers of a response that cannot change (one handed on as it came): a copy that can.
      const copy = new Response(response.body, response)
      setCors(copy.headers, allowed)
      return copy
    }
  }
}

function setCors(headers: Headers, origin: string): void {
  headers.set('access-control-allow-origin', origin)
  headers.set('access-control-expose-headers', EXPOSED)
  if (origin !== '*') headers.append('vary', 'Origin')
}
