// Overview: traffic, errors, tokens and cost over time, and the busiest keys and models.
import { useMemo, useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { qs, useResource } from '../api.js'
import { TimeChart } from '../chart.js'
import { ErrorNote, Note, PageHead, Table, fmtNum, fmtPct, fmtUsd } from '../ui.js'

/** Most failed requests of each class (4xx, 5xx) read to count error codes. */
const ERROR_SAMPLE = 1000

const RANGES = /** @type {const} */ ([
  { id: '1d', label: 'Last 24 hours', days: 1 },
  { id: '7d', label: 'Last 7 days', days: 7 },
  { id: '30d', label: 'Last 30 days', days: 30 },
])

/** @typedef {{ group: string | null, requests: number, errors: number, prompt_tokens: number, completion_tokens: number, total_tokens: number, cost_usd: number, name?: string | null, display?: string | null }} UsageRow */

/** The logging plugin is off when its routes are missing. @param {any} error */
const missing = (error) => error && (error.status === 404 || error.status === 405)

export function OverviewPage() {
  const [rangeId, setRangeId] = useState('7d')
  const range = RANGES.find((r) => r.id === rangeId) ?? RANGES[1]
  // The window ends when the page opened, the period changed or Refresh was pressed: a render
  // alone does not move it (and ask everything again).
  const [to, setTo] = useState(() => new Date())
  const from = new Date(to.getTime() - range.days * 86_400_000)
  const window = { from: from.toISOString(), to: to.toISOString() }
  const days = useResource(`/admin/usage${qs({ group_by: 'day', ...window })}`)
  const keys = useResource(`/admin/usage${qs({ group_by: 'key', ...window })}`)
  const models = useResource(`/admin/usage${qs({ group_by: 'model', ...window })}`)
  // Failed requests of the period, for their error codes (usage counts errors, not their codes).
  const failed4 = useResource(`/admin/logs${qs({ status: '4xx', limit: ERROR_SAMPLE, ...window })}`)
  const failed5 = useResource(`/admin/logs${qs({ status: '5xx', limit: ERROR_SAMPLE, ...window })}`)

  /** @type {UsageRow[]} */
  const dayRows = useMemo(() => [...(days.data?.data ?? [])].filter((r) => r.group !== null).sort((a, b) => String(a.group).localeCompare(String(b.group))), [days.data])
  const totals = dayRows.reduce(
    (t, r) => ({ requests: t.requests + (r.requests || 0), errors: t.errors + (r.errors || 0), tokens: t.tokens + (r.total_tokens || 0), cost: t.cost + (r.cost_usd || 0) }),
    { requests: 0, errors: 0, tokens: 0, cost: 0 },
  )
  const x = useMemo(() => dayRows.map((r) => Math.floor(Date.parse(`${String(r.group).slice(0, 10)}T00:00:00Z`) / 1000)), [dayRows])
  const requestSeries = useMemo(() => [
    { label: 'Requests', values: dayRows.map((r) => r.requests || 0), color: '#3b6fd8' },
    { label: 'Errors', values: dayRows.map((r) => r.errors || 0), color: '#d9503f' },
  ], [dayRows])
  const tokenSeries = useMemo(() => [
    { label: 'Prompt tokens', values: dayRows.map((r) => r.prompt_tokens || 0), color: '#2f9e8f' },
    { label: 'Completion tokens', values: dayRows.map((r) => r.completion_tokens || 0), color: '#a06cd5' },
  ], [dayRows])
  const costSeries = useMemo(() => [{ label: 'Cost (USD)', values: dayRows.map((r) => r.cost_usd || 0), color: '#c98a1b' }], [dayRows])

  const codes = useMemo(() => {
    /** @type {Map<string, number>} */
    const counts = new Map()
    for (const r of [...(failed4.data?.data ?? []), ...(failed5.data?.data ?? [])]) {
      const code = r.error_code || `HTTP ${r.status}`
      counts.set(code, (counts.get(code) ?? 0) + 1)
    }
    const sampled = (failed4.data?.next_cursor ?? null) !== null || (failed5.data?.next_cursor ?? null) !== null
    return { sampled, list: [...counts].sort((a, b) => b[1] - a[1]) }
  }, [failed4.data, failed5.data])
  const codesError = failed4.error ?? failed5.error

  const top = (/** @type {any} */ res) => [...(res.data?.data ?? [])].sort((a, b) => b.requests - a.requests).slice(0, 10)
  const loggingOff = missing(days.error)

  return html`<section>
    <${PageHead} lead="What the gateway served, from the request logs.">Overview</${PageHead}>
    <div class="toolbar">
      <label for="range">Period</label>
      <select id="range" value=${rangeId} onChange=${(/** @type {Event} */ e) => {
        setRangeId(/** @type {HTMLSelectElement} */ (e.currentTarget).value)
        setTo(new Date())
      }}>
        ${RANGES.map((r) => html`<option value=${r.id}>${r.label}</option>`)}
      </select>
      <button type="button" onClick=${() => setTo(new Date())}>Refresh</button>
    </div>
    ${loggingOff
      ? html`<${Note} tone="warn">Usage figures come from the <code>logging</code> plugin, which is not enabled on this gateway (<code>GET /admin/usage</code> answered ${days.error?.status}). Add <code>"logging"</code> to <code>plugins</code> in the config.</${Note}>`
      : html`<${ErrorNote} error=${days.error} label="Usage" />`}
    <div class="stats" aria-live="polite">
      <div class="stat"><span class="stat-label">Requests</span><span class="stat-value" data-testid="stat-requests">${days.loading ? '…' : fmtNum(totals.requests)}</span></div>
      <div class="stat"><span class="stat-label">Error rate</span><span class="stat-value">${days.loading ? '…' : fmtPct(totals.errors, totals.requests)}</span><span class="stat-sub">${fmtNum(totals.errors)} error${totals.errors === 1 ? '' : 's'}</span></div>
      <div class="stat"><span class="stat-label">Tokens</span><span class="stat-value">${days.loading ? '…' : fmtNum(totals.tokens)}</span></div>
      <div class="stat"><span class="stat-label">Cost</span><span class="stat-value">${days.loading ? '…' : fmtUsd(totals.cost)}</span></div>
    </div>
    <div class="charts">
      <${TimeChart} title="Requests and errors per day (UTC)" x=${x} series=${requestSeries} whole />
      <${TimeChart} title="Tokens per day (UTC)" x=${x} series=${tokenSeries} whole />
      <${TimeChart} title="Cost per day (USD, UTC days)" x=${x} series=${costSeries} format=${(/** @type {number} */ n) => fmtUsd(n)} />
      <figure class="chart">
        <figcaption>Errors by code${codes.sampled ? html` <small>(the latest ${fmtNum(ERROR_SAMPLE)} of each class)</small>` : null}</figcaption>
        ${missing(codesError) ? html`<p class="empty">Needs the logging plugin.</p>` : html`<${ErrorNote} error=${codesError} />`}
        ${codes.list.length
          ? html`<ul class="hbars">
              ${codes.list.map(([code, n]) => html`<li>
                <span class="hbar-label"><code>${code}</code></span>
                <span class="hbar-track" aria-hidden="true"><span class="hbar" style=${{ width: `${Math.max(2, (100 * n) / (codes.list[0]?.[1] ?? 1))}%` }}></span></span>
                <span class="hbar-value">${fmtNum(n)} (${fmtPct(n, totals.requests)} of requests)</span>
              </li>`)}
            </ul>`
          : codesError ? null : html`<p class="empty">No errors in this period.</p>`}
      </figure>
    </div>
    <div class="split">
      <section aria-labelledby="top-keys">
        <h2 id="top-keys">Top keys</h2>
        ${missing(keys.error) ? null : html`<${ErrorNote} error=${keys.error} />`}
        <${Table}
          caption="Keys with the most requests in the period"
          rows=${top(keys)}
          rowKey=${(/** @type {UsageRow} */ r) => r.group ?? ''}
          empty="No requests in this period."
          columns=${[
            {
              label: 'Key',
              // The name the operator gave it first, its shortened form and id after (the API names each group in one query).
              cell: (/** @type {UsageRow} */ r) =>
                r.group === null
                  ? html`<span class="muted">no key (refused before one was known)</span>`
                  : html`<div class="key-cell"><a href=${`#/logs?key_id=${encodeURIComponent(r.group)}`}>${r.name ?? (r.display ? 'unnamed' : r.group)}</a>${r.display ? html`<span class="mono muted">${r.display} · ${r.group}</span>` : null}</div>`,
            },
            { label: 'Requests', cell: (/** @type {UsageRow} */ r) => fmtNum(r.requests), className: 'num' },
            { label: 'Errors', cell: (/** @type {UsageRow} */ r) => fmtNum(r.errors), className: 'num' },
            { label: 'Tokens', cell: (/** @type {UsageRow} */ r) => fmtNum(r.total_tokens), className: 'num' },
            { label: 'Cost', cell: (/** @type {UsageRow} */ r) => fmtUsd(r.cost_usd), className: 'num' },
          ]}
        />
      </section>
      <section aria-labelledby="top-models">
        <h2 id="top-models">Top models</h2>
        ${missing(models.error) ? null : html`<${ErrorNote} error=${models.error} />`}
        <${Table}
          caption="Models with the most requests in the period"
          rows=${top(models)}
          rowKey=${(/** @type {UsageRow} */ r) => r.group ?? ''}
          empty="No requests in this period."
          columns=${[
            { label: 'Model', cell: (/** @type {UsageRow} */ r) => (r.group === null ? html`<span class="muted">no model</span>` : html`<a href=${`#/logs?model=${encodeURIComponent(r.group)}`}>${r.group}</a>`) },
            { label: 'Requests', cell: (/** @type {UsageRow} */ r) => fmtNum(r.requests), className: 'num' },
            { label: 'Errors', cell: (/** @type {UsageRow} */ r) => fmtNum(r.errors), className: 'num' },
            { label: 'Tokens', cell: (/** @type {UsageRow} */ r) => fmtNum(r.total_tokens), className: 'num' },
            { label: 'Cost', cell: (/** @type {UsageRow} */ r) => fmtUsd(r.cost_usd), className: 'num' },
          ]}
        />
      </section>
    </div>
  </section>`
}
