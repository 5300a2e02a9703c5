// Keys: list with status, owner, team, environment, last use and expiry; create, change,
// revoke and rotate. A new plaintext key is shown once.
import { useMemo, useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { api, qs, usePagedList, useResource } from '../api.js'
import { QuotaPanel } from './quota.js'
import { Badge, Dialog, ErrorNote, Field, Note, PageHead, SUGGESTIONS, SecretReveal, Table, cutHint, errorAt, errorElsewhere, fmtBudget, fmtLimits, fmtList, fmtRelative, fmtTime, formValues, useAction } from '../ui.js'
import { BudgetFieldset, ListFieldset, LimitsFieldset, ModelsFieldset, QUOTA_CONTROLS, changedSettings, readList, readQuota } from '../settings.js'

const SCOPES = ['chat', 'completions', 'embeddings', 'models', 'tokens']
const WEEK_MS = 7 * 86_400_000
const GRACE = [
  { seconds: 0, label: 'None: the old key stops now' },
  { seconds: 3600, label: '1 hour' },
  { seconds: 86_400, label: '1 day' },
  { seconds: 7 * 86_400, label: '7 days' },
]

/** @typedef {{ id: string, name: string | null, display: string, environment: string, status: string, user_id: string, team_id: string | null, models: string[] | null, scopes: string[] | null, limits: any, budget: any, expires_at: string | null, last_used_at: string | null, created_at: string, grace_until: string | null, rotated_to: string | null, revoked_at?: string | null, revoked_reason?: string | null, holder_status?: 'user_deleted' | 'user_disabled' | 'not_member' | 'team_deleted' | null }} Key */

/** @param {Key} k */
const expiringSoon = (k) => k.status === 'active' && !k.holder_status && k.expires_at !== null && Date.parse(k.expires_at) - Date.now() <= WEEK_MS

/** Why a key's holder may not use it, as the row says it (holder_status of the admin API). @param {Key} k */
const holderText = (k) =>
  k.holder_status === 'user_deleted' ? `owner ${k.user_id} is deleted`
  : k.holder_status === 'user_disabled' ? `owner ${k.user_id} is disabled`
  : k.holder_status === 'not_member' ? `owner ${k.user_id} is not in team ${k.team_id}`
  : k.holder_status === 'team_deleted' ? `team ${k.team_id} is deleted`
  : null

/**
 * What a request with the key gets now: its own status, or, for an active key whose owner or team
 * refuses it, "refused" and why (the key doctor's invalid_user_for_key). Revoked and expired come first, as the gateway tells them.
 * @param {Key} k
 */
function effectiveStatus(k) {
  const holder = k.status === 'active' ? holderText(k) : null
  if (!holder) return html`<${Badge} value=${k.status} />`
  return html`<${Badge} value="refused" /><div class="muted small">${holder}: every request is refused with <code>invalid_user_for_key</code></div>`
}

/**
 * When and why a key was revoked: the reason given, or the key that replaced it in a rotation.
 * @param {Key} k
 */
function revokedNote(k) {
  const why = k.rotated_to ? html`rotated: replaced by <span class="mono">${k.rotated_to}</span>` : k.revoked_reason
  return html`<div class="muted small">${k.revoked_at ? html`<span title=${fmtTime(k.revoked_at)}>${fmtRelative(k.revoked_at)}</span>` : null}${k.revoked_at && why ? ': ' : null}${why}</div>`
}

/** `2030-01-31T00:00:00Z` → the value of a datetime-local input, in local time. @param {string | null} iso */
function toLocalInput(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/** The request fields the key form shows an API error beside (the rest go under the form). */
const KEY_PARAMS = ['user_id', 'team_id', 'environment', 'name', 'expires_at', 'models', 'scopes', 'limits', 'budget']

/**
 * Name, expiry, models, scopes, limits and budget: the settings a key is created or changed with.
 * Uncontrolled, as the fieldsets of settings.js: the defaults tell which fields the operator
 * changed (see {@link changedSettings}). An API error naming one of them shows beside it.
 * @param {{ prefix: string, initial?: Partial<Key>, models: string[], error?: any }} props
 */
function KeySettings({ prefix, initial = {}, models, error }) {
  const id = (/** @type {string} */ name) => `${prefix}-${name}`
  const scopesError = errorAt(error, 'scopes')
  return html`
    <div class="grid">
      <${Field} id=${id('name')} label="Name" hint="Shown in lists; optional." error=${errorAt(error, 'name')}><input id=${id('name')} name="name" maxlength="200" defaultValue=${initial.name ?? ''} /></${Field}>
      <${Field} id=${id('expires')} label="Expires at" hint="Local time; empty: never." error=${errorAt(error, 'expires_at')}><input id=${id('expires')} name="expires_at" type="datetime-local" defaultValue=${toLocalInput(initial.expires_at ?? null)} /></${Field}>
    </div>
    <${ModelsFieldset} prefix=${prefix} models=${models} initial=${initial.models} hint="Only the models ticked with none ticked: no model (every request is refused with model_not_allowed)." error=${error} />
    <${ListFieldset}
      id=${id('scopes')}
      name="scopes"
      legend="Scopes"
      items=${SCOPES}
      initial=${initial.scopes}
      every="Every endpoint"
      only="Only the scopes ticked"
      hint="Only the scopes ticked with none ticked: no endpoint (every request is refused with insufficient_permissions)."
      none=""
      error=${scopesError}
    />
    <${LimitsFieldset} prefix=${prefix} initial=${initial.limits} error=${error} />
    <${BudgetFieldset} prefix=${prefix} initial=${initial.budget} error=${error} />`
}

/** The settings of a KeySettings form, null where nothing is set; a budget amount without a period is refused. @param {HTMLFormElement} form */
function readSettings(form) {
  const v = formValues(form)
  return {
    name: v.name || null,
    expires_at: v.expires_at ? new Date(v.expires_at).toISOString() : null,
    scopes: readList(form, 'scopes'),
    ...readQuota(form),
  }
}

/** The form controls behind each setting a PATCH sends (limits and budget are written whole). */
const SETTING_CONTROLS = /** @type {const} */ ({
  name: ['name'],
  expires_at: ['expires_at'],
  scopes: ['scopes', 'scopes_mode'],
  ...QUOTA_CONTROLS,
})

/** @param {{ params: Record<string, string>, environment: string }} props */
export function KeysPage({ params, environment }) {
  const filter = { user_id: params.user_id ?? '', team_id: params.team_id ?? '', status: params.status ?? '' }
  const keys = usePagedList(`/admin/keys${qs({ ...filter, limit: 50 })}`)
  // One page (the most the API gives at once): with more, the note says "more than".
  const expiring = useResource('/admin/keys/expiring?within=7d&limit=500')
  const models = useResource('/admin/models')
  const users = useResource(`/admin/users?limit=${SUGGESTIONS}`)
  const teams = useResource(`/admin/teams?limit=${SUGGESTIONS}`)
  // Keys shown by owner or team: whether that owner or team refuses them all.
  const owner = useResource(filter.user_id ? `/admin/users/${encodeURIComponent(filter.user_id)}` : null)
  const team = useResource(filter.team_id ? `/admin/teams/${encodeURIComponent(filter.team_id)}` : null)
  const holderRefusals = [
    owner.data && owner.data.status !== 'active' ? `User ${owner.data.id} is ${owner.data.status}` : null,
    team.data?.deleted_at ? `Team ${team.data.id} is deleted` : null,
  ].filter(Boolean)
  const modelNames = useMemo(() => (models.data?.data ?? []).map((/** @type {any} */ m) => m.name), [models.data])
  const expiringIds = useMemo(() => new Set((expiring.data?.data ?? []).map((/** @type {Key} */ k) => k.id)), [expiring.data])

  const [creating, setCreating] = useState(false)
  const [reveal, setReveal] = useState(/** @type {{ title: string, value: string } | null} */ (null))
  const [editing, setEditing] = useState(/** @type {Key | null} */ (null))
  const [revoking, setRevoking] = useState(/** @type {Key | null} */ (null))
  const [rotating, setRotating] = useState(/** @type {Key | null} */ (null))
  const [counting, setCounting] = useState(/** @type {Key | null} */ (null))
  const [done, setDone] = useState(/** @type {string | null} */ (null))
  // One busy state and error per action: an error shows in the form or dialog that caused it only.
  const [runCreate, creatingBusy, createError, clearCreate] = useAction()
  const [runSave, saving, saveError, clearSave] = useAction()
  const [runRevoke, revokingBusy, revokeError, clearRevoke] = useAction()
  const [runRotate, rotatingBusy, rotateError, clearRotate] = useAction()

  // Asks again for every page loaded with "Load more", so a change keeps them on screen.
  const reload = () => {
    keys.reload()
    expiring.reload()
  }
  const rows = /** @type {Key[]} */ (keys.rows)
  const applyFilter = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const v = formValues(/** @type {HTMLFormElement} */ (e.currentTarget))
    location.hash = `#/keys${qs(v)}`
  }

  const create = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    runCreate(async () => {
      const v = formValues(form)
      const settings = readSettings(form)
      /** @type {Record<string, unknown>} */
      const body = { user_id: v.user_id }
      if (v.team_id) body.team_id = v.team_id
      if (v.environment) body.environment = v.environment
      for (const [k, value] of Object.entries(settings)) if (value !== null) body[k] = value
      const key = await api('POST', '/admin/keys', body)
      form.reset()
      setCreating(false)
      setReveal({ title: `New key ${key.name ?? key.id} for ${key.user_id}`, value: key.key })
      reload()
    })
  }
  const save = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    if (!editing) return
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    runSave(async () => {
      const settings = readSettings(form)
      /** @type {Record<string, unknown>} */
      const body = {}
      for (const setting of changedSettings(form, SETTING_CONTROLS)) body[setting] = settings[setting]
      if (Object.keys(body).length === 0) {
        setDone(`Nothing changed in key ${editing.name ?? editing.id}.`)
        setEditing(null)
        return
      }
      await api('PATCH', `/admin/keys/${encodeURIComponent(editing.id)}`, body)
      setDone(`Key ${editing.name ?? editing.id} saved.`)
      setEditing(null)
      reload()
    })
  }
  const revoke = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    if (!revoking) return
    const { reason } = formValues(/** @type {HTMLFormElement} */ (e.currentTarget))
    runRevoke(async () => {
      await api('POST', `/admin/keys/${encodeURIComponent(revoking.id)}/revoke`, reason ? { reason } : {})
      setDone(`Key ${revoking.name ?? revoking.id} revoked.`)
      setRevoking(null)
      reload()
    })
  }
  const rotate = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    if (!rotating) return
    const grace = Number(formValues(/** @type {HTMLFormElement} */ (e.currentTarget)).grace_seconds || 0)
    runRotate(async () => {
      const key = await api('POST', `/admin/keys/${encodeURIComponent(rotating.id)}/rotate`, { grace_seconds: grace })
      setRotating(null)
      setReveal({ title: `Rotated: the new key of ${rotating.name ?? rotating.id}`, value: key.key })
      reload()
    })
  }
  const closeDialogs = () => {
    setEditing(null)
    setRevoking(null)
    setRotating(null)
    setCounting(null)
    clearSave()
    clearRevoke()
    clearRotate()
  }
  /** Open a dialog without an error left from its last use. @param {() => void} open */
  const opening = (open) => {
    closeDialogs()
    open()
  }
  const label = (/** @type {Key} */ k) => k.name ?? k.id

  return html`<section>
    <${PageHead} lead="API keys: who owns them, what they may do, and when they stop working.">Keys</${PageHead}>
    ${reveal ? html`<${SecretReveal} title=${reveal.title} value=${reveal.value} onDone=${() => setReveal(null)} />` : null}
    ${done ? html`<${Note} tone="ok">${done}</${Note}>` : null}
    <div class="toolbar">
      <button type="button" class="primary" aria-expanded=${creating} aria-controls="create-key" onClick=${() => {
        clearCreate()
        setCreating(!creating)
      }}>${creating ? 'Cancel' : 'Create a key'}</button>
      <button type="button" onClick=${reload}>Refresh</button>
    </div>
    <datalist id="user-ids">${(users.data?.data ?? []).map((/** @type {any} */ u) => html`<option value=${u.id}>${u.name ?? u.email ?? ''}</option>`)}</datalist>
    <datalist id="team-ids">${(teams.data?.data ?? []).map((/** @type {any} */ t) => html`<option value=${t.id}>${t.name}</option>`)}</datalist>
    ${creating
      ? html`<form id="create-key" class="panel" onSubmit=${create} aria-labelledby="create-key-title">
          <h2 id="create-key-title">Create a key</h2>
          <div class="grid">
            <${Field} id="create-user" label="Owner (user id)" hint=${cutHint(users.data, 'users')} error=${errorAt(createError, 'user_id')}><input id="create-user" name="user_id" list="user-ids" required autocomplete="off" defaultValue=${params.user_id ?? ''} /></${Field}>
            <${Field} id="create-team" label="Team (optional)" hint=${['The owner must be a member.', cutHint(teams.data, 'teams')].filter(Boolean).join(' ')} error=${errorAt(createError, 'team_id')}><input id="create-team" name="team_id" list="team-ids" autocomplete="off" defaultValue=${params.team_id ?? ''} /></${Field}>
            <${Field} id="create-env" label="Environment" hint=${`Empty: ${environment}, this gateway's.`} error=${errorAt(createError, 'environment')}><input id="create-env" name="environment" pattern="[a-z0-9]{1,16}" placeholder=${environment} /></${Field}>
          </div>
          <${KeySettings} prefix="create" models=${modelNames} error=${createError} />
          <${ErrorNote} error=${errorElsewhere(createError, KEY_PARAMS)} />
          <div class="actions"><button type="submit" class="primary" disabled=${creatingBusy}>${creatingBusy ? 'Creating…' : 'Create key'}</button></div>
        </form>`
      : null}
    <form class="filters" onSubmit=${applyFilter} aria-label="Filter keys">
      <${Field} id="f-user" label="Owner"><input id="f-user" name="user_id" list="user-ids" defaultValue=${filter.user_id} key=${filter.user_id} autocomplete="off" /></${Field}>
      <${Field} id="f-team" label="Team"><input id="f-team" name="team_id" list="team-ids" defaultValue=${filter.team_id} key=${filter.team_id} autocomplete="off" /></${Field}>
      <${Field} id="f-status" label="Status">
        <select id="f-status" name="status" value=${filter.status}><option value="">Any</option><option value="active">Active</option><option value="expired">Expired</option><option value="revoked">Revoked</option></select>
      </${Field}>
      <button type="submit">Filter</button>
    </form>
    ${expiringIds.size
      ? html`<${Note} tone="warn">${expiring.data?.next_cursor ? `More than ${expiringIds.size} active keys expire` : `${expiringIds.size} active key${expiringIds.size === 1 ? '' : 's'} expire${expiringIds.size === 1 ? 's' : ''}`} within 7 days (highlighted).</${Note}>`
      : null}
    ${holderRefusals.length
      ? html`<${Note} tone="warn">${holderRefusals.join('; ')}: every request with these keys is refused with <code>invalid_user_for_key</code>, whatever their status below.</${Note}>`
      : null}
    <${ErrorNote} error=${keys.error} />
    ${!keys.loaded ? html`<p class="empty">Loading keys…</p>` : html`<${Table}
      caption="API keys"
      rows=${rows}
      rowKey=${(/** @type {Key} */ k) => k.id}
      rowClass=${(/** @type {Key} */ k) => (expiringIds.has(k.id) || expiringSoon(k) ? 'expiring' : '')}
      empty="No keys match."
      columns=${[
        { label: 'Key', cell: (/** @type {Key} */ k) => html`<div class="key-cell"><strong>${k.name ?? 'unnamed'}</strong><span class="mono">${k.display}</span><span class="muted mono">${k.id}</span></div>` },
        { label: 'Status', cell: (/** @type {Key} */ k) => html`${effectiveStatus(k)}${expiringIds.has(k.id) || expiringSoon(k) ? html` <${Badge} value="expiring" />` : null}${k.grace_until && k.status === 'active' ? html`<div class="muted">rotated; works until ${fmtTime(k.grace_until)}</div>` : null}${k.status === 'revoked' ? revokedNote(k) : null}` },
        { label: 'Owner', cell: (/** @type {Key} */ k) => html`<a href=${`#/keys?user_id=${encodeURIComponent(k.user_id)}`}>${k.user_id}</a>` },
        { label: 'Team', cell: (/** @type {Key} */ k) => k.team_id ?? '—' },
        { label: 'Env', cell: (/** @type {Key} */ k) => html`<code>${k.environment}</code>` },
        { label: 'Last used', cell: (/** @type {Key} */ k) => html`<span title=${fmtTime(k.last_used_at)}>${k.last_used_at ? fmtRelative(k.last_used_at) : 'never'}</span>` },
        { label: 'Expires', cell: (/** @type {Key} */ k) => (k.expires_at ? html`<span title=${fmtTime(k.expires_at)}>${fmtRelative(k.expires_at)}</span>` : 'never') },
        { label: 'Access', cell: (/** @type {Key} */ k) => html`<div class="muted small">models: ${fmtList(k.models)}<br />scopes: ${fmtList(k.scopes)}<br />limits: ${fmtLimits(k.limits)}<br />budget: ${fmtBudget(k.budget)}</div>` },
        {
          label: 'Actions',
          cell: (/** @type {Key} */ k) => html`<div class="row-actions">
            ${k.status !== 'revoked' ? html`<button type="button" onClick=${() => opening(() => setEditing(k))} aria-label=${`Edit ${label(k)}`}>Edit</button>` : null}
            ${k.status === 'active' && !k.rotated_to && !k.holder_status ? html`<button type="button" onClick=${() => opening(() => setRotating(k))} aria-label=${`Rotate ${label(k)}`}>Rotate</button>` : null}
            ${k.limits || k.budget ? html`<button type="button" onClick=${() => opening(() => setCounting(k))} aria-label=${`Quota of ${label(k)}`}>Quota</button>` : null}
            ${k.status !== 'revoked' ? html`<button type="button" class="danger" onClick=${() => opening(() => setRevoking(k))} aria-label=${`Revoke ${label(k)}`}>Revoke</button>` : null}
            <a class="button-link" href=${`#/doctor?key_id=${encodeURIComponent(k.id)}`} aria-label=${`Diagnose ${label(k)}`}>Diagnose</a>
            <a class="button-link" href=${`#/logs?key_id=${encodeURIComponent(k.id)}`} aria-label=${`Logs of ${label(k)}`}>Logs</a>
            <a class="button-link" href=${`#/audit?target_id=${encodeURIComponent(k.id)}`} aria-label=${`Changes to ${label(k)}`}>Changes</a>
          </div>`,
        },
      ]}
    />`}
    ${keys.more ? html`<div class="actions"><button type="button" onClick=${keys.loadMore} disabled=${keys.loadingMore}>${keys.loadingMore ? 'Loading…' : 'Load more keys'}</button></div>` : null}

    <${Dialog} title=${`Edit ${editing ? label(editing) : ''}`} open=${editing !== null} onClose=${closeDialogs}>
      ${editing
        ? html`<form onSubmit=${save} key=${editing.id}>
            ${editing.status === 'expired' ? html`<${Note} tone="warn">This key expired ${fmtRelative(editing.expires_at)}: a later expiry (or none) makes it work again.</${Note}>` : null}
            <${KeySettings} prefix="edit" initial=${editing} models=${modelNames} error=${saveError} />
            <${ErrorNote} error=${errorElsewhere(saveError, KEY_PARAMS)} />
            <div class="actions"><button type="button" onClick=${closeDialogs}>Cancel</button><button type="submit" class="primary" disabled=${saving}>${saving ? 'Saving…' : 'Save changes'}</button></div>
          </form>`
        : null}
    </${Dialog}>
    <${Dialog} title=${`Quota of ${counting ? label(counting) : ''}`} open=${counting !== null} onClose=${closeDialogs}>
      ${counting ? html`<${QuotaPanel} scope="keys" id=${counting.id} label=${label(counting)} key=${counting.id} />` : null}
    </${Dialog}>
    <${Dialog} title=${`Revoke ${revoking ? label(revoking) : ''}?`} open=${revoking !== null} onClose=${closeDialogs}>
      ${revoking
        ? html`<form onSubmit=${revoke}>
            <p>Every request with <span class="mono">${revoking.display}</span> is refused with <code>key_revoked</code>, on every instance, within a second. This cannot be undone.</p>
            <${Field} id="revoke-reason" label="Reason (optional)" hint="Shown in the refusal's message and the audit log."><input id="revoke-reason" name="reason" maxlength="500" /></${Field}>
            <${ErrorNote} error=${revokeError} />
            <div class="actions"><button type="button" onClick=${closeDialogs}>Cancel</button><button type="submit" class="danger" disabled=${revokingBusy}>Revoke key</button></div>
          </form>`
        : null}
    </${Dialog}>
    <${Dialog} title=${`Rotate ${rotating ? label(rotating) : ''}`} open=${rotating !== null} onClose=${closeDialogs}>
      ${rotating
        ? html`<form onSubmit=${rotate}>
            <p>A new secret replaces <span class="mono">${rotating.display}</span>, with the same owner, team, models, scopes, limits and budget. The new key is shown once.</p>
            <${Field} id="rotate-grace" label="Grace period" hint="How long the old key keeps working, so clients can switch.">
              <select id="rotate-grace" name="grace_seconds">${GRACE.map((g) => html`<option value=${g.seconds}>${g.label}</option>`)}</select>
            </${Field}>
            <${ErrorNote} error=${rotateError} />
            <div class="actions"><button type="button" onClick=${closeDialogs}>Cancel</button><button type="submit" class="primary" disabled=${rotatingBusy}>Rotate key</button></div>
          </form>`
        : null}
    </${Dialog}>
  </section>`
}
