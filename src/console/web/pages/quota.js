// Quota: what a key, user or team has left of its own limits and budget right now, and the
// resets an operator uses to unblock it (rate-limit buckets, or the budget period's spend).
import { useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { api, useResource } from '../api.js'
import { ErrorNote, Note, fmtNum, fmtRelative, fmtTime, fmtUsd, useAction } from '../ui.js'

/** @param {{ limit: number, remaining: number, full_at: string | null } | null} b */
function fmtBucket(b) {
  if (!b) return 'no limit'
  return `${fmtNum(b.remaining)} of ${fmtNum(b.limit)} left${b.full_at ? `, full again ${fmtRelative(b.full_at)}` : ''}`
}

/** @param {{ limit: number, spent: number, remaining: number } | null} s @param {(n: number) => string} fmt @param {string} unit */
const fmtSpend = (s, fmt, unit) => (s ? `${fmt(s.spent)} of ${fmt(s.limit)}${unit} spent, ${fmt(s.remaining)} left` : null)

/**
 * The quota of one subject, with its reset buttons. Shown in a dialog of the Keys and People pages.
 * @param {{ scope: 'keys' | 'users' | 'teams', id: string, label: string }} props
 */
export function QuotaPanel({ scope, id, label }) {
  const path = `/admin/${scope}/${encodeURIComponent(id)}/quota`
  const quota = useResource(path)
  const [run, busy, error] = useAction()
  const [done, setDone] = useState(/** @type {string | null} */ (null))
  const q = quota.data
  const reset = (/** @type {{ limits: boolean, budget: boolean }} */ body, /** @type {string} */ what) =>
    run(async () => {
      setDone(null)
      await api('POST', `${path}/reset`, body)
      setDone(`${what} of ${label} reset.`)
      quota.reload()
    })

  // A 404 of the route itself (not "No key with id …"): the quota plugin is not loaded.
  if (quota.error?.status === 404 && !quota.error.message.startsWith(`No ${scope.slice(0, -1)} with id`)) {
    return html`<${Note} tone="warn">This gateway does not run the quota plugin: nothing is counted.</${Note}>`
  }
  const b = q?.budget
  return html`<div class="quota">
    <${ErrorNote} error=${quota.error} />
    ${q
      ? html`<dl class="facts">
          <dt>Requests per minute</dt><dd>${fmtBucket(q.requests)}</dd>
          <dt>Tokens per minute</dt><dd>${fmtBucket(q.tokens)}</dd>
          <dt>In flight</dt><dd>${q.parallel ? `${fmtNum(q.parallel.in_flight)} of ${fmtNum(q.parallel.limit)}` : 'no limit'}</dd>
          <dt>Budget</dt>
          <dd>
            ${b
              ? html`${[fmtSpend(b.tokens, fmtNum, ' tokens'), fmtSpend(b.usd, fmtUsd, '')].filter(Boolean).join('; ')}
                  <div class="muted small">${b.period === 'total' ? 'lifetime budget: it never renews' : `this ${b.period} (UTC), renews ${fmtTime(b.resets_at)}`}</div>`
              : 'none'}
          </dd>
          <dt>Counted</dt>
          <dd>${q.store === 'redis' ? 'in Redis, shared by every instance' : 'in this instance only'}${q.counted_as !== q.id ? html`, under <span class="mono">${q.counted_as}</span> with every key of its rotation chain` : null}</dd>
        </dl>`
      : quota.loading
        ? html`<p class="empty">Loading the quota…</p>`
        : null}
    ${done ? html`<${Note} tone="ok">${done}</${Note}>` : null}
    <${ErrorNote} error=${error} />
    <p class="muted small">A reset never frees a slot in flight: each belongs to a request still running.</p>
    <div class="actions">
      <button type="button" onClick=${quota.reload} disabled=${quota.loading}>Refresh</button>
      <button type="button" onClick=${() => reset({ limits: true, budget: false }, 'The rate limits')} disabled=${busy || !(q?.requests || q?.tokens)}>Refill rate limits</button>
      <button type="button" class="danger" onClick=${() => reset({ limits: false, budget: true }, 'The budget spend')} disabled=${busy || !b}>Reset budget spend</button>
    </div>
  </div>`
}
