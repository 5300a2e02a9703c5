// Logs: recent requests, filtered by key, user, model, status and error code, paged backwards;
// one request found by the id its client saw (x-request-id).
import { useEffect, useRef } from 'preact/hooks'
import { html } from 'htm/preact'
import { ApiError, qs, useResource } from '../api.js'
import { ErrorNote, Field, Note, PageHead, Table, fmtNum, fmtTime, fmtUsd, formValues, useHashPager } from '../ui.js'

const FILTERS = ['key_id', 'user_id', 'model', 'status', 'code']

/**
 * `.` and `..` are path steps the browser resolves before it asks (`/admin/logs/..` is `/admin/`,
 * and so is `%2E%2E`), so no request can name them; they are never a request id either.
 */
const DOTS = /^\.{1,2}$/

/** @typedef {{ id: string, at: string, key_id: string | null, user_id: string | null, team_id: string | null, model: string | null, provider: string | null, status: number, error_code: string | null, prompt_tokens: number | null, completion_tokens: number | null, total_tokens: number | null, cost_usd: number | null, latency_ms: number | null }} LogRow */

/** @param {number | null | undefined} ms */
const fmtMs = (ms) => (ms === null || ms === undefined ? '—' : `${fmtNum(Math.round(ms))} ms`)

/**
 * Every column of one request's log row.
 * @param {{ row: LogRow & Record<string, any> }} props
 */
function RequestDetail({ row: r }) {
  // Opened from a row far down the list: bring it into view.
  const heading = useRef(/** @type {HTMLHeadingElement | null} */ (null))
  useEffect(() => heading.current?.focus(), [r.id])
  return html`<section class="panel" aria-label=${`Request ${r.id}`}>
    <h2 tabindex="-1" ref=${heading}>Request <span class="mono">${r.id}</span></h2>
    <dl class="facts">
      <dt>Time</dt><dd>${fmtTime(r.at)}</dd>
      <dt>Answer</dt><dd><span class=${r.status >= 400 ? 'status-bad' : 'status-ok'}>${r.status}</span>${r.error_code ? html` <code>${r.error_code}</code>` : null}</dd>
      <dt>Endpoint</dt><dd><code>${r.endpoint}</code> in <code>${r.environment}</code>${r.streamed ? ', streamed' : ''}</dd>
      <dt>Key</dt><dd>${r.key_id ? html`<a class="mono" href=${`#/keys?user_id=${encodeURIComponent(r.user_id ?? '')}`}>${r.key_id}</a>` : 'none (refused before a key was known)'}</dd>
      <dt>User and team</dt><dd>${r.user_id ?? '—'} / ${r.team_id ?? '—'}</dd>
      <dt>Model</dt><dd>${r.model ?? '—'}${r.provider ? html` → <code>${r.provider}</code>${r.upstream_model ? html` <code>${r.upstream_model}</code>` : null}${r.provider_key_id ? html` (key <code>${r.provider_key_id}</code>)` : null}` : null}</dd>
      <dt>Tokens</dt><dd>${fmtNum(r.prompt_tokens)} prompt (${fmtNum(r.cached_tokens)} cached) + ${fmtNum(r.completion_tokens)} completion = ${fmtNum(r.total_tokens)}${r.usage_source ? html` <span class="muted">(${r.usage_source})</span>` : null}</dd>
      <dt>Cost</dt><dd>${fmtUsd(r.cost_usd)}</dd>
      <dt>Latency</dt><dd>${fmtMs(r.latency_ms)}${r.ttft_ms !== null && r.ttft_ms !== undefined ? `, first token after ${fmtMs(r.ttft_ms)}` : ''}</dd>
      <dt>Client</dt><dd>${r.client_ip ?? '—'}${r.user_agent ? html` <span class="muted">${r.user_agent}</span>` : null}</dd>
    </dl>
  </section>`
}

/** @param {{ params: Record<string, string> }} props */
export function LogsPage({ params }) {
  /** @type {Record<string, string>} */
  const filter = Object.fromEntries(FILTERS.map((f) => [f, params[f] ?? '']))
  const limit = params.limit ?? '50'
  // The page's cursor is in the address: Back and Reload keep the page.
  const pager = useHashPager('logs', params, [...FILTERS, 'limit'])
  const page = useResource(`/admin/logs${qs({ ...filter, limit, before: pager.before })}`)
  const loggingOff = page.error && (page.error.status === 404 || page.error.status === 405)
  const dots = params.id !== undefined && DOTS.test(params.id)
  const one = useResource(params.id && !dots ? `/admin/logs/${encodeURIComponent(params.id)}` : null)
  const oneError = dots
    ? new ApiError(404, { message: `No request log with id "${params.id}": a request id is the x-request-id header of an answer (req_…), never dots alone.`, code: 'not_found' })
    : one.error

  const apply = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    location.hash = `#/logs${qs(formValues(/** @type {HTMLFormElement} */ (e.currentTarget)))}`
  }
  const find = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const { id } = formValues(/** @type {HTMLFormElement} */ (e.currentTarget))
    const target = `#/logs${qs({ ...filter, limit: params.limit ?? '', before: params.before ?? '', id })}`
    // The same id again (its row may have been written since): ask again.
    if (location.hash === target) one.reload()
    else location.hash = target
  }
  return html`<section>
    <${PageHead} lead="Every request the gateway answered, newest first.">Logs</${PageHead}>
    <form class="filters" onSubmit=${find} aria-label="Find a request">
      <${Field} id="log-id" label="Request id" hint="The x-request-id header of the answer a client got."><input id="log-id" name="id" defaultValue=${params.id ?? ''} key=${params.id ?? ''} autocomplete="off" placeholder="req_…" required /></${Field}>
      <button type="submit">Find</button>
    </form>
    ${params.id ? html`<${ErrorNote} error=${oneError} />` : null}
    ${params.id && one.data ? html`<${RequestDetail} row=${one.data} />` : null}
    <form class="filters" onSubmit=${apply} aria-label="Filter logs">
      <${Field} id="log-key" label="Key id"><input id="log-key" name="key_id" defaultValue=${filter.key_id} key=${filter.key_id} autocomplete="off" /></${Field}>
      <${Field} id="log-user" label="User id"><input id="log-user" name="user_id" defaultValue=${filter.user_id} key=${filter.user_id} autocomplete="off" /></${Field}>
      <${Field} id="log-model" label="Model"><input id="log-model" name="model" defaultValue=${filter.model} key=${filter.model} autocomplete="off" /></${Field}>
      <${Field} id="log-status" label="Status"><input id="log-status" name="status" defaultValue=${filter.status} key=${filter.status} pattern="[1-5]([0-9]{2}|xx)" placeholder="e.g. 401 or 4xx" /></${Field}>
      <${Field} id="log-code" label="Error code"><input id="log-code" name="code" defaultValue=${filter.code} key=${filter.code} autocomplete="off" placeholder="e.g. key_revoked" /></${Field}>
      <${Field} id="log-limit" label="Per page">
        <select id="log-limit" name="limit" value=${limit}>${['25', '50', '100', '200'].map((n) => html`<option value=${n}>${n}</option>`)}</select>
      </${Field}>
      <button type="submit">Filter</button>
      <button type="button" onClick=${() => (pager.before ? pager.reset() : page.reload())}>Newest</button>
    </form>
    ${loggingOff
      ? html`<${Note} tone="warn">Request logs come from the <code>logging</code> plugin, which is not enabled on this gateway (<code>GET /admin/logs</code> answered ${page.error?.status}).</${Note}>`
      : html`<${ErrorNote} error=${page.error} />`}
    ${page.data
      ? html`<${Table}
          caption="Requests, newest first"
          rows=${page.data.data}
          rowKey=${(/** @type {LogRow} */ r) => r.id}
          rowClass=${(/** @type {LogRow} */ r) => (r.status >= 400 ? 'failed' : '')}
          empty="No requests match."
          columns=${[
            // The time opens the request with every column (the list shows some), filters and page kept.
            { label: 'Time', cell: (/** @type {LogRow} */ r) => html`<a class="nowrap" href=${`#/logs${qs({ ...filter, limit: params.limit ?? '', before: params.before ?? '', id: r.id })}`} aria-label=${`Details of ${r.id}`}>${fmtTime(r.at)}</a>` },
            { label: 'Status', cell: (/** @type {LogRow} */ r) => html`<span class=${r.status >= 400 ? 'status-bad' : 'status-ok'}>${r.status}</span>${r.error_code ? html` <code>${r.error_code}</code>` : null}` },
            { label: 'Key', cell: (/** @type {LogRow} */ r) => (r.key_id ? html`<a class="mono" href=${`#/logs?key_id=${encodeURIComponent(r.key_id)}`}>${r.key_id}</a>` : '—') },
            { label: 'User', cell: (/** @type {LogRow} */ r) => r.user_id ?? '—' },
            { label: 'Team', cell: (/** @type {LogRow} */ r) => r.team_id ?? '—' },
            { label: 'Model', cell: (/** @type {LogRow} */ r) => r.model ?? '—' },
            { label: 'Provider', cell: (/** @type {LogRow} */ r) => r.provider ?? '—' },
            { label: 'Tokens', cell: (/** @type {LogRow} */ r) => (r.total_tokens === null || r.total_tokens === undefined ? '—' : html`<span title=${`${fmtNum(r.prompt_tokens)} prompt + ${fmtNum(r.completion_tokens)} completion`}>${fmtNum(r.total_tokens)}</span>`), className: 'num' },
            { label: 'Cost', cell: (/** @type {LogRow} */ r) => fmtUsd(r.cost_usd), className: 'num' },
            { label: 'Latency', cell: (/** @type {LogRow} */ r) => (r.latency_ms === null || r.latency_ms === undefined ? '—' : `${fmtNum(Math.round(r.latency_ms))} ms`), className: 'num' },
          ]}
        />`
      : page.loading ? html`<p class="empty">Loading…</p>` : null}
    <div class="actions pager">
      <button type="button" onClick=${pager.newer} disabled=${!pager.hasNewer}>Newer</button>
      <button type="button" onClick=${() => pager.older(page.data?.next_cursor)} disabled=${!page.data?.next_cursor}>Older</button>
    </div>
  </section>`
}
