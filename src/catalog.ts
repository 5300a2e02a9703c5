import { randomBytes } from 'node:crypto'
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Elysia } from 'elysia'
import { adminActor, adminGuard } from './admin-key.ts'
import { audit } from './db/audit.ts'
import { echo } from './lib/key-text.ts'
import { decodePercent, modelPathId } from './lib/percent.ts'
import { Type, type Static } from '@sinclair/typebox'
import { sql, type Kysely, type RawBuilder } from 'kysely'
import { catalogProblems, type CatalogProblem, type ResolvedConfig } from './config/load.ts'
import { ModelSchema, PROVIDER_TYPES, ProviderKeySchema, TimeoutsSchema, type ModelConfig, type ProviderConfig } from './config/schema.ts'
import type { Database } from './db/schema.ts'
import { DEFAULT_DATABASE_URL, byteOrder, isUniqueViolation, parseDatabaseUrl } from './db/index.ts'
import { SQLITE_MEMORY } from './db/sqlite-dialect.ts'
import { GatewayError } from './errors.ts'
import { createLogger, type Logger } from './lib/logger.ts'
import { decryptSecret, encryptSecret, envelopeKeyId, masterKey, rewrapSecret, type MasterKey } from './lib/secrets.ts'
import { compileCheck, pointerToParam } from './lib/validate.ts'
import { adminErrors, jsonResponse, ListOf, Nullable } from './routes/schemas.ts'
import { ModelRegistry } from './models.ts'
import type { Services } from './services.ts'

const CHANNEL = 'catalog.changed'

/** The master keys: the current one seals, every listed one opens (old ones during a rotation). */
export interface MasterKeys {
  current: MasterKey | null
  all: MasterKey[]
}

/**
 * `SLUICE_ENCRYPTION_KEY` (current) and `SLUICE_ENCRYPTION_KEY_PREVIOUS` (comma-separated,
 * still accepted for opening). In dev without one, a key is generated into a file and kept
 * there for the next start (see {@link devKeyPath}); an in-memory database, gone at exit,
 * gets a key of the process. Elsewhere there is none until it is set.
 */
export function loadMasterKeys(
  config: ResolvedConfig,
  env: Record<string, string | undefined> = process.env,
  logger: Logger = createLogger(config.logLevel),
): MasterKeys {
  const previous = (env.SLUICE_ENCRYPTION_KEY_PREVIOUS ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(masterKey)
  let current = config.encryptionKey ? masterKey(config.encryptionKey) : null
  if (!current && config.environment === 'dev') current = devKey(config.databaseUrl, logger)
  return { current, all: [...(current ? [current] : []), ...previous] }
}

/**
 * Where the dev key lives: beside the SQLite file, else (Postgres) in the data dir the default
 * database would use (`./data` under the working directory), so that secrets sealed before a
 * restart still open after it. `null` for an in-memory database.
 */
export function devKeyPath(databaseUrl: string): string | null {
  const target = parseDatabaseUrl(databaseUrl)
  if (target.dialect === 'sqlite') return target.filename === SQLITE_MEMORY ? null : join(dirname(target.filename), DEV_KEY_FILE)
  const data = parseDatabaseUrl(DEFAULT_DATABASE_URL)
  if (data.dialect !== 'sqlite') throw new Error(`the default database ${DEFAULT_DATABASE_URL} is not a SQLite file`)
  return join(dirname(data.filename), DEV_KEY_FILE)
}

const DEV_KEY_FILE = 'encryption.key'

function devKey(databaseUrl: string, logger: Logger): MasterKey {
  const path = devKeyPath(databaseUrl)
  if (path === null) return masterKey(randomBytes(32).toString('base64'))
  const created = !existsSync(path) && createKeyFile(path)
  const text = readFileSync(path, 'utf8').trim()
  let key: MasterKey
  try {
    key = masterKey(text)
  } catch (error) {
    throw new Error(`${path}: ${error instanceof Error ? error.message : String(error)}; set SLUICE_ENCRYPTION_KEY, or remove the file to have a new key made (secrets sealed with the old one are then lost)`, { cause: error })
  }
  // Where, never what: the path tells the operator what to keep with the database.
  logger.info(created ? 'generated a dev encryption key for secrets at rest' : 'using the dev encryption key for secrets at rest', {
    path,
    key_id: key.id,
    hint: 'set SLUICE_ENCRYPTION_KEY outside dev',
  })
  return key
}

/**
 * Writes a new key to `path` unless another process got there first (two instances starting
 * together must end up with the same key): the key goes to a file of this process, which is
 * then linked into place, a step that fails rather than replaces. `true` when ours won.
 */
function createKeyFile(path: string): boolean {
  mkdirSync(dirname(path), { recursive: true })
  const staging = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`
  writeFileSync(staging, randomBytes(32).toString('base64') + '\n', { mode: 0o600 })
  try {
    linkSync(staging, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  } finally {
    rmSync(staging, { force: true })
  }
}

const AdminProviderKey = Type.Object(
  { ...ProviderKeySchema.properties, secret: Type.String({ maxLength: 4096, description: 'Stored encrypted; never returned' }) },
  { additionalProperties: false },
)
export const AdminProvider = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$', description: 'Letters, digits and . _ : -, not dots only' }),
    type: Type.Union(PROVIDER_TYPES.map((p) => Type.Literal(p))),
    base_url: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048, description: 'Shown with the password of its user info and its query values masked' })),
    keys: Type.Array(AdminProviderKey, { minItems: 1, maxItems: 1000 }),
    headers: Type.Optional(
      Type.Record(Type.String(), Type.String({ maxLength: 4096 }), {
        description: 'Sent upstream on every call. Names are HTTP tokens (RFC 9110); values hold no CR, LF or NUL, are stored encrypted and never returned',
      }),
    ),
    timeouts: Type.Optional(TimeoutsSchema),
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
)
/**
 * The fields of a provider an admin PATCH may remove with `null`: the optional ones, so the type's
 * official URL and the defaults apply again (a proxy's URL and its headers could otherwise be
 * dropped only with the provider, after every model using it).
 */
const CLEARABLE_PROVIDER_FIELDS = ['base_url', 'headers', 'timeouts', 'options'] as const
type ClearableProviderField = (typeof CLEARABLE_PROVIDER_FIELDS)[number]
/** Those fields' schemas as the create's, without their optional mark (which the PATCH sets itself). */
const clearableProvider = Type.Required(Type.Pick(AdminProvider, [...CLEARABLE_PROVIDER_FIELDS])).properties
const AdminProviderPatch = Type.Object(
  {
    type: Type.Optional(AdminProvider.properties.type),
    base_url: Type.Optional(Nullable(clearableProvider.base_url)),
    keys: Type.Optional(AdminProvider.properties.keys),
    headers: Type.Optional(Nullable(clearableProvider.headers)),
    timeouts: Type.Optional(Nullable(clearableProvider.timeouts)),
    options: Type.Optional(Nullable(clearableProvider.options)),
  },
  {
    additionalProperties: false,
    description: "Fields to change; null removes an optional one (base_url, headers, timeouts, options), so the type's official URL or the default applies again",
  },
)
type ProviderPatch = Partial<Omit<AdminProviderBody, 'id' | ClearableProviderField>> & { [K in ClearableProviderField]?: AdminProviderBody[K] | null }

/** A stored provider, in the API's fields, with a PATCH applied: a field sent as null is removed. */
function patchedProvider(existing: AdminProviderBody, patch: ProviderPatch): AdminProviderBody {
  const merged: Record<string, unknown> = { ...existing, ...patch, id: existing.id }
  for (const field of CLEARABLE_PROVIDER_FIELDS) if (merged[field] === null) delete merged[field]
  return merged as unknown as AdminProviderBody
}

const Source = Type.Union([Type.Literal('config'), Type.Literal('admin')], { description: 'config: from the config file (read-only here); admin: added through this API' })
/** A provider as the admin API shows it: never a secret, header names only. */
const ProviderView = Type.Object({
  object: Type.Literal('provider'),
  id: Type.String(),
  type: Type.Union(PROVIDER_TYPES.map((p) => Type.Literal(p))),
  base_url: Nullable(Type.String({ description: 'With the password of its user info and its query values masked' })),
  source: Source,
  keys: Type.Array(Type.Object({ id: Type.String(), weight: Type.Number(), rpm: Nullable(Type.Integer()), tpm: Nullable(Type.Integer()), has_secret: Type.Boolean() })),
  headers: Type.Array(Type.String(), { description: 'The names of the headers sent upstream; their values are never shown' }),
  timeouts: Nullable(TimeoutsSchema),
  options: Nullable(Type.Record(Type.String(), Type.Unknown())),
})
/** A model group as the admin API shows it: its config entry, and where it comes from. */
const ModelGroupView = Type.Object({ object: Type.Literal('model_group'), source: Source, ...ModelSchema.properties })
const ProviderDeleted = Type.Object({ object: Type.Literal('provider'), id: Type.String(), deleted: Type.Literal(true) })
const ModelDeleted = Type.Object({ object: Type.Literal('model_group'), name: Type.String(), deleted: Type.Literal(true) })
/** The fields of a model group an admin PATCH may remove with `null`: the optional ones, whose defaults then apply again. */
const CLEARABLE_MODEL_FIELDS = ['strategy', 'fallbacks', 'pricing', 'encoding'] as const
type ClearableModelField = (typeof CLEARABLE_MODEL_FIELDS)[number]
/** Those fields' schemas as the config's, without their optional mark (which the PATCH sets itself). */
const clearable = Type.Required(Type.Pick(ModelSchema, [...CLEARABLE_MODEL_FIELDS])).properties
const AdminModelPatch = Type.Object(
  {
    targets: Type.Optional(ModelSchema.properties.targets),
    strategy: Type.Optional(Nullable(clearable.strategy)),
    fallbacks: Type.Optional(Nullable(clearable.fallbacks)),
    pricing: Type.Optional(Nullable(clearable.pricing)),
    encoding: Type.Optional(Nullable(clearable.encoding)),
  },
  { additionalProperties: false, description: 'Fields to change; null removes an optional one (strategy, fallbacks, pricing, encoding), so its default applies again' },
)
type ModelPatch = Partial<Omit<ModelConfig, 'name' | ClearableModelField>> & { [K in ClearableModelField]?: ModelConfig[K] | null }

/** A stored model group with a PATCH applied: a field sent as null is removed. */
function patchedModel(existing: ModelConfig, patch: ModelPatch): ModelConfig {
  const merged: Record<string, unknown> = { ...existing, ...patch, name: existing.name }
  for (const field of CLEARABLE_MODEL_FIELDS) if (merged[field] === null) delete merged[field]
  return merged as unknown as ModelConfig
}
type AdminProviderBody = Static<typeof AdminProvider>

/** What a provider has besides its id, type, URL and keys. */
type ProviderSettings = Pick<ProviderConfig, 'headers' | 'timeouts' | 'options'>

/**
 * A provider's settings as its `providers.config` column holds them (its key secrets live
 * sealed in provider_keys). Header values are often credentials (`Authorization`, Azure's
 * `api-key`), so the headers are sealed too.
 */
interface StoredProvider {
  /**
   * The base URL as written, sealed under {@link baseUrlContext}, when it carries what the admin
   * API masks (a password or user name, query values): the `base_url` column then holds only its
   * masked form. Rows written before URLs were sealed hold the URL in the column: read as it is.
   */
  base_url_enc?: string
  /** The headers, names and values as one JSON object, sealed under {@link headersContext}. */
  headers_enc?: string
  /** Headers in plain text, as rows written before headers were sealed hold them: read, never written. */
  headers?: Record<string, string>
  timeouts?: ProviderConfig['timeouts']
  options?: Record<string, unknown>
}

/** The providers and models kept in the database. */
interface StoredCatalog {
  providers: ProviderConfig[]
  models: ModelConfig[]
}

/** The entry an admin change writes or deletes, and the fields of it the caller sent (the API's names). */
interface Subject {
  list: CatalogProblem['list']
  id: string
  sent: readonly string[]
}

/**
 * Providers and models: those of the config file plus those managed at run time through the
 * admin API (kept in the database, provider secrets sealed). Every change reloads the model
 * registry on every instance.
 */
export class Catalog {
  private readonly db: Kysely<Database>
  private readonly masters: MasterKeys

  constructor(
    private readonly config: ResolvedConfig,
    private readonly services: Services,
    private readonly models: ModelRegistry,
    private readonly logger: Logger,
    masters?: MasterKeys,
  ) {
    this.db = services.db.db
    this.masters = masters ?? loadMasterKeys(config)
  }

  /** Load the database part and listen for changes from other instances. */
  async start(): Promise<void> {
    await this.warnShadowed()
    await this.reload()
    await this.services.bus.subscribe(CHANNEL, () => {
      this.reload().catch((error: unknown) => this.logger.error('could not reload providers and models', { error: String(error) }))
    })
    // A change announced while this instance was not listening is never announced again.
    this.services.bus.onResync(() => {
      this.logger.info('reloading providers and models: changes may have been missed while the message bus was disconnected')
      this.reload().catch((error: unknown) => this.logger.error('could not reload providers and models', { error: String(error) }))
    })
  }

  /** Rebuild the registry from the config and the database. */
  async reload(): Promise<void> {
    const { providers, models } = await this.stored()
    const all = [...this.config.providers, ...providers]
    const { served, unserved } = servable(all, [...this.config.models, ...models])
    this.models.replace(all, served)
    this.warnUnserved(unserved)
    const live = new Map(all.map((p) => [p.id, new Set(p.keys.map((k) => k.id))]))
    this.services.upstreams.retain((provider, key) => live.get(provider)?.has(key) === true)
  }

  /** What {@link warnUnserved} said last, so that a reload with nothing new to say says nothing. */
  private unservedSaid = ''

  /** Names, once per change of the set, the stored models left out of the registry (see {@link servable}). */
  private warnUnserved(unserved: readonly Unserved[]): void {
    const said = unserved.map((u) => `${u.model}\u0000${u.provider}`).join('\u0001')
    if (said === this.unservedSaid) return
    this.unservedSaid = said
    for (const { model, provider } of unserved) {
      this.logger.warn(
        `model "${model}" (added through the admin API) is not served: it targets provider "${provider}", which neither the config file nor the admin API has (any more); give it targets that exist (PATCH /admin/models/{name}) or delete it`,
        { model, provider },
      )
    }
  }

  /**
   * Rows added through the admin API under an id the config file has since come to define too (the
   * admin API refuses such an id while the config file has it): the config file's entry is the one
   * in force, and the row is left alone, unused, until the config file drops the id.
   */
  private async warnShadowed(): Promise<void> {
    const providers = await this.db.selectFrom('providers').select('id').where('deleted_at', 'is', null).execute()
    for (const { id } of providers.filter((row) => this.isConfigProvider(row.id))) {
      this.logger.warn(`provider "${id}" added through the admin API is defined in the config file too: the config file's is used`, { provider: id })
    }
    const models = await this.db.selectFrom('models').select('name').execute()
    for (const { name } of models.filter((row) => this.isConfigModel(row.name))) {
      this.logger.warn(`model "${name}" added through the admin API is defined in the config file too: the config file's is used`, { model: name })
    }
  }

  /** The stored providers and models in force: those under an id of the config file's are not (see {@link warnShadowed}). */
  private async stored(): Promise<StoredCatalog> {
    return { providers: await this.storedProviders(), models: await this.storedModels() }
  }

  /**
   * `column` compared in byte order on both databases: the tie-break of rows created at one time
   * (a script's), which came in whatever order the database had them, on Postgres another after an
   * update (`collate "C"`, as its default collation may be linguistic; SQLite compares bytes).
   */
  private byteOrder(column: 'id' | 'name'): RawBuilder<string> {
    return byteOrder(column, this.services.db.dialect)
  }

  private async storedProviders(): Promise<ProviderConfig[]> {
    const all = await this.db.selectFrom('providers').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy(this.byteOrder('id')).execute()
    const rows = all.filter((row) => !this.isConfigProvider(row.id))
    // In the order given: a POST's or PATCH's keys share their created_at, and their position tells them apart.
    const keyRows = await this.db.selectFrom('provider_keys').selectAll().where('disabled_at', 'is', null).orderBy('created_at').orderBy('position').orderBy(this.byteOrder('id')).execute()
    return rows.map((row): ProviderConfig => {
      const keys = keyRows
        .filter((k) => k.provider_id === row.id)
        .map((k) => ({
          id: keyIdOf(row.id, k.id),
          secret: decryptSecret(this.masters.all, k.secret_enc, k.id),
          weight: k.weight,
          ...(k.rpm !== null && { rpm: k.rpm }),
          ...(k.tpm !== null && { tpm: k.tpm }),
        }))
      const stored = JSON.parse(row.config) as StoredProvider
      const baseUrl = stored.base_url_enc === undefined ? row.base_url : decryptSecret(this.masters.all, stored.base_url_enc, baseUrlContext(row.id))
      return { id: row.id, type: row.type as ProviderConfig['type'], ...(baseUrl && { baseUrl }), keys, ...this.openSettings(row.id, stored) }
    })
  }

  /** Models need no secret opened: their reads do not go through the providers'. */
  private async storedModels(): Promise<ModelConfig[]> {
    const rows = await this.db.selectFrom('models').selectAll().orderBy('created_at').orderBy(this.byteOrder('name')).execute()
    return rows.filter((m) => !this.isConfigModel(m.name)).map((m) => JSON.parse(m.config) as ModelConfig)
  }

  /** A `providers.config` column read: sealed headers opened, plain ones (older rows) taken as they are. */
  private openSettings(providerId: string, stored: StoredProvider): ProviderSettings {
    const headers = stored.headers_enc === undefined ? stored.headers : (JSON.parse(decryptSecret(this.masters.all, stored.headers_enc, headersContext(providerId))) as Record<string, string>)
    return settingsOf({ headers, timeouts: stored.timeouts, options: stored.options })
  }

  /**
   * The `base_url` and `config` columns to write: the headers sealed, never in plain text, and a
   * base URL that carries a credential sealed too, its column holding only the masked form.
   */
  private sealSettings(providerId: string, provider: ProviderConfig): { base_url: string | null; config: string } {
    const { baseUrl, headers, timeouts, options } = provider
    const shown = baseUrl ? maskBaseUrl(baseUrl) : null
    const stored: StoredProvider = {
      ...(baseUrl && shown !== baseUrl && { base_url_enc: this.sealText(baseUrlContext(providerId), baseUrl) }),
      ...(headers && Object.keys(headers).length > 0 && { headers_enc: this.sealText(headersContext(providerId), JSON.stringify(headers)) }),
      ...(timeouts && { timeouts }),
      ...(options && { options }),
    }
    return { base_url: shown, config: JSON.stringify(stored) }
  }

  /**
   * Check a would-be catalog as the config check does, then tell every instance. A change may
   * bring no new problem, and the fields it sends must have none. A problem that was there
   * before, in a field not sent, does not block it: a row written before a rule existed must
   * not stop every later change (nor a PATCH of its other fields). Problems are reported in
   * the admin API's own field names.
   */
  private async commit(change: (db: Kysely<Database>) => Promise<void>, current: StoredCatalog, candidate: StoredCatalog, subject: Subject): Promise<void> {
    const problemsOf = (c: StoredCatalog) => catalogProblems([...this.config.providers, ...c.providers], [...this.config.models, ...c.models])
    const before = new Set(problemsOf(current).map(problemKey))
    const problems = problemsOf(candidate).filter((p) => !before.has(problemKey(p)) || (isSubject(p, subject) && subject.sent.includes(apiParam(p.field.slice(0, 1)))))
    if (problems.length) throw refusal(problems, subject)
    try {
      // Building a registry from the candidate catches unsupported types before anything is written.
      const providers = [...this.config.providers, ...candidate.providers]
      new ModelRegistry(providers, servable(providers, [...this.config.models, ...candidate.models]).served)
    } catch (error) {
      throw new GatewayError('invalid_request', error instanceof Error ? error.message : String(error))
    }
    await change(this.db)
    await this.reload()
    await this.services.bus.publish(CHANNEL, String(Date.now())).catch((error: unknown) => this.logger.warn('could not announce a catalog change; the other instances reload once this instance reaches Redis again', { error: String(error) }))
  }

  /** Seal a secret bound to its row (`context` = the provider_keys row id). */
  private seal(context: string, secret: string): { secret_enc: string; key_version: string } {
    const master = this.currentMaster()
    return { secret_enc: encryptSecret(master, secret, context), key_version: master.id }
  }

  private sealText(context: string, text: string): string {
    return encryptSecret(this.currentMaster(), text, context)
  }

  private currentMaster(): MasterKey {
    const master = this.masters.current
    if (!master) {
      throw new GatewayError('invalid_request', 'Provider secrets cannot be stored: SLUICE_ENCRYPTION_KEY is not set (it is required outside dev). Set a 32-byte base64 key and restart.')
    }
    return master
  }

  private isConfigProvider = (id: string) => this.config.providers.some((p) => p.id === id)
  private isConfigModel = (name: string) => this.config.models.some((m) => m.name === name)

  /** `/admin/providers` and `/admin/models`. */
  routes() {
    const checkProvider = compileCheck(AdminProvider)
    const checkProviderPatch = compileCheck(AdminProviderPatch)
    const checkModel = compileCheck(ModelSchema)
    const checkModelPatch = compileCheck(AdminModelPatch)
    const tags = ['Admin: providers and models']
    const readOnly = (kind: string, id: string) => new GatewayError('conflict', `${kind} "${id}" is defined in the config file; change it there.`)

    const providerView = (p: ProviderConfig, source: 'config' | 'admin'): Static<typeof ProviderView> => ({
      object: 'provider',
      id: p.id,
      type: p.type,
      base_url: p.baseUrl ? maskBaseUrl(p.baseUrl) : null,
      source,
      keys: p.keys.map((k) => ({ id: k.id, weight: k.weight ?? 1, rpm: k.rpm ?? null, tpm: k.tpm ?? null, has_secret: k.secret.length > 0 })),
      // Names only: values are often credentials.
      headers: p.headers ? Object.keys(p.headers) : [],
      timeouts: p.timeouts ?? null,
      options: p.options ?? null,
    })
    const modelView = (m: ModelConfig, source: 'config' | 'admin'): Static<typeof ModelGroupView> => ({ object: 'model_group', source, ...m })

    const getModel = async (name: string) => {
      const config = this.config.models.find((m) => m.name === name)
      if (config) return modelView(config, 'config')
      const found = (await this.storedModels()).find((m) => m.name === name)
      if (!found) throw new GatewayError('not_found', `No model "${echo(name)}".`)
      return modelView(found, 'admin')
    }
    const patchModel = async (name: string, body: unknown, request: Request) => {
      if (this.isConfigModel(name)) throw readOnly('Model', name)
      const patch = checkModelPatch(body as Record<string, unknown>) as ModelPatch
      const current = await this.stored()
      const existing = current.models.find((m) => m.name === name)
      if (!existing) throw new GatewayError('not_found', `No model "${echo(name)}".`)
      const merged = patchedModel(existing, patch)
      await this.commit(
        async (db) => {
          const updated = await db.updateTable('models').set({ config: JSON.stringify(merged), updated_at: new Date().toISOString() }).where('name', '=', name).executeTakeFirst()
          if (updated.numUpdatedRows === 0n) throw new GatewayError('not_found', `No model "${echo(name)}".`)
        },
        current,
        { providers: current.providers, models: current.models.map((m) => (m.name === name ? merged : m)) },
        { list: 'models', id: name, sent: Object.keys(patch) },
      )
      await audit(this.services.db.db, { actor: adminActor(request), action: 'model.update', targetType: 'model', targetId: name, details: { fields: Object.keys(patch) } })
      return modelView(merged, 'admin')
    }
    const deleteModel = async (name: string, request: Request) => {
      if (this.isConfigModel(name)) throw readOnly('Model', name)
      const current = await this.stored()
      if (!current.models.some((m) => m.name === name)) throw new GatewayError('not_found', `No model "${echo(name)}".`)
      // As a provider used by a model: the models that fall back to this one must change first (the config file's too).
      const dependents = [...this.config.models, ...current.models].filter((m) => m.fallbacks?.includes(name)).map((m) => m.name)
      if (dependents.length) throw new GatewayError('conflict', `Model "${name}" is a fallback of model(s) ${dependents.join(', ')}; change or delete them first.`)
      await this.commit(
        async (db) => {
          const deleted = await db.deleteFrom('models').where('name', '=', name).executeTakeFirst()
          if (deleted.numDeletedRows === 0n) throw new GatewayError('not_found', `No model "${echo(name)}".`)
        },
        current,
        { providers: current.providers, models: current.models.filter((m) => m.name !== name) },
        { list: 'models', id: name, sent: [] },
      )
      await audit(this.services.db.db, { actor: adminActor(request), action: 'model.delete', targetType: 'model', targetId: name })
      return { object: 'model_group', name, deleted: true }
    }

    const guard = adminGuard(this.services.admin)
    return new Elysia({ name: 'sluice.admin.catalog', prefix: '/admin' })
      // The admin key before anything else looks at the request, the body included (see adminGuard).
      .onParse(guard.parse)
      .onTransform(guard.transform)
      .get(
        '/providers',
        async () => {
          const providers = await this.storedProviders()
          return { object: 'list', data: [...this.config.providers.map((p) => providerView(p, 'config')), ...providers.map((p) => providerView(p, 'admin'))], next_cursor: null }
        },
        { detail: { tags, summary: 'List providers (secrets are never shown)', responses: jsonResponse("The config file's providers, then those added here, oldest first, those of one time by id in byte order (one page: next_cursor is null)", ListOf(ProviderView)) } },
      )
      .get(
        '/providers/:id',
        async ({ params }) => {
          const config = this.config.providers.find((p) => p.id === params.id)
          if (config) return providerView(config, 'config')
          const found = (await this.storedProviders()).find((p) => p.id === params.id)
          if (!found) throw new GatewayError('not_found', `No provider "${echo(params.id)}".`)
          return providerView(found, 'admin')
        },
        { detail: { tags, summary: 'Get a provider', responses: { ...jsonResponse('The provider', ProviderView), ...adminErrors(404) } } },
      )
      .post(
        '/providers',
        async ({ body, set, request }) => {
          const input = checkProvider(body as Record<string, unknown>) as AdminProviderBody
          if (this.isConfigProvider(input.id)) throw readOnly('Provider', input.id)
          const current = await this.stored()
          if (current.providers.some((p) => p.id === input.id)) throw new GatewayError('conflict', `A provider with id "${input.id}" already exists.`)
          const provider = toProviderConfig(input)
          await this.commit(
            async (db) => {
              const at = new Date().toISOString()
              await db.transaction().execute(async (tx) => {
                // A provider deleted earlier under this id leaves a row behind (its secrets are already gone).
                await tx.deleteFrom('providers').where('id', '=', input.id).where('deleted_at', 'is not', null).execute()
                await tx.insertInto('providers').values({ id: input.id, type: input.type, ...this.sealSettings(input.id, provider), created_at: at, updated_at: at, deleted_at: null }).execute()
                for (const [position, k] of input.keys.entries()) {
                  await tx.insertInto('provider_keys').values({ id: rowIdOf(input.id, k.id), provider_id: input.id, ...this.seal(rowIdOf(input.id, k.id), k.secret), weight: k.weight ?? 1, position, rpm: k.rpm ?? null, tpm: k.tpm ?? null, disabled_at: null, created_at: at, updated_at: at }).execute()
                }
              })
            },
            current,
            { providers: [...current.providers, provider], models: current.models },
            { list: 'providers', id: input.id, sent: Object.keys(input) },
          ).catch(conflictOn(`A provider with id "${input.id}" already exists.`))
          // The URL is not recorded: it may carry a credential.
          await audit(this.services.db.db, { actor: adminActor(request), action: 'provider.create', targetType: 'provider', targetId: input.id, details: { type: input.type, keys: input.keys.map((k) => k.id) } })
          set.status = 201
          return providerView(provider, 'admin')
        },
        {
          parse: 'json',
          detail: {
            tags,
            summary: 'Add a provider; its key secrets and header values are stored encrypted',
            requestBody: jsonBody(AdminProvider),
            responses: { ...jsonResponse('The new provider', ProviderView, 201), ...adminErrors(400, 409) },
          },
        },
      )
      .patch(
        '/providers/:id',
        async ({ params, body, request }) => {
          if (this.isConfigProvider(params.id)) throw readOnly('Provider', params.id)
          const patch = checkProviderPatch(body as Record<string, unknown>) as ProviderPatch
          const current = await this.stored()
          const existing = current.providers.find((p) => p.id === params.id)
          if (!existing) throw new GatewayError('not_found', `No provider "${echo(params.id)}".`)
          const merged = toProviderConfig(patchedProvider(fromProviderConfig(existing), patch))
          await this.commit(
            async (db) => {
              const at = new Date().toISOString()
              await db.transaction().execute(async (tx) => {
                // Only while not deleted: a DELETE that won the race erased its settings and keys, and they stay erased.
                const updated = await tx.updateTable('providers').set({ type: merged.type, ...this.sealSettings(params.id, merged), updated_at: at }).where('id', '=', params.id).where('deleted_at', 'is', null).executeTakeFirst()
                if (updated.numUpdatedRows === 0n) throw new GatewayError('not_found', `No provider "${echo(params.id)}".`)
                if (patch.keys) {
                  await tx.deleteFrom('provider_keys').where('provider_id', '=', params.id).execute()
                  for (const [position, k] of patch.keys.entries()) {
                    await tx.insertInto('provider_keys').values({ id: rowIdOf(params.id, k.id), provider_id: params.id, ...this.seal(rowIdOf(params.id, k.id), k.secret), weight: k.weight ?? 1, position, rpm: k.rpm ?? null, tpm: k.tpm ?? null, disabled_at: null, created_at: at, updated_at: at }).execute()
                  }
                }
              })
            },
            current,
            { providers: current.providers.map((p) => (p.id === params.id ? merged : p)), models: current.models },
            { list: 'providers', id: params.id, sent: Object.keys(patch) },
          )
          // Field names and key ids only: never a secret.
          await audit(this.services.db.db, { actor: adminActor(request), action: 'provider.update', targetType: 'provider', targetId: params.id, details: { fields: Object.keys(patch), ...(patch.keys ? { keys: patch.keys.map((k) => k.id) } : {}) } })
          return providerView(merged, 'admin')
        },
        {
          parse: 'json',
          detail: {
            tags,
            summary: 'Change a provider; `keys`, when given, replaces all its keys, `headers` all its headers',
            requestBody: jsonBody(AdminProviderPatch),
            responses: { ...jsonResponse('The provider as changed', ProviderView), ...adminErrors(400, 404, 409) },
          },
        },
      )
      .delete(
        '/providers/:id',
        async ({ params, request }) => {
          if (this.isConfigProvider(params.id)) throw readOnly('Provider', params.id)
          const current = await this.stored()
          if (!current.providers.some((p) => p.id === params.id)) throw new GatewayError('not_found', `No provider "${echo(params.id)}".`)
          const users = [...this.config.models, ...current.models].filter((m) => m.targets.some((t) => t.provider === params.id)).map((m) => m.name)
          if (users.length) throw new GatewayError('conflict', `Provider "${params.id}" is used by model(s) ${users.join(', ')}; change or delete them first.`)
          await this.commit(
            async (db) => {
              const at = new Date().toISOString()
              // The row stays (soft delete) without its settings: its sealed headers go with its key secrets.
              // Only while not deleted: of two DELETEs at once, the second finds it gone (404, as after the first).
              const deleted = await db.updateTable('providers').set({ config: '{}', deleted_at: at, updated_at: at }).where('id', '=', params.id).where('deleted_at', 'is', null).executeTakeFirst()
              if (deleted.numUpdatedRows === 0n) throw new GatewayError('not_found', `No provider "${echo(params.id)}".`)
              await db.deleteFrom('provider_keys').where('provider_id', '=', params.id).execute()
            },
            current,
            { providers: current.providers.filter((p) => p.id !== params.id), models: current.models },
            { list: 'providers', id: params.id, sent: [] },
          )
          await audit(this.services.db.db, { actor: adminActor(request), action: 'provider.delete', targetType: 'provider', targetId: params.id })
          return { object: 'provider', id: params.id, deleted: true }
        },
        {
          detail: {
            tags,
            summary: 'Delete a provider (its sealed secrets, keys and header values, are erased)',
            responses: { ...jsonResponse('The provider deleted', ProviderDeleted), ...adminErrors(404, 409) },
          },
        },
      )
      .get(
        '/models',
        async () => {
          const models = await this.storedModels()
          return { object: 'list', data: [...this.config.models.map((m) => modelView(m, 'config')), ...models.map((m) => modelView(m, 'admin'))], next_cursor: null }
        },
        { detail: { tags, summary: 'List model groups', responses: jsonResponse("The config file's model groups, then those added here, oldest first, those of one time by name in byte order (one page: next_cursor is null)", ListOf(ModelGroupView)) } },
      )
      .get('/models/:name', ({ params }) => getModel(params.name), {
        detail: { tags, summary: 'Get a model group (a name holding a slash may be sent as it is or as %2F)', responses: { ...jsonResponse('The model group', ModelGroupView), ...adminErrors(404) } },
      })
      .get('/models/:name/*', ({ request }) => getModel(decodePercent(modelPathId(request))), { detail: { hide: true } })
      .post(
        '/models',
        async ({ body, set, request }) => {
          const model = checkModel(body as Record<string, unknown>) as ModelConfig
          if (this.isConfigModel(model.name)) throw readOnly('Model', model.name)
          const current = await this.stored()
          if (current.models.some((m) => m.name === model.name)) throw new GatewayError('conflict', `A model named "${model.name}" already exists.`)
          await this.commit(
            async (db) => {
              const at = new Date().toISOString()
              await db.insertInto('models').values({ name: model.name, config: JSON.stringify(model), created_at: at, updated_at: at }).execute()
            },
            current,
            { providers: current.providers, models: [...current.models, model] },
            { list: 'models', id: model.name, sent: Object.keys(model) },
          ).catch(conflictOn(`A model named "${model.name}" already exists.`))
          await audit(this.services.db.db, { actor: adminActor(request), action: 'model.create', targetType: 'model', targetId: model.name, details: { targets: model.targets.map((t) => `${t.provider}/${t.model}`) } })
          set.status = 201
          return modelView(model, 'admin')
        },
        {
          parse: 'json',
          detail: { tags, summary: 'Add a model group', requestBody: jsonBody(ModelSchema), responses: { ...jsonResponse('The new model group', ModelGroupView, 201), ...adminErrors(400, 409) } },
        },
      )
      .patch('/models/:name', ({ params, body, request }) => patchModel(params.name, body, request), {
        parse: 'json',
        detail: { tags, summary: 'Change a model group', requestBody: jsonBody(AdminModelPatch), responses: { ...jsonResponse('The model group as changed', ModelGroupView), ...adminErrors(400, 404, 409) } },
      })
      .patch('/models/:name/*', ({ body, request }) => patchModel(decodePercent(modelPathId(request)), body, request), { parse: 'json', detail: { hide: true } })
      .delete('/models/:name', ({ params, request }) => deleteModel(params.name, request), {
        detail: { tags, summary: 'Delete a model group', responses: { ...jsonResponse('The model group deleted', ModelDeleted), ...adminErrors(404, 409) } },
      })
      .delete('/models/:name/*', ({ request }) => deleteModel(decodePercent(modelPathId(request)), request), { detail: { hide: true } })
  }
}

/** A stored model the registry leaves out, and the first provider it names that is not there. */
interface Unserved {
  model: string
  provider: string
}

/**
 * The models the registry can serve: one naming a provider that is not there is left out. Only a
 * stored model can be such (the config file's are checked at boot, and the admin API refuses the
 * change that would make one), after the config file dropped a provider it targets: one model
 * must not stop the boot, and the admin API, which still lists it, is where it is mended.
 */
function servable(providers: readonly ProviderConfig[], models: readonly ModelConfig[]): { served: ModelConfig[]; unserved: Unserved[] } {
  const ids = new Set(providers.map((p) => p.id))
  const served: ModelConfig[] = []
  const unserved: Unserved[] = []
  for (const model of models) {
    const missing = model.targets.find((t) => !ids.has(t.provider))
    if (missing) unserved.push({ model: model.name, provider: missing.provider })
    else served.push(model)
  }
  return { served, unserved }
}

/** Key ids are per provider; rows are unique across providers, so the row id carries both. */
const rowIdOf = (provider: string, key: string) => `${provider}/${key}`
const keyIdOf = (provider: string, rowId: string) => (rowId.startsWith(`${provider}/`) ? rowId.slice(provider.length + 1) : rowId)

/**
 * What a provider's sealed headers are bound to. `#` is in no provider or key id, so this is no
 * provider_keys row id: an envelope copied between the two does not open.
 */
const headersContext = (provider: string) => `${provider}#headers`
/** What a provider's sealed base URL is bound to (see {@link headersContext}). */
const baseUrlContext = (provider: string) => `${provider}#base_url`

/**
 * A `providers` row's sealed headers and base URL re-sealed under `to` (their own ciphertext kept,
 * as for key secrets), and those an older version stored in plain text (headers in `config`, a
 * base URL with a credential in `base_url`) sealed under `to` as an admin write now stores them;
 * null when there is nothing to move. For `rotate-encryption-key`, which must move them with the key
 * secrets or the old master key could not be dropped, and leave no secret in plain text behind.
 * `moved` counts the secrets moved or sealed.
 */
export function resealProvider(
  row: { id: string; base_url: string | null; config: string },
  from: readonly MasterKey[],
  to: MasterKey,
): { base_url: string | null; config: string; moved: number } | null {
  const { headers, ...stored } = JSON.parse(row.config) as StoredProvider
  const moves = (sealed: string | undefined): sealed is string => sealed !== undefined && envelopeKeyId(sealed) !== to.id
  const plainHeaders = stored.headers_enc === undefined && headers !== undefined && Object.keys(headers).length > 0 ? headers : undefined
  const plainUrl = stored.base_url_enc === undefined && row.base_url !== null && maskBaseUrl(row.base_url) !== row.base_url ? row.base_url : undefined
  const headersEnc = moves(stored.headers_enc)
    ? rewrapSecret(from, to, stored.headers_enc, headersContext(row.id))
    : plainHeaders && encryptSecret(to, JSON.stringify(plainHeaders), headersContext(row.id))
  const baseUrlEnc = moves(stored.base_url_enc)
    ? rewrapSecret(from, to, stored.base_url_enc, baseUrlContext(row.id))
    : plainUrl && encryptSecret(to, plainUrl, baseUrlContext(row.id))
  const moved = (headersEnc === undefined ? 0 : 1) + (baseUrlEnc === undefined ? 0 : 1)
  if (moved === 0) return null
  const config: StoredProvider = {
    ...stored,
    // Plain headers beside sealed ones (never written so) are dropped with them: the sealed ones are read.
    ...(headers !== undefined && stored.headers_enc === undefined && plainHeaders === undefined && { headers }),
    ...(headersEnc !== undefined && { headers_enc: headersEnc }),
    ...(baseUrlEnc !== undefined && { base_url_enc: baseUrlEnc }),
  }
  return { base_url: plainUrl === undefined ? row.base_url : maskBaseUrl(plainUrl), config: JSON.stringify(config), moved }
}

const MASK = '***'

/**
 * A base URL as the admin API shows it: the password of its user info and every query value
 * masked (Azure's classic API, among others, takes a key in the query; which parameter holds a
 * secret is the vendor's business), the rest as written. A user name standing alone is masked
 * too: `https://<token>@host` carries a token there. A fragment is never sent, so never needed.
 */
export function maskBaseUrl(url: string): string {
  const parsed = URL.parse(url)
  // Every stored URL was parsed when written; one that does not parse is not shown rather than risked.
  if (!parsed) return MASK
  if (!parsed.username && !parsed.password && !parsed.search && !parsed.hash) return url
  if (parsed.password) parsed.password = MASK
  else if (parsed.username) parsed.username = MASK
  if (parsed.search) {
    parsed.search = parsed.search
      .slice(1)
      .split('&')
      .map((part) => {
        const eq = part.indexOf('=')
        // A part without `=` may be a bare token: masked whole.
        return eq >= 0 ? `${part.slice(0, eq)}=${MASK}` : part === '' ? part : MASK
      })
      .join('&')
  }
  if (parsed.hash) parsed.hash = MASK
  return parsed.href
}

const jsonBody = (schema: object) => ({ required: true, content: { 'application/json': { schema } } })

function toProviderConfig(input: AdminProviderBody): ProviderConfig {
  return {
    id: input.id,
    type: input.type,
    ...(input.base_url && { baseUrl: input.base_url }),
    keys: input.keys.map((k) => ({ ...k })),
    ...settingsOf(input),
  }
}

function fromProviderConfig(p: ProviderConfig): AdminProviderBody {
  return { id: p.id, type: p.type, ...(p.baseUrl && { base_url: p.baseUrl }), keys: p.keys.map((k) => ({ ...k })), ...settingsOf(p) }
}

/** The settings that are set, and only those (a JSON row or a view has no `undefined`). */
function settingsOf(p: ProviderSettings): ProviderSettings {
  return { ...(p.headers && { headers: p.headers }), ...(p.timeouts && { timeouts: p.timeouts }), ...(p.options && { options: p.options }) }
}

/** A problem's identity apart from its position, which moves as entries are added or removed. */
const problemKey = (p: CatalogProblem) => JSON.stringify([p.list, p.entry, p.field, p.message])
const isSubject = (p: CatalogProblem, subject: Subject) => p.list === subject.list && p.entry === subject.id

/** Config fields the admin API spells otherwise (its JSON fields are snake_case). */
const API_NAMES: ReadonlyMap<string, string> = new Map([['baseUrl', 'base_url']])

/** A field of an entry as the admin API names it: `['keys', 1, 'id']` → `keys[1].id`, `['baseUrl']` → `base_url`. */
function apiParam(field: CatalogProblem['field']): string {
  const [first, ...rest] = field.map(String)
  return pointerToParam(['', API_NAMES.get(first ?? '') ?? first, ...rest].join('/'))
}

/**
 * The 400 for a refused change, in the API's terms: its field names and the caller's own
 * indexes, never the config file's path (whose list index means nothing to the caller).
 * `param` names the first field of the entry sent.
 */
function refusal(problems: readonly CatalogProblem[], subject: Subject): GatewayError {
  const own = problems.find((p) => isSubject(p, subject))
  const sentences = problems.map((p) => {
    const where = isSubject(p, subject) ? `"${apiParam(p.field)}"` : `"${apiParam(p.field)}" of ${p.list === 'providers' ? 'provider' : 'model'} "${p.entry}"`
    return `Invalid value for ${where}: ${p.message}.`
  })
  return new GatewayError('invalid_request', sentences.join(' '), { param: own ? apiParam(own.field) : null })
}

const conflictOn = (message: string) => (error: unknown) => {
  if (isUniqueViolation(error)) throw new GatewayError('conflict', message)
  throw error
}
