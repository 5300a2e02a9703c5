// Providers: each upstream key's health (from the balance plugin) and its last error.
import { html } from 'htm/preact'
import { api, useResource } from '../api.js'
import { Badge, ErrorNote, Note, PageHead, Table, fmtNum, fmtRelative, fmtTime, useAction } from '../ui.js'

/** @typedef {{ provider: string, key: string, state: string, cooling_until: string | null, dead_reason: string | null, circuit: { consecutive_failures: number, open_until: string | null }, cooling_models?: { model: string, until: string }[], circuit_models?: { model: string, consecutive_failures: number, open_until: string | null }[], in_flight: number, latency_ewma_ms: number | null, last_error: { at: string, status: number, message: string } | null }} KeyHealth */

export function ProvidersPage() {
  const providers = useResource('/admin/providers')
  const health = useResource('/admin/providers/health')
  const [run, busy, error] = useAction()
  const balanceOff = health.error && (health.error.status === 404 || health.error.status === 405)
  const reset = (/** @type {KeyHealth} */ h) =>
    run(async () => {
      await api('POST', `/admin/providers/${encodeURIComponent(h.provider)}/keys/${encodeURIComponent(h.key)}/reset`)
      health.reload()
    })
  /** @type {Map<string, any>} */
  const byId = new Map((providers.data?.data ?? []).map((/** @type {any} */ p) => [p.id, p]))

  return html`<section>
    <${PageHead} lead="Upstream provider keys as the balancer sees them: healthy, cooling down, dead, or with an open or half-open circuit.">Providers</${PageHead}>
    <div class="toolbar"><button type="button" onClick=${() => { providers.reload(); health.reload() }}>Refresh</button></div>
    <${ErrorNote} error=${error} />
    ${balanceOff
      ? html`<${Note} tone="warn">Key health comes from the <code>balance</code> plugin, which is not enabled on this gateway. The configured providers are listed below.</${Note}>`
      : html`<${ErrorNote} error=${health.error} />`}
    ${health.data
      ? html`<${Table}
          caption="Health of each provider key"
          rows=${health.data.data}
          rowKey=${(/** @type {KeyHealth} */ h) => `${h.provider}/${h.key}`}
          empty="No provider keys."
          columns=${[
            { label: 'Provider key', cell: (/** @type {KeyHealth} */ h) => html`<div class="key-cell"><strong>${h.provider}</strong><span class="mono">${h.key}</span><span class="muted">${byId.get(h.provider)?.type ?? ''}</span></div>` },
            { label: 'State', cell: (/** @type {KeyHealth} */ h) => html`<${Badge} value=${h.state} />${h.dead_reason ? html`<div class="muted">${h.dead_reason}</div>` : null}` },
            { label: 'In flight', cell: (/** @type {KeyHealth} */ h) => fmtNum(h.in_flight), className: 'num' },
            { label: 'Latency', cell: (/** @type {KeyHealth} */ h) => (h.latency_ewma_ms === null ? '—' : `${fmtNum(Math.round(h.latency_ewma_ms))} ms`), className: 'num' },
            { label: 'Failures in a row', cell: (/** @type {KeyHealth} */ h) => fmtNum(h.circuit.consecutive_failures), className: 'num' },
            { label: 'Back at', cell: backAt },
            { label: 'Last error', cell: (/** @type {KeyHealth} */ h) => (h.last_error ? html`<div class="small"><strong>HTTP ${h.last_error.status || 'network'}</strong> <span class="muted" title=${fmtTime(h.last_error.at)}>${fmtRelative(h.last_error.at)}</span><div>${h.last_error.message}</div></div>` : 'none') },
            { label: 'Actions', cell: (/** @type {KeyHealth} */ h) => (h.state === 'healthy' ? null : html`<button type="button" onClick=${() => reset(h)} disabled=${busy} aria-label=${`Put ${h.provider}/${h.key} back in service`}>Put back in service</button>`) },
          ]}
        />`
      : null}
    <h2>Configured providers</h2>
    <${ErrorNote} error=${providers.error} />
    <${Table}
      caption="Providers"
      rows=${providers.data?.data ?? []}
      rowKey=${(/** @type {any} */ p) => p.id}
      empty=${providers.loading ? 'Loading…' : 'No providers.'}
      columns=${[
        { label: 'Provider', cell: (/** @type {any} */ p) => html`<strong>${p.id}</strong>` },
        { label: 'Type', cell: (/** @type {any} */ p) => html`<code>${p.type}</code>` },
        { label: 'Base URL', cell: (/** @type {any} */ p) => (p.base_url ? html`<span class="mono small">${p.base_url}</span>` : 'default') },
        { label: 'Keys', cell: (/** @type {any} */ p) => p.keys.map((/** @type {any} */ k) => k.id).join(', ') },
        { label: 'Source', cell: (/** @type {any} */ p) => (p.source === 'config' ? 'config file' : 'admin API') },
      ]}
    />
  </section>`
}

/**
 * When a key is back: cooling down (a 429) and open circuits are per upstream model, so each
 * model out is named with its time, and the key serves its other models meanwhile.
 * @param {KeyHealth} h
 */
function backAt(h) {
  const cooling = h.cooling_models ?? []
  const open = (h.circuit_models ?? []).filter((c) => c.open_until)
  if (cooling.length === 0 && open.length === 0) {
    // Without the per-model lists: the key's own times.
    if (h.cooling_until) return `cooling until ${fmtTime(h.cooling_until)}`
    return h.circuit.open_until ? `circuit open until ${fmtTime(h.circuit.open_until)}` : '—'
  }
  return html`<div class="small">
    ${cooling.map((c) => html`<div><span class="mono">${c.model}</span>: cooling until ${fmtTime(c.until)} <span class="muted">(${fmtRelative(c.until)})</span></div>`)}
    ${open.map((c) => html`<div><span class="mono">${c.model}</span>: circuit open until ${fmtTime(c.open_until)} <span class="muted">(${fmtRelative(c.open_until)})</span></div>`)}
    ${h.state === 'dead' ? null : html`<div class="muted">its other models are served meanwhile</div>`}
  </div>`
}
