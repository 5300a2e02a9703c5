// Users and teams: create, rename, change their models, limits and budget, disable, delete,
// and team membership.
import { useState } from 'preact/hooks'
import { html } from 'htm/preact'
import { api, qs, usePagedList, useResource } from '../api.js'
import { QuotaPanel } from './quota.js'
import { Badge, Dialog, ErrorNote, Field, Note, PageHead, Table, errorAt, errorElsewhere, fmtBudget, fmtLimits, fmtList, fmtTime, formValues, useAction, usePager } from '../ui.js'
import { BudgetFieldset, LimitsFieldset, ModelsFieldset, QUOTA_CONTROLS, changedSettings, readQuota } from '../settings.js'

/** @typedef {{ models: string[] | null, limits: any, budget: any }} Quota */
/** @typedef {Quota & { id: string, email: string | null, name: string | null, status: string, created_at: string }} User */
/** @typedef {Quota & { id: string, name: string, created_at: string }} Team */
/** @typedef {{ kind: 'user', holder: User } | { kind: 'team', holder: Team }} Editing */

/** The form controls behind each setting an edit sends: only those changed are. */
const USER_CONTROLS = /** @type {const} */ ({ name: ['name'], email: ['email'], ...QUOTA_CONTROLS })
const TEAM_CONTROLS = /** @type {const} */ ({ name: ['name'], ...QUOTA_CONTROLS })
/** The request fields the edit form shows an API error beside (the rest go under the form). */
const EDIT_PARAMS = ['name', 'email', 'models', 'limits', 'budget']

/** Models, limits and budget of a user or team as text. @param {Quota} q */
const access = (q) => html`<div class="muted small">models: ${fmtList(q.models)}<br />limits: ${fmtLimits(q.limits)}<br />budget: ${fmtBudget(q.budget)}</div>`

/** Users and teams shown per page ("Load more" for the next). */
const PAGE = 100

export function PeoplePage() {
  const users = usePagedList(`/admin/users?limit=${PAGE}`)
  const teams = usePagedList(`/admin/teams?limit=${PAGE}`)
  const [team, setTeam] = useState(/** @type {Team | null} */ (null))
  const [deleting, setDeleting] = useState(/** @type {{ kind: 'user' | 'team', id: string } | null} */ (null))
  const [counting, setCounting] = useState(/** @type {{ scope: 'users' | 'teams', id: string } | null} */ (null))
  const [editing, setEditing] = useState(/** @type {Editing | null} */ (null))
  const models = useResource('/admin/models')
  const modelNames = (models.data?.data ?? []).map((/** @type {any} */ m) => String(m.name))
  const [runSave, saving, saveError, clearSave] = useAction()
  /** Open or close the edit dialog, without an error left from its last use. @param {Editing | null} target */
  const edit = (target) => {
    clearSave()
    setEditing(target)
  }
  const [done, setDone] = useState(/** @type {string | null} */ (null))
  const [runUser, userBusy, userError] = useAction()
  const [runTeam, teamBusy, teamError] = useAction()
  // Enabling and disabling report on the page; a deletion in its dialog only.
  const [runToggle, toggling, toggleError] = useAction()
  const [runDelete, deletingBusy, deleteError, clearDelete] = useAction()
  /** @param {{ kind: 'user' | 'team', id: string } | null} target */
  const askDelete = (target) => {
    clearDelete()
    setDeleting(target)
  }

  const createUser = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    const v = formValues(form)
    runUser(async () => {
      const user = await api('POST', '/admin/users', Object.fromEntries(Object.entries(v).filter(([, x]) => x)))
      form.reset()
      setDone(`User ${user.id} created.`)
      users.reload()
    })
  }
  const createTeam = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    const v = formValues(form)
    runTeam(async () => {
      const created = await api('POST', '/admin/teams', Object.fromEntries(Object.entries(v).filter(([, x]) => x)))
      form.reset()
      setDone(`Team ${created.id} created.`)
      teams.reload()
    })
  }
  const setDisabled = (/** @type {User} */ u, /** @type {boolean} */ disabled) =>
    runToggle(async () => {
      await api('PATCH', `/admin/users/${encodeURIComponent(u.id)}`, { disabled })
      setDone(`User ${u.id} ${disabled ? 'disabled: its keys are refused with invalid_user_for_key' : 'enabled'}.`)
      users.reload()
    })
  const confirmDelete = () =>
    runDelete(async () => {
      if (!deleting) return
      await api('DELETE', `/admin/${deleting.kind}s/${encodeURIComponent(deleting.id)}`)
      setDone(`${deleting.kind === 'user' ? 'User' : 'Team'} ${deleting.id} deleted.`)
      if (deleting.kind === 'team' && team?.id === deleting.id) setTeam(null)
      setDeleting(null)
      users.reload()
      teams.reload()
    })

  const save = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    if (!editing) return
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    const { kind, holder } = editing
    const what = `${kind === 'user' ? 'User' : 'Team'} ${holder.name ?? holder.id}`
    runSave(async () => {
      const v = formValues(form)
      /** @type {Record<string, unknown>} */
      const settings = { name: v.name || null, email: v.email || null, ...readQuota(form) }
      /** @type {Record<string, unknown>} */
      const body = {}
      for (const setting of changedSettings(form, kind === 'user' ? USER_CONTROLS : TEAM_CONTROLS)) body[setting] = settings[setting]
      if (Object.keys(body).length === 0) {
        setDone(`Nothing changed in ${kind} ${holder.name ?? holder.id}.`)
        setEditing(null)
        return
      }
      const saved = await api('PATCH', `/admin/${kind}s/${encodeURIComponent(holder.id)}`, body)
      setDone(`${what} saved.`)
      setEditing(null)
      if (kind === 'team' && team?.id === holder.id) setTeam(saved)
      if (kind === 'user') users.reload()
      else teams.reload()
    })
  }

  return html`<section>
    <${PageHead} lead="A key belongs to a user; a user may belong to teams; a key may be bound to one team.">Users and teams</${PageHead}>
    ${done ? html`<${Note} tone="ok">${done}</${Note}>` : null}
    <${ErrorNote} error=${toggleError} />
    <datalist id="people-user-ids">${users.rows.map((/** @type {User} */ u) => html`<option value=${u.id}>${u.name ?? u.email ?? ''}</option>`)}</datalist>
    <div class="split">
      <section aria-labelledby="users-title">
        <h2 id="users-title">Users</h2>
        <form class="panel" onSubmit=${createUser} aria-labelledby="new-user-title">
          <h3 id="new-user-title">New user</h3>
          <div class="grid">
            <${Field} id="user-id" label="Id (optional)" hint="Generated (usr_…) when empty."><input id="user-id" name="id" pattern="[A-Za-z0-9_.:\\-]{1,64}" autocomplete="off" /></${Field}>
            <${Field} id="user-email" label="Email"><input id="user-email" name="email" type="email" autocomplete="off" /></${Field}>
            <${Field} id="user-name" label="Name"><input id="user-name" name="name" autocomplete="off" /></${Field}>
          </div>
          <${ErrorNote} error=${userError} />
          <div class="actions"><button type="submit" class="primary" disabled=${userBusy}>Create user</button></div>
        </form>
        <${ErrorNote} error=${users.error} />
        <${Table}
          caption="Users"
          rows=${users.rows}
          rowKey=${(/** @type {User} */ u) => u.id}
          empty=${users.loaded ? 'No users yet.' : 'Loading users…'}
          columns=${[
            { label: 'User', cell: (/** @type {User} */ u) => html`<div class="key-cell"><strong>${u.name ?? u.email ?? u.id}</strong><span class="muted mono">${u.id}</span>${u.email && u.name ? html`<span class="muted">${u.email}</span>` : null}</div>` },
            { label: 'Status', cell: (/** @type {User} */ u) => html`<${Badge} value=${u.status} />` },
            { label: 'Access', cell: access },
            { label: 'Created', cell: (/** @type {User} */ u) => fmtTime(u.created_at) },
            {
              label: 'Actions',
              cell: (/** @type {User} */ u) => html`<div class="row-actions">
                <a class="button-link" href=${`#/keys?user_id=${encodeURIComponent(u.id)}`} aria-label=${`Keys of ${u.id}`}>Keys</a>
                <button type="button" onClick=${() => edit({ kind: 'user', holder: u })} aria-label=${`Edit ${u.id}`}>Edit</button>
                <button type="button" onClick=${() => setCounting({ scope: 'users', id: u.id })} aria-label=${`Quota of ${u.id}`}>Quota</button>
                ${u.status === 'active' ? html`<button type="button" onClick=${() => setDisabled(u, true)} disabled=${toggling} aria-label=${`Disable ${u.id}`}>Disable</button>` : html`<button type="button" onClick=${() => setDisabled(u, false)} disabled=${toggling} aria-label=${`Enable ${u.id}`}>Enable</button>`}
                <button type="button" class="danger" onClick=${() => askDelete({ kind: 'user', id: u.id })} aria-label=${`Delete ${u.id}`}>Delete</button>
              </div>`,
            },
          ]}
        />
        <${More} list=${users} what="users" />
      </section>
      <section aria-labelledby="teams-title">
        <h2 id="teams-title">Teams</h2>
        <form class="panel" onSubmit=${createTeam} aria-labelledby="new-team-title">
          <h3 id="new-team-title">New team</h3>
          <div class="grid">
            <${Field} id="team-id" label="Id (optional)" hint="Generated (team_…) when empty."><input id="team-id" name="id" pattern="[A-Za-z0-9_.:\\-]{1,64}" autocomplete="off" /></${Field}>
            <${Field} id="team-name" label="Name"><input id="team-name" name="name" required autocomplete="off" /></${Field}>
          </div>
          <${ErrorNote} error=${teamError} />
          <div class="actions"><button type="submit" class="primary" disabled=${teamBusy}>Create team</button></div>
        </form>
        <${ErrorNote} error=${teams.error} />
        <${Table}
          caption="Teams"
          rows=${teams.rows}
          rowKey=${(/** @type {Team} */ t) => t.id}
          rowClass=${(/** @type {Team} */ t) => (team?.id === t.id ? 'selected' : '')}
          empty=${teams.loaded ? 'No teams yet.' : 'Loading teams…'}
          columns=${[
            { label: 'Team', cell: (/** @type {Team} */ t) => html`<div class="key-cell"><strong>${t.name}</strong><span class="muted mono">${t.id}</span></div>` },
            { label: 'Access', cell: access },
            { label: 'Created', cell: (/** @type {Team} */ t) => fmtTime(t.created_at) },
            {
              label: 'Actions',
              cell: (/** @type {Team} */ t) => html`<div class="row-actions">
                <button type="button" aria-pressed=${team?.id === t.id} onClick=${() => setTeam(team?.id === t.id ? null : t)} aria-label=${`Members of ${t.id}`}>Members</button>
                <button type="button" onClick=${() => edit({ kind: 'team', holder: t })} aria-label=${`Edit team ${t.id}`}>Edit</button>
                <button type="button" onClick=${() => setCounting({ scope: 'teams', id: t.id })} aria-label=${`Quota of ${t.id}`}>Quota</button>
                <button type="button" class="danger" onClick=${() => askDelete({ kind: 'team', id: t.id })} aria-label=${`Delete team ${t.id}`}>Delete</button>
              </div>`,
            },
          ]}
        />
        <${More} list=${teams} what="teams" />
        ${team ? html`<${Members} team=${team} usersCut=${users.more} key=${team.id} />` : null}
      </section>
    </div>
    <${Dialog} title=${`Delete ${deleting?.kind ?? ''} ${deleting?.id ?? ''}?`} open=${deleting !== null} onClose=${() => askDelete(null)}>
      <p>${deleting?.kind === 'user'
        ? 'The user is soft-deleted: its keys stay in the database and every request with them is refused with invalid_user_for_key.'
        : 'The team is soft-deleted: keys bound to it are refused.'}</p>
      <${ErrorNote} error=${deleteError} />
      <div class="actions"><button type="button" onClick=${() => askDelete(null)}>Cancel</button><button type="button" class="danger" onClick=${confirmDelete} disabled=${deletingBusy}>Delete</button></div>
    </${Dialog}>
    <${Dialog} title=${editing ? `Edit ${editing.kind} ${editing.holder.name ?? editing.holder.id}` : ''} open=${editing !== null} onClose=${() => edit(null)}>
      ${editing
        ? html`<form onSubmit=${save} key=${`${editing.kind}/${editing.holder.id}`} aria-label=${`Settings of ${editing.kind} ${editing.holder.id}`}>
            <${HolderSettings} editing=${editing} models=${modelNames} error=${saveError} />
            <${ErrorNote} error=${errorElsewhere(saveError, EDIT_PARAMS)} />
            <div class="actions"><button type="button" onClick=${() => edit(null)}>Cancel</button><button type="submit" class="primary" disabled=${saving}>${saving ? 'Saving…' : 'Save changes'}</button></div>
          </form>`
        : null}
    </${Dialog}>
    <${Dialog} title=${`Quota of ${counting?.id ?? ''}`} open=${counting !== null} onClose=${() => setCounting(null)}>
      ${counting ? html`<${QuotaPanel} scope=${counting.scope} id=${counting.id} label=${counting.id} key=${`${counting.scope}/${counting.id}`} />` : null}
    </${Dialog}>
  </section>`
}

/**
 * A user's name and email, or a team's name, with the models, limits and budget its keys get.
 * @param {{ editing: Editing, models: string[], error: any }} props
 */
function HolderSettings({ editing, models, error }) {
  const { kind, holder } = editing
  const prefix = `edit-${kind}`
  return html`
    <p class="muted">Id <span class="mono">${holder.id}</span>. ${kind === 'user'
      ? 'Every key of this user is held to these as well as to its own.'
      : 'Requests billed to the team (keys bound to it, or naming it in OpenAI-Organization) must fit these too.'}</p>
    <div class="grid">
      ${kind === 'user'
        ? html`<${Field} id=${`${prefix}-name`} label="Name" hint="Empty: no name." error=${errorAt(error, 'name')}><input id=${`${prefix}-name`} name="name" maxlength="200" autocomplete="off" defaultValue=${holder.name ?? ''} /></${Field}>
            <${Field} id=${`${prefix}-email`} label="Email" hint="Empty: no email." error=${errorAt(error, 'email')}><input id=${`${prefix}-email`} name="email" type="email" autocomplete="off" defaultValue=${editing.holder.email ?? ''} /></${Field}>`
        : html`<${Field} id=${`${prefix}-name`} label="Name" error=${errorAt(error, 'name')}><input id=${`${prefix}-name`} name="name" maxlength="200" required autocomplete="off" defaultValue=${holder.name} /></${Field}>`}
    </div>
    <${ModelsFieldset} prefix=${prefix} models=${models} initial=${holder.models} hint=${`A key may narrow them further, never widen them. Only the models ticked with none ticked: no model.`} error=${error} />
    <${LimitsFieldset} prefix=${prefix} initial=${holder.limits} error=${error} />
    <${BudgetFieldset} prefix=${prefix} initial=${holder.budget} error=${error} />`
}

/** The "Load more" button of a paged list. @param {{ list: ReturnType<typeof usePagedList>, what: string }} props */
function More({ list, what }) {
  if (!list.more) return null
  return html`<div class="actions"><button type="button" onClick=${list.loadMore} disabled=${list.loadingMore}>${list.loadingMore ? 'Loading…' : `Load more ${what}`}</button></div>`
}

/** @param {{ team: Team, usersCut: boolean }} props */
function Members({ team, usersCut }) {
  // Newest first, a page at a time (the list is cursor paged like the others).
  const pager = usePager()
  const members = useResource(`/admin/teams/${encodeURIComponent(team.id)}/members${qs({ limit: 50, cursor: pager.before })}`)
  // Adding reports under its form, removing above the list.
  const [runAdd, adding, addError] = useAction()
  const [runRemove, removing, removeError] = useAction()
  const add = (/** @type {SubmitEvent} */ e) => {
    e.preventDefault()
    const form = /** @type {HTMLFormElement} */ (e.currentTarget)
    const v = formValues(form)
    runAdd(async () => {
      await api('POST', `/admin/teams/${encodeURIComponent(team.id)}/members`, { user_id: v.user_id, role: v.role || 'member' })
      form.reset()
      members.reload()
    })
  }
  const remove = (/** @type {string} */ userId) =>
    runRemove(async () => {
      await api('DELETE', `/admin/teams/${encodeURIComponent(team.id)}/members/${encodeURIComponent(userId)}`)
      members.reload()
    })
  return html`<section class="panel" aria-labelledby="members-title">
    <h3 id="members-title">Members of ${team.name}</h3>
    <${ErrorNote} error=${members.error} />
    <${ErrorNote} error=${removeError} />
    <${Table}
      caption=${`Members of ${team.name}`}
      rows=${members.data?.data ?? []}
      rowKey=${(/** @type {any} */ m) => m.user_id}
      empty=${members.loading ? 'Loading members…' : 'No members yet.'}
      columns=${[
        { label: 'User', cell: (/** @type {any} */ m) => html`<span class="mono">${m.user_id}</span>` },
        { label: 'Role', cell: (/** @type {any} */ m) => m.role },
        { label: 'Since', cell: (/** @type {any} */ m) => fmtTime(m.created_at) },
        { label: 'Actions', cell: (/** @type {any} */ m) => html`<button type="button" class="danger" onClick=${() => remove(m.user_id)} disabled=${removing} aria-label=${`Remove ${m.user_id} from ${team.id}`}>Remove</button>` },
      ]}
    />
    <div class="actions pager">
      <button type="button" onClick=${pager.newer} disabled=${!pager.hasNewer}>Newer</button>
      <button type="button" onClick=${() => pager.older(members.data?.next_cursor)} disabled=${!members.data?.next_cursor}>Older</button>
    </div>
    <form class="inline-form" onSubmit=${add} aria-label=${`Add a member to ${team.name}`}>
      <${Field} id="member-user" label="User id" hint=${usersCut ? 'Suggestions show the users loaded above only; type any id.' : undefined}><input id="member-user" name="user_id" list="people-user-ids" required autocomplete="off" /></${Field}>
      <${Field} id="member-role" label="Role"><select id="member-role" name="role"><option value="member">member</option><option value="admin">admin</option></select></${Field}>
      <button type="submit" class="primary" disabled=${adding}>Add member</button>
    </form>
    <${ErrorNote} error=${addError} />
  </section>`
}
