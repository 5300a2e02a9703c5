// The console's one way to the gateway: the /admin/* JSON API, with the session cookie
// (sent by the browser) and, on every change, the session's CSRF token in a header.
import { useCallback, useEffect, useState } from 'preact/hooks'

export const CSRF_HEADER = 'x-sluice-csrf'

/** An error answer of the admin API: its envelope's message and code, and the HTTP status. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{ message?: string, code?: string, param?: string | null }} body
   */
  constructor(status, body) {
    super(body.message || `The gateway answered HTTP ${status}.`)
    this.name = 'ApiError'
    this.status = status
    this.code = body.code || 'unknown'
    this.param = body.param ?? null
  }
}

/** @type {string | null} */
let csrf = null
/** @type {Set<() => void>} */
const signedOutListeners = new Set()

/** @param {string | null} token */
export function setCsrf(token) {
  csrf = token
}

/**
 * Called when the API says the session is over (401 invalid_admin_key).
 * @param {() => void} listener
 */
export function onSignedOut(listener) {
  signedOutListeners.add(listener)
  return () => void signedOutListeners.delete(listener)
}

/**
 * @param {'GET' | 'POST' | 'PATCH' | 'DELETE'} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrf) headers[CSRF_HEADER] = csrf
  let response
  try {
    response = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (error) {
    throw new ApiError(0, { message: `The gateway did not answer (${error instanceof Error ? error.message : String(error)}).`, code: 'network_error' })
  }
  const text = await response.text()
  /** @type {any} */
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = null
  }
  if (!response.ok) {
    const error = new ApiError(response.status, (data && data.error) || {})
    if (response.status === 401 && error.code === 'invalid_admin_key' && !path.startsWith('/console/login')) {
      for (const listener of signedOutListeners) listener()
    }
    throw error
  }
  return data
}

/**
 * A query string from the set values of an object (`?a=1&b=x`, or '' when none).
 * @param {Record<string, unknown>} params
 */
export function qs(params) {
  const search = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') search.set(k, String(v))
  const text = search.toString()
  return text ? `?${text}` : ''
}

/**
 * GET a path and keep its answer; `reload()` asks again. A null path asks nothing.
 * @param {string | null} path
 * @returns {{ data: any, error: ApiError | null, loading: boolean, reload: () => void }}
 */
export function useResource(path) {
  const [state, setState] = useState(/** @type {{ data: any, error: ApiError | null, loading: boolean }} */ ({ data: null, error: null, loading: path !== null }))
  const [tick, setTick] = useState(0)
  useEffect(() => {
    if (path === null) return
    let live = true
    setState((s) => ({ ...s, loading: true }))
    api('GET', path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    )
    return () => {
      live = false
    }
  }, [path, tick])
  const reload = useCallback(() => setTick((t) => t + 1), [])
  return { ...state, reload }
}
