/**
 * The one error type of sluice. Every refusal, on every route, is a `GatewayError`
 * with a code from the closed table below; status and `type` follow from the code.
 */

/** OpenAI/Anthropic-style error families. */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'api_error'

/** The closed set of error codes (DESIGN.md, "Errors"), each with its status and type. */
export const ERROR_CODES = {
  missing_api_key: { status: 401, type: 'authentication_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  key_revoked: { status: 401, type: 'authentication_error' },
  key_expired: { status: 401, type: 'authentication_error' },
  invalid_user_for_key: { status: 403, type: 'permission_error' },
  environment_mismatch: { status: 403, type: 'permission_error' },
  model_not_allowed: { status: 403, type: 'permission_error' },
  insufficient_permissions: { status: 403, type: 'permission_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  insufficient_quota: { status: 429, type: 'rate_limit_error' },
  model_not_found: { status: 404, type: 'not_found_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  request_too_large: { status: 413, type: 'invalid_request_error' },
  upstream_error: { status: 502, type: 'api_error' },
  no_healthy_upstream: { status: 503, type: 'api_error' },
  upstream_timeout: { status: 504, type: 'api_error' },
  quota_backend_unavailable: { status: 503, type: 'api_error' },
  invalid_admin_key: { status: 401, type: 'authentication_error' },
  not_found: { status: 404, type: 'not_found_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  conflict: { status: 409, type: 'invalid_request_error' },
  not_ready: { status: 503, type: 'api_error' },
  internal_error: { status: 500, type: 'api_error' },
} as const satisfies Record<string, { status: number; type: ErrorType }>

export type ErrorCode = keyof typeof ERROR_CODES

/**
 * What a message of an upstream's failure (a 5xx, a timeout, a connection that failed) tells the
 * client to do: it may well pass, and the operator should hear of one that does not.
 */
export const RETRY_UPSTREAM = 'Retry the request; if this keeps happening, tell the operator.'

/** Options for a {@link GatewayError} beyond its code and message. */
export interface GatewayErrorOptions {
  /** The request field at fault, as OpenAI's `param`. */
  param?: string | null
  /** Overrides the table's status: an upstream's own 4xx reaches the client with its status. */
  status?: number
  /** Overrides the table's type (used for upstream errors passed through). */
  type?: ErrorType
  /** Extra response headers, e.g. `Retry-After`. */
  headers?: Record<string, string>
  /**
   * The `code` the client sees instead of `code`: an upstream's own code for its 4xx, passed
   * through (OpenAI's `context_length_exceeded`), which says more than the gateway's. Logs and
   * metrics keep the gateway's code.
   */
  upstreamCode?: string
  cause?: unknown
}

/**
 * What marks a GatewayError, the same in every copy of this module (`Symbol.for`): a plugin project
 * that installed sluice to import it has its own copy, whose GatewayError is another class than
 * the running gateway's. Checked by class alone, its refusals were no GatewayError: every one
 * answered 500 `internal_error` ("it returned an object that is no GatewayError").
 */
const BRAND = Symbol.for('sluice.GatewayError')

/** A refusal with a documented code. Returned (not thrown) by plugin hooks; thrown elsewhere is fine too. */
export class GatewayError extends Error {
  /** `instanceof GatewayError` holds for the GatewayErrors of every copy of sluice (see BRAND). */
  static override [Symbol.hasInstance](value: unknown): value is GatewayError {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
  }

  static {
    // On the prototype: an instance carries nothing more for it.
    Object.defineProperty(this.prototype, BRAND, { value: true })
  }

  readonly code: ErrorCode
  readonly status: number
  readonly type: ErrorType
  readonly param: string | null
  readonly headers: Record<string, string> | undefined
  readonly upstreamCode: string | undefined

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    // A code of a plugin's own (from JavaScript, or cast) would fail far from here, reading its status.
    if (!Object.hasOwn(ERROR_CODES, code)) throw new TypeError(`unknown error code ${JSON.stringify(code)}; use one of ${Object.keys(ERROR_CODES).join(', ')}`)
    // A refusal is an expected answer, not a bug: skipping the stack trace makes it about 5x cheaper.
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    Error.stackTraceLimit = limit
    this.name = 'GatewayError'
    const entry = ERROR_CODES[code]
    this.code = code
    this.status = options.status ?? entry.status
    this.type = options.type ?? entry.type
    this.param = options.param ?? null
    this.headers = options.headers
    this.upstreamCode = options.upstreamCode
  }

  /** The JSON envelope every client sees. */
  toJSON(): ErrorEnvelope {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.upstreamCode ?? this.code } }
  }

  /**
   * A complete HTTP response carrying the envelope, the request id and any extra headers. Elysia
   * calls it without the id for a GatewayError a route handler returns (a plugin's route, as its hooks
   * return theirs): the response then carries none of its own, and the app adds the request's own,
   * where it said `x-request-id: undefined`.
   */
  toResponse(requestId: string): Response {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      ...(requestId === undefined ? undefined : { 'x-request-id': requestId }),
      ...this.headers,
    }
    return new Response(JSON.stringify(this.toJSON()), { status: this.status, headers })
  }
}

/** The body of every error response; `code` is an ErrorCode, or an upstream's own code passed through (see GatewayErrorOptions.upstreamCode). */
export interface ErrorEnvelope {
  error: { message: string; type: ErrorType; param: string | null; code: ErrorCode | (string & {}) }
}

export const isGatewayError = (value: unknown): value is GatewayError => value instanceof GatewayError

/**
 * The gateway's code for an upstream's HTTP status (DESIGN.md): a refused provider key (401, 403)
 * and every 5xx are `upstream_error`, a 429 `rate_limit_exceeded`, other 4xx the client's
 * (404 `model_not_found`, 413 `request_too_large`, else `invalid_request`). Used for an answer
 * that failed and for an error the upstream sends mid-stream, after its 200.
 */
export function upstreamErrorCode(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'upstream_error'
  if (status === 429) return 'rate_limit_exceeded'
  if (status >= 400 && status < 500) return status === 404 ? 'model_not_found' : status === 413 ? 'request_too_large' : 'invalid_request'
  return 'upstream_error'
}
