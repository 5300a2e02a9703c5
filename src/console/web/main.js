// The sluice admin console: sign-in, then six pages over the /admin/* JSON API.
import { render } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { api, onSignedOut, setCsrf, signedInAgain } from './api.js'
import { ErrorNote, fmtDuration, useAction } from './ui.js'
import { OverviewPage } from './pages/overview.js'
import { KeysPage } from './pages/keys.js'
import { PeoplePage } from './pages/people.js'
import { DoctorPage } from './pages/doctor.js'
import { ProvidersPage } from './pages/providers.js'
import { LogsPage } from './pages/logs.js'
import { AuditPage } from './pages/audit.js'

const PAGES = /** @type {const} */ ([
  { id: 'overview', title: 'Overview', view: OverviewPage },
  { id: 'keys', title: 'Keys', view: KeysPage },
  { id: 'people', title: 'Users and teams', view: PeoplePage },
  { id: 'doctor', title: 'Key doctor', view: DoctorPage },
  { id: 'providers', title: 'Providers', view: ProvidersPage },
  { id: 'logs', title: 'Logs', view: LogsPage },
  { id: 'audit', title: 'Audit', view: AuditPage },
])

/** `#/keys?user_id=u1` → { page: 'keys', params: { user_id: 'u1' } } */
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '')
  const [page = '', query = ''] = hash.split('?')
  return { page: PAGES.some((p) => p.id === page) ? page : 'overview', params: Object.fromEntries(new URLSearchParams(query)) }
}

function useRoute() {
  const [route, setRoute] = useState(parseHash)
  useEffect(() => {
    const update = () => setRoute(parseHash())
    addEventListener('hashchange', update)
    return () => removeEventListener('hashchange', update)
  }, [])
  return route
}

/** @typedef {{ authenticated: boolean, csrf_token: string | null, expires_at: string | null, environment: string, session_ttl_ms?: number }} Session */

function App() {
  const [session, setSession] = useState(/** @type {Session | null | undefined} */ (undefined))
  const [ended, setEnded] = useState(false)
  const [bootError, setBootError] = useState(/** @type {any} */ (null))
  useEffect(() => {
    api('GET', '/console/session').then(
      (s) => {
        setCsrf(s.csrf_token)
        setSession(s)
      },
      (error) => setBootError(error),
    )
    return onSignedOut(() => {
      setCsrf(null)
      setEnded(true)
      setSession((s) => (s ? { ...s, authenticated: false, csrf_token: null } : s))
    })
  }, [])
  if (bootError) return html`<main class="login"><${ErrorNote} error=${bootError} label="The console could not reach the gateway" /></main>`
  if (session === undefined || session === null) return html`<p class="boot">Loading…</p>`
  const login = html`<${Login}
    ended=${ended}
    ttlMs=${session.session_ttl_ms}
    onSignedIn=${(/** @type {Session} */ s) => {
      setCsrf(s.csrf_token)
      setEnded(false)
      setSession(s)
      if (ended) signedInAgain()
    }}
  />`
  // Signed out on purpose, or not yet signed in: the sign-in page alone.
  if (!session.authenticated && !ended) return html`<main class="login" id="main">${login}</main>`
  // A session that ended under the operator (expired, signed out elsewhere) is signed in again
  // over the page, which stays as it was: what was typed in its forms is still there after.
  return html`<${Shell}
      session=${session}
      onSignedOut=${() => {
        setCsrf(null)
        setEnded(false)
        setSession({ ...session, authenticated: false, csrf_token: null })
      }}
    />${session.authenticated ? null : html`<${SignInAgain}>${login}</${SignInAgain}>`}`
}

/**
 * The sign-in form in a modal dialog over the page, which it hides (an opaque backdrop) and keeps
 * out of reach until the operator signs in; Escape does not close it.
 * @param {{ children: any }} props
 */
function SignInAgain({ children }) {
  const ref = useRef(/** @type {HTMLDialogElement | null} */ (null))
  useEffect(() => {
    const dialog = ref.current
    if (dialog && !dialog.open) dialog.showModal()
  }, [])
  return html`<dialog ref=${ref} class="sign-in-again" aria-label="Sign in again" onCancel=${(/** @type {Event} */ e) => e.preventDefault()}>${children}</dialog>`
}

/** @param {{ ended: boolean, ttlMs: number | undefined, onSignedIn: (s: Session) => void }} props */
function Login({ ended, ttlMs, onSignedIn }) {
  const [run, busy, error] = useAction()
  const input = useRef(/** @type {HTMLInputElement | null} */ (null))
  useEffect(() => input.current?.focus(), [])
  const submit = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const key = input.current?.value ?? ''
    run(async () => {
      const s = await api('POST', '/console/login', { admin_key: key })
      if (input.current) input.current.value = ''
      onSignedIn(s)
    })
  }
  return html`<form class="login-card" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title"><span class="brand-mark" aria-hidden="true">◆</span> sluice console</h1>
      <p>Sign in with the gateway's admin key: the key printed at first start, or the value of <code>SLUICE_ADMIN_KEY</code>.</p>
      ${ended ? html`<div class="note warn" role="status">Your session has ended. Sign in again.</div>` : null}
      <input type="text" name="username" value="sluice-admin" autocomplete="username" readonly hidden />
      <div class="field">
        <label for="admin-key">Admin key</label>
        <input id="admin-key" name="admin_key" type="password" ref=${input} required autocomplete="current-password" spellcheck="false" aria-describedby="admin-key-hint" />
        <small id="admin-key-hint">Kept only in this browser's session cookie (HttpOnly, ${location.protocol === 'https:' ? 'Secure, ' : ''}${ttlMs ? fmtDuration(ttlMs) : 'until it expires'}).</small>
      </div>
      <${ErrorNote} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
    </form>`
}

/** @param {{ session: Session, onSignedOut: () => void }} props */
function Shell({ session, onSignedOut: signedOut }) {
  const route = useRoute()
  const page = PAGES.find((p) => p.id === route.page) ?? PAGES[0]
  const main = useRef(/** @type {HTMLElement | null} */ (null))
  const [run, busy, error] = useAction()
  const first = useRef(true)
  useEffect(() => {
    document.title = `${page.title} · sluice console`
    // After a page change, keyboard and screen-reader users land on the new page's heading.
    if (first.current) first.current = false
    else main.current?.querySelector('h1')?.focus()
  }, [page.id])
  const signOut = () =>
    run(async () => {
      await api('POST', '/console/logout')
      signedOut()
    })
  const View = page.view
  // New parameters (a filter, a key id) draw the page afresh, so nothing on it is stale.
  const viewKey = `${page.id}?${new URLSearchParams(route.params)}`
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(/** @type {MouseEvent} */ e) => { e.preventDefault(); main.current?.focus() }}>Skip to content</a>
    <header class="top">
      <div class="brand"><span class="brand-mark" aria-hidden="true">◆</span> sluice <span class="env" title="Environment this gateway serves">${session.environment}</span></div>
      <nav aria-label="Console pages">
        <ul>
          ${PAGES.map((p) => html`<li><a href=${`#/${p.id}`} aria-current=${p.id === page.id ? 'page' : undefined}>${p.title}</a></li>`)}
        </ul>
      </nav>
      <button type="button" class="ghost" onClick=${signOut} disabled=${busy}>Sign out</button>
    </header>
    <${ErrorNote} error=${error} label="Sign-out failed" />
    <main id="main" ref=${main} tabindex="-1">
      <${View} key=${viewKey} params=${route.params} environment=${session.environment} />
    </main>
  </div>`
}

const root = document.getElementById('app')
if (root) {
  root.textContent = ''
  render(html`<${App} />`, root)
}
