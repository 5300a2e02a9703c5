// Audit: who changed what through the admin API or this console, newest first: keys created,
// revoked and rotated, quota resets, users, teams, providers and models.
import { html } from 'htm/preact'
import { qs, useResource } from '../api.js'
import { ErrorNote, Field, PageHead, Table, fmtTime, formValues, useHashPager } from '../ui.js'

const FILTERS = ['target_id', 'action']

/** @typedef {{ id: string, at: string, actor: string, action: string, target_type: string | null, target_id: string | null, details: unknown }} AuditEntry */

/** Details as short text: `reason: left`, `fields: limits, budget`. @param {unknown} details */
function fmtDetails(details) {
  if (details === null || details === undefined) return ''
  if (typeof details !== 'object') return String(details)
  return Object.entries(details)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join('; ')
}

/** @param {{ params: Record<string, string> }} props */
export function AuditPage({ params }) {
  /** @type {Record<string, string>} */
  const filter = Object.fromEntries(FILTERS.map((f) => [f, params[f] ?? '']))
  // The page's cursor is in the address: Back and Reload keep the page.
  const pager = useHashPager('audit', params, FILTERS)
  const page = useResource(`/admin/audit${qs({ ...filter, limit: 50, before: pager.before })}`)
  const apply = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    location.hash = `#/audit${qs(formValues(/** @type {HTMLFormElement} */ (e.currentTarget)))}`
  }
  return html`<section>
    <${PageHead} lead="Every change made through the admin API or this console, newest first.">Audit</${PageHead}>
    <form class="filters" onSubmit=${apply} aria-label="Filter the audit trail">
      <${Field} id="audit-target" label="Object id" hint="A key, user or team id, a provider id or a model name."><input id="audit-target" name="target_id" defaultValue=${filter.target_id} key=${filter.target_id} autocomplete="off" /></${Field}>
      <${Field} id="audit-action" label="Action" hint="e.g. key.revoke, or key. for all of a kind."><input id="audit-action" name="action" defaultValue=${filter.action} key=${filter.action} autocomplete="off" /></${Field}>
      <button type="submit">Filter</button>
    </form>
    <${ErrorNote} error=${page.error} />
    ${page.data
      ? html`<${Table}
          caption="Changes, newest first"
          rows=${page.data.data}
          rowKey=${(/** @type {AuditEntry} */ e) => e.id}
          empty="No changes match."
          columns=${[
            { label: 'Time', cell: (/** @type {AuditEntry} */ e) => html`<span class="nowrap">${fmtTime(e.at)}</span>` },
            { label: 'Action', cell: (/** @type {AuditEntry} */ e) => html`<code>${e.action}</code>` },
            { label: 'Object', cell: (/** @type {AuditEntry} */ e) => (e.target_id ? html`<span class="muted">${e.target_type}</span> <a class="mono" href=${`#/audit${qs({ target_id: e.target_id })}`}>${e.target_id}</a>` : '—') },
            { label: 'Details', cell: (/** @type {AuditEntry} */ e) => html`<span class="small">${fmtDetails(e.details)}</span>` },
            { label: 'By', cell: (/** @type {AuditEntry} */ e) => e.actor },
          ]}
        />`
      : page.loading
        ? html`<p class="empty">Loading…</p>`
        : null}
    <div class="actions pager">
      <button type="button" onClick=${pager.newer} disabled=${!pager.hasNewer}>Newer</button>
      <button type="button" onClick=${() => pager.older(page.data?.next_cursor)} disabled=${!page.data?.next_cursor}>Older</button>
    </div>
  </section>`
}
