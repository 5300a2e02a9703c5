// Key doctor: what the gateway would answer a key (or key id), model and team, and why.
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { api, useResource } from '../api.js'
import { Badge, ErrorNote, SUGGESTIONS, cutHint, Field, PageHead, fmtBudget, fmtLimits, fmtList, fmtNum, fmtTime, fmtUsd, formValues, useAction } from '../ui.js'

const ENDPOINTS = ['chat.completions', 'completions', 'embeddings', 'models.list', 'tokens.count']

/** @param {{ params: Record<string, string> }} props */
export function DoctorPage({ params }) {
  const [mode, setMode] = useState(params.key ? 'key' : 'key_id')
  const [result, setResult] = useState(/** @type {any} */ (null))
  const [run, busy, error] = useAction()
  const keys = useResource(`/admin/keys?limit=${SUGGESTIONS}`)
  const models = useResource('/admin/models')
  const teams = useResource(`/admin/teams?limit=${SUGGESTIONS}`)
  const form = useRef(/** @type {HTMLFormElement | null} */ (null))
  const verdict = useRef(/** @type {HTMLElement | null} */ (null))

  const diagnose = (/** @type {Record<string, string>} */ v) =>
    run(async () => {
      /** @type {Record<string, string>} */
      const body = {}
      if (mode === 'key') body.key = v.key ?? ''
      else body.key_id = v.key_id ?? ''
      if (v.model) body.model = v.model
      if (v.team) body.team = v.team
      if (v.endpoint) body.endpoint = v.endpoint
      setResult(await api('POST', '/admin/doctor', body))
    })
  // Opened from a key's "Diagnose" link: answer at once.
  useEffect(() => {
    if (params.key_id && form.current) diagnose(formValues(form.current))
  }, [params.key_id])
  useEffect(() => {
    if (result) verdict.current?.focus()
  }, [result])

  const submit = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    diagnose(formValues(/** @type {HTMLFormElement} */ (e.currentTarget)))
  }
  return html`<section>
    <${PageHead} lead="Ask what the gateway would answer a request, without calling a provider and without counting anything against the key.">Key doctor</${PageHead}>
    <form class="panel" ref=${form} onSubmit=${submit} aria-label="Diagnose a key">
      <fieldset class="segmented">
        <legend>Which key</legend>
        <label class="check"><input type="radio" name="mode" value="key_id" checked=${mode === 'key_id'} onChange=${() => setMode('key_id')} /> Pick a key id</label>
        <label class="check"><input type="radio" name="mode" value="key" checked=${mode === 'key'} onChange=${() => setMode('key')} /> Paste a key</label>
      </fieldset>
      <div class="grid">
        ${mode === 'key_id'
          ? html`<${Field} id="doctor-key-id" label="Key id" hint=${cutHint(keys.data, 'keys')}>
              <input id="doctor-key-id" name="key_id" list="doctor-keys" required autocomplete="off" defaultValue=${params.key_id ?? ''} key=${params.key_id ?? ''} />
              <datalist id="doctor-keys">${(keys.data?.data ?? []).map((/** @type {any} */ k) => html`<option value=${k.id}>${k.name ?? ''} ${k.display} (${k.status})</option>`)}</datalist>
            </${Field}>`
          : html`<${Field} id="doctor-key" label="API key" hint="Sent to this gateway only; never stored.">
              <input id="doctor-key" name="key" type="password" required autocomplete="off" spellcheck="false" />
            </${Field}>`}
        <${Field} id="doctor-model" label="Model (optional)">
          <input id="doctor-model" name="model" list="doctor-models" autocomplete="off" defaultValue=${params.model ?? ''} key=${params.model ?? ''} />
          <datalist id="doctor-models">${(models.data?.data ?? []).map((/** @type {any} */ m) => html`<option value=${m.name} />`)}</datalist>
        </${Field}>
        <${Field} id="doctor-team" label="Team (optional)" hint=${['As a client names it in OpenAI-Organization.', cutHint(teams.data, 'teams')].filter(Boolean).join(' ')}>
          <input id="doctor-team" name="team" list="doctor-teams" autocomplete="off" defaultValue=${params.team ?? ''} key=${params.team ?? ''} />
          <datalist id="doctor-teams">${(teams.data?.data ?? []).map((/** @type {any} */ t) => html`<option value=${t.id}>${t.name}</option>`)}</datalist>
        </${Field}>
        <${Field} id="doctor-endpoint" label="Endpoint">
          <select id="doctor-endpoint" name="endpoint">${ENDPOINTS.map((e) => html`<option value=${e}>${e}</option>`)}</select>
        </${Field}>
      </div>
      <div class="actions"><button type="submit" class="primary" disabled=${busy}>${busy ? 'Asking…' : 'Diagnose'}</button></div>
    </form>
    <${ErrorNote} error=${error} />
    ${result ? html`<${Diagnosis} result=${result} verdictRef=${verdict} />` : null}
  </section>`
}

/**
 * What is left of the budgets there are: tokens, USD or both; ∞ only when neither applies.
 * @param {{ budget_tokens?: number | null, budget_usd?: number | null }} remaining
 */
function budgetLeft({ budget_tokens: tokens, budget_usd: usd }) {
  const parts = []
  if (tokens !== null && tokens !== undefined) parts.push(`${fmtNum(tokens)} tokens`)
  if (usd !== null && usd !== undefined) parts.push(fmtUsd(usd))
  return parts.join(' and ') || '∞'
}

/** @param {{ result: any, verdictRef: any }} props */
function Diagnosis({ result, verdictRef }) {
  const key = result.key ?? {}
  const remaining = result.remaining
  return html`<section class="diagnosis ${result.allowed ? 'allowed' : 'refused'}" aria-labelledby="verdict" data-testid="diagnosis">
    <h2 id="verdict" tabindex="-1" ref=${verdictRef}>
      ${result.allowed ? html`<span aria-hidden="true">✔</span> Allowed` : html`<span aria-hidden="true">✖</span> Refused`} <span class="muted">HTTP ${result.status}</span>
      ${result.error ? html` <code class="code-big">${result.error.code}</code>` : null}
    </h2>
    ${result.error ? html`<p class="verdict-message">${result.error.message}</p>` : null}
    ${!result.error && result.quota && result.quota !== 'ok' && result.quota !== 'no limits' ? html`<p class="verdict-message">Quota ${result.quota}.</p>` : null}
    <dl class="facts">
      <dt>Endpoint</dt><dd><code>${result.endpoint}</code></dd>
      <dt>Model</dt><dd>${result.model ?? 'not given'}</dd>
      <dt>Team named</dt><dd>${result.team ?? 'none'}</dd>
      ${result.key
        ? html`
          <dt>Key</dt><dd><span class="mono">${key.id ?? '—'}</span>${key.name ? ` (${key.name})` : ''}</dd>
          <dt>Status</dt><dd>${key.status ? html`<${Badge} value=${key.status} />` : '—'}${key.grace_until && (key.status === 'active' || key.status === 'rotating') ? html` <span class="muted">rotated: works until ${fmtTime(key.grace_until)}</span>` : null}</dd>
          <dt>Owner</dt><dd>${key.user_id ?? '—'}</dd>
          <dt>Environment</dt><dd><code>${key.environment ?? '—'}</code></dd>
          <dt>Team</dt><dd>${key.team_id ?? 'none'}</dd>
          <dt>Models</dt><dd>${fmtList(key.models)}</dd>
          <dt>Scopes</dt><dd>${fmtList(key.scopes)}</dd>
          <dt>Limits</dt><dd>${fmtLimits(key.limits)}</dd>
          <dt>Budget</dt><dd>${fmtBudget(key.budget)}</dd>
          <dt>Expires</dt><dd>${key.expires_at ? fmtTime(key.expires_at) : 'never'}</dd>`
        : html`<dt>Key</dt><dd>not known to this gateway</dd>`}
      <dt>Quota</dt><dd>${result.quota}</dd>
      ${remaining
        ? html`<dt>Left now</dt><dd>
            requests ${remaining.requests ?? '∞'}, tokens ${remaining.tokens === null || remaining.tokens === undefined ? '∞' : fmtNum(remaining.tokens)},
            budget ${budgetLeft(remaining)}
          </dd>`
        : null}
      ${typeof result.max_request_tokens === 'number' ? html`<dt>Largest request</dt><dd>${fmtNum(result.max_request_tokens)} tokens (prompt + max_tokens)</dd>` : null}
    </dl>
  </section>`
}
