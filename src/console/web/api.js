// The console's one way to the gateway: the /admin/* JSON API, with the session cookie
// (sent by the browser) and, on every change, the session's CSRF token in a header.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'

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
    /** Set when this refusal ended the console session: the sign-in form takes over, and says so. */
    this.sessionEnded = false
  }
}

/** @type {string | null} */
let csrf = null
/** @type {Set<() => void>} */
const signedOutListeners = new Set()
/** @type {Set<() => void>} */
const signedInListeners = new Set()

/** @param {string | null} token */
export function setCsrf(token) {
  csrf = token
}

/**
 * Called when the API says the session is over (401 invalid_admin_key, or no session behind a refused change).
 * @param {() => void} listener
 */
export function onSignedOut(listener) {
  signedOutListeners.add(listener)
  return () => void signedOutListeners.delete(listener)
}

/**
 * One call of the admin API, as it is sent: no retry.
 * @param {'GET' | 'POST' | 'PATCH' | 'DELETE'} method
 * @param {string} path
 * @param {unknown} body
 * @param {string | null} token the CSRF token to send on a change
 * @returns {Promise<any>}
 */
async function send(method, path, body, token) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && token) headers[CSRF_HEADER] = token
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
      error.sessionEnded = true
      signedOut()
    }
    throw error
  }
  return data
}

function signedOut() {
  for (const listener of signedOutListeners) listener()
}

/**
 * Called when the operator signs in again after the session ended under the page.
 * @param {() => void} listener
 */
export function onSignedInAgain(listener) {
  signedInListeners.add(listener)
  return () => void signedInListeners.delete(listener)
}

/** The page signed in again: what was refused for the ended session may ask again. */
export function signedInAgain() {
  for (const listener of [...signedInListeners]) listener()
}

/** Whether an error is the end of the console session (the sign-in form shows that). @param {unknown} error */
export const endedSession = (error) => error instanceof ApiError && error.sessionEnded

/** @type {Promise<any> | null} */
let renewing = null

/**
 * The session's CSRF token as the gateway has it now. Signing in again (in another tab of this
 * browser) replaces the cookie, and with it the token this page holds; several calls refused at
 * once ask only once.
 * @returns {Promise<{ authenticated: boolean, csrf_token: string | null } | null>}
 */
function currentSession() {
  renewing ??= send('GET', '/console/session', undefined, null)
    .catch(() => null)
    .finally(() => {
      renewing = null
    })
  return renewing
}

/**
 * Call the admin API. A change refused with 403 because this page's CSRF token is not the
 * session's (another tab signed out and in again) is sent once more with the session's token;
 * when there is no session any more, the page goes back to the sign-in form.
 * @param {'GET' | 'POST' | 'PATCH' | 'DELETE'} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  const token = csrf
  try {
    return await send(method, path, body, token)
  } catch (error) {
    if (method === 'GET' || !(error instanceof ApiError) || error.status !== 403 || error.code !== 'insufficient_permissions') throw error
    const session = await currentSession()
    if (session && !session.authenticated) {
      setCsrf(null)
      signedOut()
      const ended = new ApiError(401, { message: 'Your console session has ended. Sign in again.', code: 'invalid_admin_key' })
      ended.sessionEnded = true
      throw ended
    }
    // The same token as before: the refusal is about something else.
    if (!session?.csrf_token || session.csrf_token === token) throw error
    setCsrf(session.csrf_token)
    return send(method, path, body, session.csrf_token)
  }
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
  // Refused because the session ended: asked again once the operator signs in again.
  useEffect(() => (endedSession(state.error) ? onSignedInAgain(reload) : undefined), [state.error, reload])
  return { ...state, reload }
}

/** `path` with `cursor` set in its query string. @param {string} path @param {string} cursor */
function withCursor(path, cursor) {
  const url = new URL(path, location.origin)
  url.searchParams.set('cursor', cursor)
  return `${url.pathname}${url.search}`
}

/**
 * A cursor-paged list of the admin API (`{ data, next_cursor }`): its first page, more with
 * `loadMore()`. `reload()` asks again for as many pages as are shown, so a change made on the
 * page does not take away the rows the operator loaded.
 * @param {string} path the list's path and filters; `cursor` is added to it
 * @returns {{ rows: any[], error: ApiError | null, loading: boolean, loaded: boolean, more: boolean, loadingMore: boolean, loadMore: () => void, reload: () => void }}
 */
export function usePagedList(path) {
  const [state, setState] = useState(
    /** @type {{ rows: any[], next: string | null, error: ApiError | null, loading: boolean, loaded: boolean, loadingMore: boolean }} */ ({
      rows: [], next: null, error: null, loading: true, loaded: false, loadingMore: false,
    }),
  )
  // Answers of an older load (another path, or a reload since) are dropped.
  const generation = useRef(0)
  const pages = useRef(1)
  const load = useCallback(
    (/** @type {number} */ count) => {
      const current = ++generation.current
      setState((s) => ({ ...s, loading: true, loadingMore: false }))
      ;(async () => {
        const rows = []
        /** @type {string | null} */
        let next = null
        let read = 0
        do {
          const page = await api('GET', next === null ? path : withCursor(path, next))
          rows.push(...page.data)
          next = page.next_cursor ?? null
          read++
        } while (next !== null && read < count)
        return { rows, next, pages: read }
      })().then(
        (done) => {
          if (current !== generation.current) return
          pages.current = done.pages
          setState({ rows: done.rows, next: done.next, error: null, loading: false, loaded: true, loadingMore: false })
        },
        (error) => current === generation.current && setState((s) => ({ ...s, error, loading: false, loadingMore: false })),
      )
    },
    [path],
  )
  useEffect(() => {
    pages.current = 1
    load(1)
  }, [load])
  const reload = useCallback(() => load(pages.current), [load])
  useEffect(() => (endedSession(state.error) ? onSignedInAgain(reload) : undefined), [state.error, reload])
  const loadMore = () => {
    const next = state.next
    if (next === null || state.loadingMore) return
    const current = generation.current
    setState((s) => ({ ...s, loadingMore: true, error: null }))
    api('GET', withCursor(path, next)).then(
      (page) => {
        if (current !== generation.current) return
        pages.current += 1
        setState((s) => ({ ...s, rows: [...s.rows, ...page.data], next: page.next_cursor ?? null, loadingMore: false }))
      },
      (error) => current === generation.current && setState((s) => ({ ...s, error, loadingMore: false })),
    )
  }
  return { rows: state.rows, error: state.error, loading: state.loading, loaded: state.loaded, more: state.next !== null, loadingMore: state.loadingMore, loadMore, reload }
}
