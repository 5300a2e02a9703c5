// The settings keys, users and teams share: the models they may use, their rate limits and their
// budget. Fieldsets for a form, read back as the admin API takes them, and which of them the
// operator changed. The controls are uncontrolled (`defaultValue`, `defaultChecked`,
// `defaultSelected`): a re-render (an error, a busy state) keeps what was typed, and the defaults
// tell which settings changed (see {@link changedSettings}).
import { html } from 'htm/preact'
import { Field, FieldError, checkedValues, errorAt, formValues, intOrUndefined } from './ui.js'

const BUDGET_PERIODS = [
  { value: '', label: 'No budget' },
  { value: 'day', label: 'Per day' },
  { value: 'week', label: 'Per week' },
  { value: 'month', label: 'Per month' },
  { value: 'total', label: 'In total' },
]

/** The form controls behind models, limits and budget (limits and budget are sent whole). */
export const QUOTA_CONTROLS = /** @type {const} */ ({
  models: ['models', 'models_mode'],
  limits: ['rpm', 'tpm', 'max_parallel'],
  budget: ['budget_period', 'budget_tokens', 'budget_usd'],
})

/**
 * A list setting of the admin API where null (or absent) allows every item and a list only those
 * in it, the empty one none: two radios, "every" and "only those ticked", over the checkboxes.
 * Ticking a box chooses "only"; choosing "every" clears the ticks. `name` is the checkboxes' control
 * name, and `${name}_mode` the radios' (both count as the setting's controls for a PATCH).
 * @param {{ id: string, name: string, legend: string, items: string[], initial: string[] | null | undefined, every: string, only: string, hint: string, none: string, error?: any }} props
 */
export function ListFieldset({ id, name, legend, items, initial, every, only, hint, none, error }) {
  const all = initial === null || initial === undefined
  /** @param {Event} e */
  const ticked = (e) => {
    const box = /** @type {HTMLInputElement} */ (e.currentTarget)
    const radio = box.form?.querySelector(`input[name="${name}_mode"][value="only"]`)
    if (box.checked && radio instanceof HTMLInputElement) radio.checked = true
  }
  /** @param {Event} e */
  const everyChosen = (e) => {
    const form = /** @type {HTMLInputElement} */ (e.currentTarget).form
    for (const box of form?.querySelectorAll(`input[type="checkbox"][name="${name}"]`) ?? []) /** @type {HTMLInputElement} */ (box).checked = false
  }
  return html`<fieldset id=${id} class=${error ? 'invalid' : ''} aria-describedby=${error ? `${id}-error` : undefined}>
    <legend>${legend}</legend>
    <p class="hint">${hint}</p>
    <div class="checks">
      <label class="check"><input type="radio" name=${`${name}_mode`} value="every" defaultChecked=${all} onChange=${everyChosen} /> ${every}</label>
      <label class="check"><input type="radio" name=${`${name}_mode`} value="only" defaultChecked=${!all} /> ${only}</label>
    </div>
    <div class="checks" role="group" aria-label=${`${legend} allowed`}>
      ${items.length ? items.map((m) => html`<label class="check"><input type="checkbox" name=${name} value=${m} defaultChecked=${initial?.includes(m) ?? false} onChange=${ticked} /> ${m}</label>`) : html`<span class="hint">${none}</span>`}
    </div>
    <${FieldError} id=${id} error=${error} />
  </fieldset>`
}

/**
 * A list setting as ListFieldset's controls say it: null for "every", else the ticked values
 * (none ticked: the empty list, which allows nothing).
 * @param {HTMLFormElement} form
 * @param {string} name
 * @returns {string[] | null}
 */
export function readList(form, name) {
  const mode = new FormData(form).get(`${name}_mode`)
  return mode === 'only' ? checkedValues(form, name) : null
}

/**
 * Models: every model, or only those ticked (the gateway's, and any the settings already name).
 * @param {{ prefix: string, models: string[], initial: string[] | null | undefined, hint: string, error?: any }} props
 */
export function ModelsFieldset({ prefix, models, initial, hint, error }) {
  return html`<${ListFieldset}
    id=${`${prefix}-models`}
    name="models"
    legend="Models"
    items=${[...new Set([...models, ...(initial ?? [])])]}
    initial=${initial}
    every="Every model"
    only="Only the models ticked"
    hint=${hint}
    none="No models are configured."
    error=${errorAt(error, 'models')}
  />`
}

/**
 * Requests per minute, tokens per minute, requests in flight.
 * @param {{ prefix: string, initial: any, error?: any }} props
 */
export function LimitsFieldset({ prefix, initial, error }) {
  const id = (/** @type {string} */ name) => `${prefix}-${name}`
  // About the limits but none of their fields (a field the API does not know): beside the legend.
  const whole = ['limits.rpm', 'limits.tpm', 'limits.max_parallel'].some((p) => errorAt(error, p)) ? null : errorAt(error, 'limits')
  return html`<fieldset id=${id('limits')} class=${whole ? 'invalid' : ''}>
    <legend>Limits</legend>
    <p class="hint">Empty: no limit.</p>
    <${FieldError} id=${id('limits')} error=${whole} />
    <div class="grid">
      <${Field} id=${id('rpm')} label="Requests per minute" error=${errorAt(error, 'limits.rpm')}><input id=${id('rpm')} name="rpm" type="number" min="1" step="1" inputmode="numeric" defaultValue=${initial?.rpm ?? ''} /></${Field}>
      <${Field} id=${id('tpm')} label="Tokens per minute" error=${errorAt(error, 'limits.tpm')}><input id=${id('tpm')} name="tpm" type="number" min="1" step="1" inputmode="numeric" defaultValue=${initial?.tpm ?? ''} /></${Field}>
      <${Field} id=${id('parallel')} label="Requests in flight" error=${errorAt(error, 'limits.max_parallel')}><input id=${id('parallel')} name="max_parallel" type="number" min="1" step="1" inputmode="numeric" defaultValue=${initial?.max_parallel ?? ''} /></${Field}>
    </div>
  </fieldset>`
}

/**
 * A budget in tokens and/or USD per period.
 * @param {{ prefix: string, initial: any, error?: any }} props
 */
export function BudgetFieldset({ prefix, initial, error }) {
  const id = (/** @type {string} */ name) => `${prefix}-${name}`
  const period = initial?.period ?? ''
  // The period's, or the budget's but none of its amounts': beside the period.
  const periodError = errorAt(error, 'budget.tokens') || errorAt(error, 'budget.usd') ? null : errorAt(error, 'budget')
  return html`<fieldset>
    <legend>Budget</legend>
    <div class="grid">
      <${Field} id=${id('budget-period')} label="Period" hint="Needed for a budget in tokens or USD." error=${periodError}>
        <select id=${id('budget-period')} name="budget_period">
          ${BUDGET_PERIODS.map((p) => html`<option value=${p.value} defaultSelected=${p.value === period}>${p.label}</option>`)}
        </select>
      </${Field}>
      <${Field} id=${id('budget-tokens')} label="Tokens" error=${errorAt(error, 'budget.tokens')}><input id=${id('budget-tokens')} name="budget_tokens" type="number" min="1" step="1" inputmode="numeric" defaultValue=${initial?.tokens ?? ''} /></${Field}>
      <${Field} id=${id('budget-usd')} label="USD" error=${errorAt(error, 'budget.usd')}><input id=${id('budget-usd')} name="budget_usd" type="number" min="0.000001" step="any" inputmode="decimal" defaultValue=${initial?.usd ?? ''} /></${Field}>
    </div>
  </fieldset>`
}

/** An error of the form itself, shown beside the field its `param` names, as the API's are. */
class FormError extends Error {
  /** @param {string} message @param {string} param */
  constructor(message, param) {
    super(message)
    this.param = param
    this.code = 'unknown'
  }
}

/**
 * Models, limits and budget as the admin API takes them, null where none is set ("Every model";
 * no limit filled: no limits; no period: no budget; "Only the models ticked" with none ticked is
 * the empty list, no model). A budget amount without a
 * period is refused here, beside the Period field, before anything is sent.
 * @param {HTMLFormElement} form
 */
export function readQuota(form) {
  const v = formValues(form)
  const models = readList(form, 'models')
  const limits = { rpm: intOrUndefined(v.rpm), tpm: intOrUndefined(v.tpm), max_parallel: intOrUndefined(v.max_parallel) }
  const hasLimits = Object.values(limits).some((x) => x !== undefined)
  if (!v.budget_period && (v.budget_tokens || v.budget_usd)) {
    throw new FormError('A budget needs a period: choose one under Budget, or clear its tokens and USD to have no budget.', 'budget.period')
  }
  const budget = v.budget_period ? { period: v.budget_period, tokens: intOrUndefined(v.budget_tokens), usd: v.budget_usd ? Number(v.budget_usd) : undefined } : null
  return { models, limits: hasLimits ? limits : null, budget }
}

/**
 * The settings whose controls the operator changed from what the form was drawn with. A PATCH
 * of only these leaves the rest as they are on the gateway (another operator may have changed
 * them since).
 * @template {string} S
 * @param {HTMLFormElement} form
 * @param {Readonly<Record<S, readonly string[]>>} controls each setting's control names
 * @returns {S[]}
 */
export function changedSettings(form, controls) {
  const changed = (/** @type {Element} */ el) => {
    if (el instanceof HTMLInputElement) return el.type === 'checkbox' || el.type === 'radio' ? el.checked !== el.defaultChecked : el.value !== el.defaultValue
    if (el instanceof HTMLSelectElement) {
      const initial = [...el.options].find((o) => o.defaultSelected) ?? el.options[0]
      return el.value !== (initial?.value ?? '')
    }
    return false
  }
  const elements = [...form.elements]
  return /** @type {S[]} */ (Object.keys(controls)).filter((setting) => elements.some((el) => controls[setting].includes(el.getAttribute('name') ?? '') && changed(el)))
}
