// Small shared pieces: formatting, tables that turn into cards on a phone, dialogs, errors.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks'
import { cloneElement, toChildArray } from 'preact'
import { html } from 'htm/preact'
import { endedSession } from './api.js'

/** @param {string | null | undefined} iso */
export function fmtTime(iso) {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
}

/** "in 3 days", "5 min ago". @param {string | null | undefined} iso */
export function fmtRelative(iso) {
  if (!iso) return '—'
  const ms = Date.parse(iso) - Date.now()
  if (Number.isNaN(ms)) return iso
  const abs = Math.abs(ms)
  const [n, unit] = abs < 60_000 ? [Math.round(abs / 1000), 'second'] : abs < 3_600_000 ? [Math.round(abs / 60_000), 'minute'] : abs < 86_400_000 ? [Math.round(abs / 3_600_000), 'hour'] : [Math.round(abs / 86_400_000), 'day']
  return new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }).format(ms < 0 ? -n : n, /** @type {Intl.RelativeTimeFormatUnit} */ (unit))
}

/** @param {number | null | undefined} n */
export const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString())
/** @param {number | null | undefined} n */
export const fmtUsd = (n) => (n === null || n === undefined ? '—' : `$${Number(n) < 0.01 && Number(n) > 0 ? Number(n).toFixed(6) : Number(n).toFixed(2)}`)
/** @param {number} part @param {number} whole */
export const fmtPct = (part, whole) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '—')

/** Limits `{rpm, tpm, max_parallel}` as text. @param {any} limits */
export function fmtLimits(limits) {
  if (!limits) return 'none'
  const parts = []
  if (limits.rpm) parts.push(`${fmtNum(limits.rpm)} req/min`)
  if (limits.tpm) parts.push(`${fmtNum(limits.tpm)} tokens/min`)
  if (limits.max_parallel) parts.push(`${fmtNum(limits.max_parallel)} in flight`)
  return parts.length ? parts.join(', ') : 'none'
}

/** Budget `{tokens, usd, period}` as text. @param {any} budget */
export function fmtBudget(budget) {
  if (!budget) return 'none'
  const parts = []
  if (budget.tokens) parts.push(`${fmtNum(budget.tokens)} tokens`)
  if (budget.usd) parts.push(fmtUsd(budget.usd))
  return `${parts.join(' and ') || 'nothing'} per ${budget.period === 'total' ? 'lifetime' : budget.period}`
}

/** @param {string[] | null | undefined} list */
export const fmtList = (list) => (list === null || list === undefined ? 'all' : list.length ? list.join(', ') : 'none')

/** An admin API error, shown as the API's own message. @param {{ error: any, label?: string }} props */
export function ErrorNote({ error, label }) {
  if (!error) return null
  return html`<div class="note error" role="alert">
    ${label ? html`<strong>${label}: </strong>` : null}${error.message}${error.code && error.code !== 'unknown' ? html` <code>${error.code}</code>` : null}
  </div>`
}

/** @param {{ children: any, tone?: 'info' | 'ok' | 'warn' }} props */
export function Note({ children, tone = 'info' }) {
  return html`<div class="note ${tone}" role="status">${children}</div>`
}

const STATUS_TONES = /** @type {Record<string, string>} */ ({
  active: 'ok', healthy: 'ok', allowed: 'ok',
  revoked: 'bad', deleted: 'bad', dead: 'bad', open: 'bad', refused: 'bad',
  expired: 'warn', disabled: 'warn', rotating: 'warn', cooling: 'warn', half_open: 'warn', expiring: 'warn',
})

/** A status word with a colour that is never the only signal. @param {{ value: string }} props */
export function Badge({ value }) {
  return html`<span class="badge ${STATUS_TONES[value] ?? 'neutral'}">${value}</span>`
}

/**
 * A table that becomes one card per row on a narrow screen (each cell labelled by its column).
 * @template T
 * @param {{ caption: string, columns: Array<{ label: string, cell: (row: T) => any, className?: string }>, rows: T[], rowKey: (row: T) => string, rowClass?: (row: T) => string, empty?: string }} props
 */
export function Table({ caption, columns, rows, rowKey, rowClass, empty }) {
  if (!rows.length) return html`<p class="empty">${empty ?? 'Nothing to show.'}</p>`
  return html`<div class="table-wrap">
    <table class="cards">
      <caption class="visually-hidden">${caption}</caption>
      <thead><tr>${columns.map((c) => html`<th scope="col" class=${c.className}>${c.label}</th>`)}</tr></thead>
      <tbody>
        ${rows.map(
          (row) => html`<tr key=${rowKey(row)} class=${rowClass ? rowClass(row) : ''}>
            ${columns.map((c) => html`<td data-label=${c.label} class=${c.className}><div class="cell">${c.cell(row)}</div></td>`)}
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`
}

/**
 * A modal dialog (native <dialog>: focus stays inside, Escape closes it).
 * @param {{ title: string, open: boolean, onClose: () => void, children: any }} props
 */
export function Dialog({ title, open, onClose, children }) {
  const ref = useRef(/** @type {HTMLDialogElement | null} */ (null))
  useEffect(() => {
    const dialog = ref.current
    if (!dialog) return
    if (open && !dialog.open) dialog.showModal()
    if (!open && dialog.open) dialog.close()
  }, [open])
  return html`<dialog ref=${ref} onClose=${onClose} aria-labelledby="dialog-title">
    ${open
      ? html`<div class="dialog-body">
          <div class="dialog-head"><h2 id="dialog-title">${title}</h2><button type="button" class="ghost" onClick=${onClose} aria-label="Close">✕</button></div>
          ${children}
        </div>`
      : null}
  </dialog>`
}

/**
 * A secret shown once, with a copy button and the warning that goes with it.
 * @param {{ value: string, title: string, onDone: () => void }} props
 */
export function SecretReveal({ value, title, onDone }) {
  const [copied, setCopied] = useState(/** @type {null | 'ok' | 'manual'} */ (null))
  const input = useRef(/** @type {HTMLInputElement | null} */ (null))
  const heading = useRef(/** @type {HTMLHeadingElement | null} */ (null))
  useEffect(() => heading.current?.focus(), [])
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value)
      setCopied('ok')
    } catch {
      // Without clipboard access (plain HTTP on another host): select it for Ctrl+C.
      input.current?.select()
      setCopied('manual')
    }
  }
  return html`<section class="secret" aria-labelledby="secret-title">
    <h2 id="secret-title" tabindex="-1" ref=${heading}>${title}</h2>
    <p class="warn-text"><strong>Copy it now: this is the only time it is shown.</strong> sluice keeps only its SHA-256; if it is lost, rotate the key.</p>
    <div class="copy-row">
      <label class="visually-hidden" for="secret-value">New API key</label>
      <input id="secret-value" ref=${input} class="mono" readonly value=${value} onFocus=${(/** @type {FocusEvent} */ e) => /** @type {HTMLInputElement} */ (e.currentTarget).select()} />
      <button type="button" class="primary" onClick=${copy}>Copy key</button>
    </div>
    <p role="status" class="copy-status">${copied === 'ok' ? 'Copied to the clipboard.' : copied === 'manual' ? 'Selected: press Ctrl+C (⌘C) to copy.' : ''}</p>
    <button type="button" onClick=${onDone}>I have stored it — hide the key</button>
  </section>`
}

/**
 * Whether an error is about the request field `param` (the API's `param`: `name`, `limits.rpm`,
 * `models[2]`) or a field inside it. @param {any} error @param {string} param
 */
const about = (error, param) => {
  const at = error?.param
  return typeof at === 'string' && (at === param || at.startsWith(`${param}.`) || at.startsWith(`${param}[`))
}

/** The error when it is about `param`, else null: what a form shows next to that field. @param {any} error @param {string} param */
export const errorAt = (error, param) => (about(error, param) ? error : null)

/** The error when no field of the form shows it (its `param` is none of `params`), else null. @param {any} error @param {string[]} params */
export const errorElsewhere = (error, params) => (params.some((p) => about(error, p)) ? null : error)

/**
 * An error shown beside its field or fieldset: announced, and the field's control focused, so a
 * keyboard or screen-reader user lands on what to fix. @param {{ id: string, error: any }} props
 */
export function FieldError({ id, error }) {
  // In the same commit as the message: whoever sees the message finds the field focused.
  useLayoutEffect(() => {
    if (!error) return
    const control = document.getElementById(id)
    // A fieldset's first control, or the control itself.
    const target = control instanceof HTMLFieldSetElement ? control.querySelector('input, select, textarea') : control
    if (target instanceof HTMLElement) target.focus()
  }, [error, id])
  if (!error) return null
  return html`<small id=${`${id}-error`} class="field-error" role="alert">${error.message}</small>`
}

/**
 * A labelled form field. The control is given as children and must carry the same id; with an
 * `error` (see {@link errorAt}) the message is shown under it, and the control is marked invalid
 * and described by it.
 * @param {{ id: string, label: string, hint?: string, children: any, wide?: boolean, error?: any }} props
 */
export function Field({ id, label, hint, children, wide, error }) {
  const described = [hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(' ')
  const controls = toChildArray(children).map((child) =>
    typeof child === 'object' && child.props && /** @type {any} */ (child.props).id === id ? cloneElement(child, { 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': described || undefined }) : child,
  )
  return html`<div class="field ${wide ? 'wide' : ''} ${error ? 'invalid' : ''}">
    <label for=${id}>${label}</label>
    ${controls}
    ${hint ? html`<small id=${`${id}-hint`}>${hint}</small>` : null}
    <${FieldError} id=${id} error=${error} />
  </div>`
}

/**
 * Run an action, keeping its busy state and error for the form that started it; `clear()`
 * forgets the error (when the dialog or form it belongs to opens or closes).
 * @returns {[(work: () => Promise<void>) => Promise<void>, boolean, any, () => void]}
 */
export function useAction() {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState(/** @type {any} */ (null))
  const run = async (/** @type {() => Promise<void>} */ work) => {
    setBusy(true)
    setError(null)
    try {
      await work()
    } catch (e) {
      // A session that ended is told by the sign-in form over the page, not by this form.
      if (!endedSession(e)) setError(e)
    } finally {
      setBusy(false)
    }
  }
  return [run, busy, error, () => setError(null)]
}

/** Users, teams or keys offered as suggestions at most in a field's list (one page of the admin API). */
export const SUGGESTIONS = 500

/**
 * Said under a field whose suggestions are cut (the list has more than one page): any id may still be typed.
 * @param {any} list the list's answer @param {string} what
 */
export const cutHint = (list, what) => (list?.next_cursor ? `Suggestions show the first ${SUGGESTIONS} ${what} only; type any id.` : undefined)

/** Form values as an object of trimmed strings. @param {HTMLFormElement} form */
export function formValues(form) {
  /** @type {Record<string, string>} */
  const out = {}
  for (const [k, v] of new FormData(form)) if (typeof v === 'string') out[k] = v.trim()
  return out
}

/** All checked values of a checkbox group. @param {HTMLFormElement} form @param {string} name */
export const checkedValues = (form, name) => new FormData(form).getAll(name).map(String)

/** An integer field's value, or undefined when empty. @param {string | undefined} text */
export const intOrUndefined = (text) => (text ? Number.parseInt(text, 10) : undefined)

/** Go to a page of the console, with optional query parameters. @param {string} page @param {Record<string, string | undefined>} [params] */
export function navigate(page, params = {}) {
  const query = new URLSearchParams(/** @type {[string, string][]} */ (Object.entries(params).filter(([, v]) => v))).toString()
  location.hash = `#/${page}${query ? `?${query}` : ''}`
}

/** A page's heading, focusable so a page change can move focus to it. @param {{ children: any, lead?: any }} props */
export function PageHead({ children, lead }) {
  return html`<div class="page-head"><h1 tabindex="-1">${children}</h1>${lead ? html`<p class="lead">${lead}</p>` : null}</div>`
}

/**
 * Paging backwards through a newest-first list: `before` is the cursor of the page shown, and the
 * cursors of the pages before it are kept so "Newer" can go back.
 */
export function usePager() {
  const [trail, setTrail] = useState(/** @type {string[]} */ ([]))
  const [before, setBefore] = useState(/** @type {string | null} */ (null))
  return {
    before,
    hasNewer: trail.length > 0,
    /** The page after this one. @param {string | null | undefined} next the list's next_cursor */
    older(next) {
      setTrail((t) => [...t, before ?? ''])
      setBefore(next ?? null)
    },
    newer() {
      const previous = trail[trail.length - 1]
      setTrail((t) => t.slice(0, -1))
      setBefore(previous || null)
    },
    /** Back to the newest page. */
    reset() {
      setTrail([])
      setBefore(null)
    },
  }
}

/** sessionStorage entry: for each page reached with "Older", the cursor of the page before it. */
const NEWER_PAGES = 'sluice-console-newer-pages'
/** Pages remembered at most, the oldest forgotten first. */
const MAX_NEWER_PAGES = 500

/** @returns {Record<string, string>} */
function newerPages() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(NEWER_PAGES) ?? '{}')
    return saved && typeof saved === 'object' ? saved : {}
  } catch {
    return {}
  }
}

/**
 * Paging backwards like {@link usePager}, with the page's cursor in the address (`#/logs?…&before=…`),
 * so Back, Forward and Reload keep the page. Where "Newer" leads is kept in this tab's
 * sessionStorage; a page opened from a link it does not know goes back to the newest.
 * @param {string} page the console page (`logs`)
 * @param {Record<string, string>} params its parameters, `before` among them
 * @param {string[]} filters the parameters that choose the list (a page is remembered under them)
 */
export function useHashPager(page, params, filters) {
  const { before = '', ...rest } = params
  const list = `${page}?${new URLSearchParams(filters.map((f) => [f, params[f] ?? '']))}`
  return {
    before: before || null,
    hasNewer: before !== '',
    /** The page after this one. @param {string | null | undefined} next the list's next_cursor */
    older(next) {
      if (!next) return
      const pages = newerPages()
      pages[`${list} ${next}`] = before
      const keys = Object.keys(pages)
      for (const key of keys.slice(0, Math.max(0, keys.length - MAX_NEWER_PAGES))) delete pages[key]
      try {
        sessionStorage.setItem(NEWER_PAGES, JSON.stringify(pages))
      } catch {
        // Storage full or off: "Newer" then leads to the newest page.
      }
      navigate(page, { ...rest, before: next })
    },
    newer() {
      navigate(page, { ...rest, before: newerPages()[`${list} ${before}`] })
    },
    /** Back to the newest page. */
    reset() {
      navigate(page, rest)
    },
  }
}

/** A lifetime as words: "8 hours", "1 hour 30 minutes", "2 days". @param {number} ms */
export function fmtDuration(ms) {
  const minutes = Math.round(ms / 60_000)
  const parts = /** @type {Array<[number, string]>} */ ([
    [Math.floor(minutes / 1440), 'day'],
    [Math.floor((minutes % 1440) / 60), 'hour'],
    [minutes % 60, 'minute'],
  ])
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n} ${unit}${n === 1 ? '' : 's'}`)
  return parts.join(' ') || 'less than a minute'
}
