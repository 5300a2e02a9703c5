import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { KindGuard, type TLiteralValue, type TSchema } from '@sinclair/typebox'
import { Value, ValueErrorType, ValuePointer, type ValueError } from '@sinclair/typebox/value'
import { ConfigFileSchema, ENV_SLUG, PluginUseEntrySchema, type ConfigFile, type ModelConfig, type ProviderConfig } from './schema.ts'
import { echo } from '../lib/key-text.ts'
import { isLogLevel, type LogLevel } from '../lib/logger.ts'
import { originProblem, type CorsSettings } from '../lib/cors.ts'
import { TOKEN, trimHttpWhitespace } from '../lib/http-token.ts'
import { ENCODINGS, isEncoding } from '../../plugins/tokens/encodings.ts'
import { DEFAULT_DATABASE_URL, parseDatabaseUrl } from '../db/index.ts'

/** Where each provider type's official SDK points by default. */
export const DEFAULT_BASE_URLS: Partial<Record<ProviderConfig['type'], string>> = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com',
  gemini: 'https://generativelanguage.googleapis.com',
}

/** Served when the config names no providers: the built-in deterministic mock. */
export const MOCK_PROVIDER: ProviderConfig = { id: 'mock', type: 'mock', keys: [{ id: 'mock', secret: '' }] }
export const MOCK_MODEL: ModelConfig = { name: 'mock-gpt', targets: [{ provider: 'mock', model: 'mock-gpt' }] }

export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
/**
 * How long a plugin's hook before the upstream call may take to settle: far above what the built-in
 * plugins' own bounds let theirs take (a key lookup's 5 s, quota's `redis_timeout_ms` of 1 s).
 */
export const DEFAULT_HOOK_TIMEOUT_MS = 30_000
/** The shortest admin key taken from SLUICE_ADMIN_KEY. */
export const MIN_ADMIN_KEY_LENGTH = 24

/** The configuration after files, environment variables and defaults are merged and checked. */
export interface ResolvedConfig {
  environment: string
  port: number
  host: string
  databaseUrl: string
  redisUrl: string | null
  adminKey: string | null
  encryptionKey: string | null
  tls: { cert: string; key: string } | null
  logLevel: LogLevel
  maxBodyBytes: number
  /** How long a client API request's body may take to arrive (0: no limit). */
  bodyTimeoutMs: number
  /** How long a plugin's authenticate, admit or route hook may take to settle (0: no limit). */
  hookTimeoutMs: number
  /** Seconds a client connection may stay silent both ways before it is closed (Bun's idleTimeout). */
  idleTimeoutS: number
  shutdownGraceMs: number
  /** Wrong admin keys a client address may send in a row, and gets back a minute. */
  adminAttemptsPerMinute: number
  /** Reverse proxies that append to X-Forwarded-For in front of the gateway (0: none); the admin key limit counts the address the outermost saw. */
  trustedProxies: number
  /** SLUICE_REUSE_PORT=1: listen with Bun's reusePort, sharing the port with other gateway processes. */
  reusePort: boolean
  /** The admin console at /console. */
  console: { enabled: boolean; sessionTtlMs: number }
  /** Browser pages of other origins allowed to call `/v1/*`; null: none (no CORS headers). */
  cors: CorsSettings | null
  providers: ProviderConfig[]
  models: ModelConfig[]
  /** Plugin entries as written: names, `{use, options}`, or plugin objects from a TS config; null: all built-ins. */
  plugins: unknown[] | null
  /** The config file read, if any. */
  configPath: string | null
  /** Relative plugin paths resolve from here (the config file's folder, else the working dir). */
  baseDir: string
  /**
   * The paths (JSON pointers from the file's root) of the strings that were one `${NAME}` and
   * nothing else, with the variable's name: a plugin's number option written so takes the value as
   * a number (see fillNumberReferences). Absent for a config that did not come through loadConfig.
   */
  wholeReferences?: ReadonlyMap<string, string>
}

/** A config that cannot boot: every problem, each with its path. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  - ${p}`).join('\n'))
    this.name = 'ConfigError'
  }
}

/** Identity helper that types a TS config file. */
export const defineConfig = (config: ConfigFile & { plugins?: unknown[] }): ConfigFile => config

export interface LoadOptions {
  env?: Record<string, string | undefined>
  cwd?: string
  /** A config object to use instead of reading a file (tests, embedding). */
  config?: ConfigFile
  /**
   * Turns the plugin entries into plugins, throwing `ConfigError` for each one that is unknown,
   * cannot be loaded or is given bad options (the gateway passes src/plugin-loader.ts's
   * `resolvePlugins` with the built-ins): those problems are then reported with the others,
   * before a database is opened or a key file written. What it returns becomes `plugins`.
   * Unset: the entries are only checked for their shape, and `createGateway` resolves them.
   */
  resolvePlugins?: (source: PluginSource) => Promise<unknown[]>
}

/** What resolving the plugins needs of the config: the entries, and where relative paths start. */
export type PluginSource = Pick<ResolvedConfig, 'plugins' | 'baseDir' | 'wholeReferences'>

/** Read, interpolate, validate and merge the config. Throws `ConfigError` listing every problem. */
export async function loadConfig(options: LoadOptions = {}): Promise<ResolvedConfig> {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  const problems: string[] = []

  const { raw, configPath } = await readRawConfig(options, env, cwd, problems)
  if (problems.length) throw new ConfigError(problems)

  // Every check runs, so one boot reports every problem the file has. A `${VAR}` that is not set
  // (or a `${…}` that is no reference) is one problem, at its path: the empty string standing in
  // for it is not reported again (as too short, or as a URL that names nothing), and does not stop
  // the checks of other fields.
  const unset: UnresolvedReference[] = []
  const whole = new Map<string, string>()
  const interpolated = interpolate(raw, '', env, unset, whole) as ConfigFile
  fillNumberReferences(ConfigFileSchema, interpolated, '', whole, (path, name) => {
    // An unset variable is already a problem at this path.
    if (!unset.some((u) => u.path === path)) unset.push({ path, problem: notANumber(name) })
  })
  const unsetProblems = unset.map(({ path, problem }) => `${path || '/'}: ${problem}`)
  // Top-level sections the checks below cannot read, for a schema error in them; in the catalog's
  // lists, the entries (a section is then unreadable only when it is not a list).
  const unreadable = new Set<string>()
  const badEntries: CatalogEntries = { providers: new Set(), models: new Set() }
  // One problem per path: TypeBox may give two for one value (a missing number is also "Expected number").
  const errorPaths = new Set<string>()
  for (const error of Value.Errors(ConfigFileSchema, interpolated)) {
    const standIn = unset.some((u) => u.path === error.path)
    if (!standIn && !errorPaths.has(error.path)) problems.push(schemaProblem(error, raw))
    errorPaths.add(error.path)
    if (standIn && keepsItsKind(error)) continue
    const [, section = '', index] = error.path.split('/')
    if ((section === 'providers' || section === 'models') && index !== undefined && /^\d+$/.test(index)) badEntries[section].add(Number(index))
    else unreadable.add(section)
  }
  // Not an object at all: there is nothing more to read.
  if (unreadable.has('')) throw new ConfigError([...unsetProblems, ...problems])
  const file = Object.fromEntries(Object.entries(interpolated).filter(([section]) => !unreadable.has(section))) as ConfigFile

  const providers = file.providers ?? [MOCK_PROVIDER]
  const models = file.models ?? (file.providers ? [] : [MOCK_MODEL])
  // Every entry is checked now, those the schema refused for what can be read of them, so no problem
  // waits for the next boot; the catalog is checked whole or not at all when a list cannot be read.
  if (!unreadable.has('providers') && !unreadable.has('models')) checkCatalogEntries(providers, models, badEntries, errorPaths, problems)

  const environment = env.SLUICE_ENV ?? file.environment ?? 'dev'
  // The file's `environment` had its own check, by the schema.
  if (env.SLUICE_ENV !== undefined && !ENV_SLUG.test(environment)) problems.push(`SLUICE_ENV: "${environment}" is not an environment slug ([a-z0-9]{1,16})`)

  const port = parsePort(env.PORT, file.server?.port ?? 8080, problems)
  // Blank is unset, as for PORT and HOST (an env file's `LOG_LEVEL=`); `INFO` is info.
  const logLevel = env.LOG_LEVEL?.trim().toLowerCase() || 'info'
  if (!isLogLevel(logLevel)) problems.push(`LOG_LEVEL: "${echo(env.LOG_LEVEL?.trim() ?? '')}" is not one of debug, info, warn, error, silent`)
  // From a secret file, the value often ends with a newline no client sends: white space around it is dropped.
  const adminKey = env.SLUICE_ADMIN_KEY ? env.SLUICE_ADMIN_KEY.trim() : null
  if (adminKey === '') problems.push('SLUICE_ADMIN_KEY: holds only white space; set the key itself, or leave it unset to have one generated')
  // The admin key opens everything, and guesses at it are slowed per address only: a short one is refused.
  else if (adminKey !== null && adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    problems.push(`SLUICE_ADMIN_KEY: ${adminKey.length} characters is too short to guard the admin API; use at least ${MIN_ADMIN_KEY_LENGTH} random ones (openssl rand -hex 24), or leave it unset to have one generated`)
  } else if (adminKey !== null && /\s/.test(adminKey)) {
    problems.push('SLUICE_ADMIN_KEY: holds white space, which a bearer token cannot carry (Authorization: Bearer <key>); use letters, digits and -._~+/ only (openssl rand -hex 24)')
  }

  // One way to say it: "true" taken for unset would end in a port reported in use, naming nothing of this.
  const reuse = env.SLUICE_REUSE_PORT?.trim() ?? ''
  if (reuse !== '' && reuse !== '0' && reuse !== '1') {
    problems.push(`SLUICE_REUSE_PORT: "${echo(reuse)}" is neither 1 (share the port with other gateway processes) nor 0 (do not)`)
  }

  const tlsCert = env.SLUICE_TLS_CERT
  const tlsKey = env.SLUICE_TLS_KEY
  if (Boolean(tlsCert) !== Boolean(tlsKey)) problems.push('SLUICE_TLS_CERT and SLUICE_TLS_KEY: set both or neither')
  // Read when the server starts listening, after the database is opened: checked here, so a wrong path stops the boot first.
  const tls = { cert: tlsCert ? resolve(cwd, tlsCert) : null, key: tlsKey ? resolve(cwd, tlsKey) : null }
  let tlsReadable = true
  for (const [name, path] of [['SLUICE_TLS_CERT', tls.cert], ['SLUICE_TLS_KEY', tls.key]] as const) {
    const problem = path === null ? null : unreadableFile(path)
    if (problem) problems.push(`${name}: ${problem}`)
    tlsReadable &&= problem === null
  }
  if (tls.cert && tls.key && tlsReadable) problems.push(...tlsPairProblems(tls.cert, tls.key))

  const encryptionKey = env.SLUICE_ENCRYPTION_KEY || null
  // The previous keys are read by the catalog once the database is open: checked here, so a mistyped old key stops the boot first, named.
  problems.push(...encryptionKeyProblems(encryptionKey, env.SLUICE_ENCRYPTION_KEY_PREVIOUS))

  // DESIGN.md: generated into the data dir in dev only, required elsewhere. Secrets at rest (the
  // catalog's provider keys) and console sessions shared by the instances are sealed with it.
  if (!encryptionKey && environment !== 'dev' && ENV_SLUG.test(environment)) {
    problems.push(`SLUICE_ENCRYPTION_KEY: required outside dev (this gateway serves "${environment}"); set a 32-byte base64 key (openssl rand -base64 32), the same on every instance`)
  }

  const databaseUrl = databaseUrlOf(env, file)
  const databaseProblem = databaseUrlProblem(databaseUrl)
  if (databaseProblem) problems.push(`${env.DATABASE_URL !== undefined ? 'DATABASE_URL' : '/database/url'}: ${databaseProblem}`)
  const redisUrl = env.REDIS_URL || file.redis?.url || null
  const redisProblem = redisUrl === null ? null : redisUrlProblem(redisUrl)
  if (redisProblem) problems.push(`${env.REDIS_URL ? 'REDIS_URL' : '/redis/url'}: ${redisProblem}`)

  const baseDir = configPath ? dirname(configPath) : cwd
  let plugins = file.plugins ?? null
  if (options.resolvePlugins) {
    try {
      plugins = await options.resolvePlugins({ plugins, baseDir, wholeReferences: whole })
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      problems.push(...error.problems)
    }
  } else {
    plugins?.forEach((entry, i) => checkPluginEntry(entry, `/plugins/${i}`, problems))
  }

  const cors = file.server?.cors
  cors?.origins.forEach((origin, i) => {
    const problem = originProblem(origin, cors.origins)
    if (problem) problems.push(`/server/cors/origins/${i}: ${problem}`)
  })

  const reported = [...unsetProblems, ...problems.filter((problem) => !followsFromUnset(problem, unset))]
  if (reported.length) throw new ConfigError(reported)

  return {
    environment,
    port,
    // Blank (an env file's `HOST=`) is unset, as for PORT: Bun would take "" for localhost.
    host: env.HOST?.trim() || file.server?.host || '0.0.0.0',
    databaseUrl,
    redisUrl,
    adminKey: adminKey || null,
    encryptionKey,
    tls: tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : null,
    logLevel: logLevel as LogLevel,
    maxBodyBytes: file.limits?.max_body_bytes ?? DEFAULT_MAX_BODY_BYTES,
    bodyTimeoutMs: file.limits?.body_timeout_ms ?? 30_000,
    hookTimeoutMs: file.limits?.hook_timeout_ms ?? DEFAULT_HOOK_TIMEOUT_MS,
    idleTimeoutS: file.limits?.idle_timeout_s ?? 75,
    shutdownGraceMs: file.server?.shutdown_grace_ms ?? 10_000,
    adminAttemptsPerMinute: file.server?.admin_attempts_per_minute ?? 10,
    trustedProxies: file.server?.trusted_proxies ?? 0,
    reusePort: reuse === '1',
    console: { enabled: file.console?.enabled ?? true, sessionTtlMs: file.console?.session_ttl_ms ?? 8 * 60 * 60 * 1000 },
    cors: cors ? { origins: cors.origins, maxAgeS: cors.max_age_s ?? 600 } : null,
    providers,
    models,
    plugins,
    configPath,
    baseDir,
    wholeReferences: whole,
  }
}

/**
 * The database URL the gateway would use, for the commands that work on its database
 * (`bun run migrate`, `bun run rotate-encryption-key`): `DATABASE_URL`, else the config file's
 * `database.url` (the file found as {@link loadConfig} finds it, `SLUICE_CONFIG` included),
 * else the default. Only the `database` section is interpolated and checked, so a config whose
 * provider secrets are not in this environment still names its database. Throws `ConfigError`.
 */
export async function loadDatabaseUrl(options: LoadOptions = {}): Promise<string> {
  const env = options.env ?? process.env
  // The variable wins whatever the file says, so the file need not even be read.
  if (env.DATABASE_URL !== undefined) return usableDatabaseUrl(env.DATABASE_URL, 'DATABASE_URL')
  const problems: string[] = []
  const { raw } = await readRawConfig(options, env, options.cwd ?? process.cwd(), problems)
  if (problems.length) throw new ConfigError(problems)
  const database = isPlainObject(raw) ? raw.database : undefined
  const unset: UnresolvedReference[] = []
  const file = (database === undefined ? {} : { database: interpolate(database, '/database', env, unset) }) as ConfigFile
  for (const { path, problem } of unset) problems.push(`${path}: ${problem}`)
  const errorPaths = new Set<string>()
  for (const error of Value.Errors(ConfigFileSchema, file)) {
    if (!errorPaths.has(error.path)) problems.push(schemaProblem(error, raw))
    errorPaths.add(error.path)
  }
  if (problems.length) throw new ConfigError(problems)
  return usableDatabaseUrl(databaseUrlOf(env, file), '/database/url')
}

/** The URL when the gateway could open it; a `ConfigError` naming `source` (the gateway's exit 2 for it) otherwise. */
function usableDatabaseUrl(url: string, source: string): string {
  const problem = databaseUrlProblem(url)
  if (problem) throw new ConfigError([`${source}: ${problem}`])
  return url
}

/** One precedence for the gateway and its commands: the variable (even empty: then it is refused, not ignored), the file, the default. */
function databaseUrlOf(env: Record<string, string | undefined>, file: ConfigFile): string {
  return env.DATABASE_URL ?? file.database?.url ?? DEFAULT_DATABASE_URL
}

/** Why the gateway could not open this database URL (the message names the forms it takes), or null. */
function databaseUrlProblem(url: string): string | null {
  try {
    parseDatabaseUrl(url)
    return null
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

/** The URL forms src/redis.ts connects with; a sentinel URL names its master after the hosts. */
const REDIS_SCHEMES = ['redis://', 'rediss://', 'redis+cluster://', 'redis+sentinel://'] as const
const SENTINEL_WITH_MASTER = /^redis\+sentinel:\/\/(?:[^@]*@)?[^/?]*\/[^/?]/

/** Why src/redis.ts would refuse this Redis URL, or null. The URL is not repeated: it may hold a password. */
function redisUrlProblem(url: string): string | null {
  const forms = 'redis://HOST:PORT, rediss://HOST:PORT, redis+cluster://H1:P1,H2:P2 or redis+sentinel://H1:P1,H2:P2/MASTER'
  if (!REDIS_SCHEMES.some((scheme) => url.startsWith(scheme))) {
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0]
    return `${scheme ? `the scheme "${scheme}" is not Redis's` : 'not a Redis URL'}; expected ${forms}`
  }
  if (url.startsWith('redis+sentinel://') && !SENTINEL_WITH_MASTER.test(url)) return 'names no master: a sentinel URL names it after the hosts (redis+sentinel://H1:P1,H2:P2/MASTER)'
  return redisDatabaseProblem(url)
}

/** A database index: digits (`redis://h/1x` would select "1x", which Redis refuses on every connect). */
const DB_INDEX = /^\d{1,9}$/

/**
 * Why the database a Redis URL selects is not one: the path of `redis://HOST:PORT/N` and a
 * `?db=N` (which a path wins over) must be whole numbers, 0 or more. Whether the server has that
 * many databases only the server knows: /ready says so.
 */
function redisDatabaseProblem(url: string): string | null {
  const sentinel = url.startsWith('redis+sentinel://')
  if (!sentinel && !url.startsWith('redis://') && !url.startsWith('rediss://')) return null
  let parsed: URL
  try {
    // A sentinel URL's host list is not a URL host; only its query matters here.
    parsed = new URL(sentinel ? `redis://h${url.slice(url.search(/[?]|$/))}` : url)
  } catch {
    return 'not a valid URL; expected redis://HOST:PORT or redis://HOST:PORT/DB'
  }
  const why = (db: string, where: string) => `${where} ${JSON.stringify(echo(db))} is not a database number (a whole number, 0 or more, as in redis://HOST:PORT/1)`
  if (!sentinel && parsed.pathname.length > 1 && !DB_INDEX.test(parsed.pathname.slice(1))) return why(parsed.pathname.slice(1), 'the path')
  const db = parsed.searchParams.get('db')
  if (db !== null && (sentinel || parsed.pathname.length <= 1) && !DB_INDEX.test(db)) return why(db, 'the db parameter')
  return null
}

/** The config as written (not yet interpolated): the one given, the file found, or `{}`. */
async function readRawConfig(
  options: LoadOptions,
  env: Record<string, string | undefined>,
  cwd: string,
  problems: string[],
): Promise<{ raw: unknown; configPath: string | null }> {
  if (options.config) return { raw: options.config, configPath: null }
  const configPath = findConfigFile(env, cwd, problems)
  return { raw: configPath ? await readConfigFile(configPath, problems) : {}, configPath }
}

function findConfigFile(env: Record<string, string | undefined>, cwd: string, problems: string[]): string | null {
  if (env.SLUICE_CONFIG) {
    const path = resolve(cwd, env.SLUICE_CONFIG)
    if (existsSync(path)) return path
    // One message for one problem: a missing file is not also reported as unreadable.
    problems.push(`SLUICE_CONFIG: no file at ${path}`)
    return null
  }
  for (const name of ['sluice.config.ts', 'sluice.config.json']) {
    const path = resolve(cwd, name)
    if (existsSync(path)) return path
  }
  return null
}

async function readConfigFile(path: string, problems: string[]): Promise<unknown> {
  try {
    if (path.endsWith('.json')) {
      const text = await Bun.file(path).text()
      try {
        return JSON.parse(text)
      } catch (e) {
        problems.push(`${path}: not valid JSON (${(e as Error).message})`)
        return {}
      }
    }
    const mod: Record<string, unknown> = await import(path)
    const config = mod.default ?? mod.config
    if (typeof config !== 'object' || config === null) {
      problems.push(`${path}: must export the config as default (export default defineConfig({...}))`)
      return {}
    }
    return config
  } catch (e) {
    problems.push(`${path}: cannot be loaded: ${(e as Error).message}`)
    return {}
  }
}

/**
 * `${…}`, and `$${…}` (as in Compose and Terraform: the text itself, one `$` less). Inside the
 * braces, {@link REFERENCE} is a variable; anything else is written as no reference a shell would
 * take either (`${A-b}`, `${ A }`, `${a.b}`), and is refused rather than sent on as it stands.
 */
const VAR = /\$(\$?)\{([^}]*)\}/g
/** `NAME`, or `NAME:-default` (as in a shell: the default when NAME is unset or empty). */
const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([^]*))?$/

/** A `${…}` that gives no value, and the JSON pointer of the string holding it. */
interface UnresolvedReference {
  path: string
  /** Why, naming the variable (or the text) but never a variable's value. */
  problem: string
}

/**
 * Replace `${NAME}` and `${NAME:-default}` in every string (`$${…}` is the literal `${…}`); plain
 * objects and arrays are walked, other values kept as they are. A variable that is not set, and a
 * `${…}` that is no reference (say `${OPENAI-KEY}`, which would otherwise reach the upstream as the
 * key), become the empty string and are added to `unset`. The paths of strings that are one reference
 * and nothing else go in `whole`, with the variable's name (see fillNumbers).
 */
function interpolate(value: unknown, path: string, env: Record<string, string | undefined>, unset: UnresolvedReference[], whole = new Map<string, string>()): unknown {
  if (typeof value === 'string') {
    const name = WHOLE_REFERENCE.exec(value)?.[1]
    if (name !== undefined) whole.set(path, name)
    return value.replace(VAR, (match: string, escaped: string, inside: string) => {
      if (escaped) return match.slice(1)
      const reference = REFERENCE.exec(inside)
      if (!reference) {
        // A mistyped name is short; longer text may be a secret pasted between the braces, never shown.
        const shown = inside.length <= MAX_SHOWN_REFERENCE ? JSON.stringify(echo(match)) : `"\${…}" (${inside.length} characters between the braces, not shown: they may be a secret)`
        unset.push({ path, problem: `${shown} ${NOT_A_REFERENCE}` })
        return ''
      }
      const [, name = '', fallback] = reference
      const v = env[name]
      if (fallback !== undefined) return v === undefined || v === '' ? fallback : v
      if (v === undefined) {
        unset.push({ path, problem: `environment variable ${name} is not set` })
        return ''
      }
      return v
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, `${path}/${i}`, env, unset, whole))
  // A plugin instance from a TS config is a plain object too; copying it would drop the symbol keys of its TypeBox options schema.
  if (isPlainObject(value) && !isPluginObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, `${path}/${pointerSegment(k)}`, env, unset, whole)
    return out
  }
  return value
}

/** A string that is one `${NAME}` or `${NAME:-default}` and nothing else: it may fill a number field. */
const WHOLE_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}$/
/** A number as JSON writes one (no hex, no Infinity, no blank). */
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/

/**
 * A number field whose string is exactly one variable reference (`"port": "${PORT}"`; the
 * environment holds only text, and JSON has no other way to put a variable in a number) takes the
 * variable's value as a number, which the schema then holds to the field's rules: the config's
 * fields, and a plugin's options (`prefix` their path in the file). A value that is no number goes
 * to `notNumber` with its path in `value` and the variable, for a problem that names the variable,
 * never repeating its value (it may be a secret put in the wrong variable). `whole` maps the paths
 * of such strings (from the file's root) to their variable.
 */
export function fillNumberReferences(
  schema: TSchema,
  value: unknown,
  prefix: string,
  whole: ReadonlyMap<string, string>,
  notNumber: (path: string, variable: string) => void,
): void {
  if (whole.size === 0) return
  for (const error of [...Value.Errors(schema, value)]) {
    const wanted = error.schema.type
    const name = whole.get(prefix + error.path)
    if (name === undefined || typeof error.value !== 'string' || (wanted !== 'number' && wanted !== 'integer')) continue
    const text = error.value.trim()
    if (JSON_NUMBER.test(text)) ValuePointer.Set(value, error.path, Number(text))
    else notNumber(error.path, name)
  }
}

/** What is wrong with a number field that holds a variable whose value is no number. */
export const notANumber = (variable: string): string => `environment variable ${variable} is not a number, and this field takes one`

/** The longest text between the braces of a `${…}` that is no reference that a boot problem repeats (API keys are longer). */
const MAX_SHOWN_REFERENCE = 32
const NOT_A_REFERENCE = 'is not a variable reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and _ not beginning with a digit; $${…} keeps the text as written'

/** Schema errors a string can have and still be read as a string by the checks (as the empty string standing in for an unset variable does). */
const STRING_CONSTRAINTS: ReadonlySet<ValueErrorType> = new Set([
  ValueErrorType.StringFormat,
  ValueErrorType.StringMaxLength,
  ValueErrorType.StringMinLength,
  ValueErrorType.StringPattern,
])

/** Whether the value in error is still of the kind its schema wants: a string where a constrained string, or one of a set of words, is wanted. */
function keepsItsKind(error: ValueError): boolean {
  if (STRING_CONSTRAINTS.has(error.type)) return true
  return error.type === ValueErrorType.Union && (literalChoices(error.schema)?.every((v) => typeof v === 'string') ?? false)
}

/**
 * Whether a problem (`path: message`) only follows from an unset variable, already reported: it
 * is at the variable's string, or is a plugin's, reported at the entry holding it.
 */
function followsFromUnset(problem: string, unset: readonly UnresolvedReference[]): boolean {
  const path = problem.slice(0, problem.indexOf(': '))
  if (!path.startsWith('/')) return false
  const pluginEntry = /^\/plugins\/\d+$/.test(path)
  return unset.some((u) => u.path === path || (pluginEntry && u.path.startsWith(`${path}/`)))
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype

/** `definePlugin(...)(options)`: holds a `setup` function, so it cannot come from JSON. */
const isPluginObject = (v: Record<string, unknown>): boolean =>
  typeof v.definition === 'object' && v.definition !== null && typeof (v.definition as { setup?: unknown }).setup === 'function'

/** One thing wrong with a provider or a model of the catalog (the config file's, the admin API's, or both together). */
export interface CatalogProblem {
  /** The list the entry is in. */
  list: 'providers' | 'models'
  /** The entry's position in the list checked: the config file's path, meaningless to an admin API caller. */
  index: number
  /** The provider's id or the model's name. */
  entry: string
  /** Where in the entry, in the config file's field names: `['keys', 1, 'id']`, `['baseUrl']`. */
  field: readonly (string | number)[]
  /** What is wrong. It never repeats a URL or a header value: either may carry a credential, or come from a `${VAR}`. */
  message: string
}

/**
 * What a header value cannot hold: CR, LF and NUL (they split or end a header: RFC 9110, 5.5),
 * the other control characters (invalid there too; HTAB is allowed), and characters beyond
 * U+00FF, which fetch refuses to put in a header at all.
 */
const HEADER_VALUE_BAD = /[\0-\x08\x0a-\x1f\x7f]|[^\0-\xff]/
/** A path segment of dots only: URLs read `.` and `..` (also as `%2e`) as steps of the path, not as names. */
const DOTS = /^\.+$/
const DOTS_WHY = 'dots alone make a step of a URL path ("." or ".."), not a name the API could be asked for'
/**
 * Provider ids that are a route of their own under /admin/providers/ (the balance plugin's
 * `GET /admin/providers/health`): a provider so named could be created but never read.
 */
const RESERVED_PROVIDER_IDS: ReadonlySet<string> = new Set(['health'])

export interface CatalogCheckOptions {
  /**
   * Whether a fallback may name a model the set does not hold. The config file's may: the model
   * can be added at run time through the admin API (it lives in the database), and until then the
   * fallback is skipped (the boot logs a warning naming it).
   * @default false
   */
  missingFallbacks?: boolean
}

/**
 * Every problem of a set of providers and models that a schema cannot see: ids that a URL
 * cannot carry, duplicates, headers that could not be sent, references to a provider or a model
 * that is not there. The config file reports them with their paths ({@link checkCatalogEntries}); the
 * admin API names its own fields instead.
 */
export function catalogProblems(providers: readonly ProviderConfig[], models: readonly ModelConfig[], options: CatalogCheckOptions = {}): CatalogProblem[] {
  const problems: CatalogProblem[] = []
  const providerIds = new Set<string>()
  providers.forEach((p, index) => {
    const add = (field: readonly (string | number)[], message: string) => problems.push({ list: 'providers', index, entry: p.id, field, message })
    if (DOTS.test(p.id)) add(['id'], `"${p.id}" is dots only: ${DOTS_WHY}`)
    if (RESERVED_PROVIDER_IDS.has(p.id)) add(['id'], `"${p.id}" is a reserved name: GET /admin/providers/${p.id} is a route of its own, so a provider with this id could not be read; choose another id`)
    if (providerIds.has(p.id)) add(['id'], `duplicate provider id "${p.id}"`)
    providerIds.add(p.id)
    const keyIds = new Set<string>()
    p.keys.forEach((k, j) => {
      if (DOTS.test(k.id)) add(['keys', j, 'id'], `key id "${k.id}" is dots only: ${DOTS_WHY}`)
      if (keyIds.has(k.id)) add(['keys', j, 'id'], `duplicate key id "${k.id}" in provider "${p.id}"`)
      keyIds.add(k.id)
      // Every adapter sends the secret in a header: one that cannot be sent failed every call (502) instead.
      // Fetch drops the white space around a header value, as a secret file's trailing newline.
      if (HEADER_VALUE_BAD.test(trimHttpWhitespace(k.secret))) {
        add(['keys', j, 'secret'], 'holds a character no HTTP header value may (CR or LF inside it, NUL or another control character, or one beyond U+00FF such as a curly quote): check how the secret was pasted')
      }
    })
    if (p.type === 'openai-compatible' && !p.baseUrl) add(['baseUrl'], 'required for type openai-compatible')
    if (p.baseUrl && !URL.canParse(p.baseUrl)) add(['baseUrl'], 'not a URL')
    for (const [name, value] of Object.entries(p.headers ?? {})) {
      // The name is shown JSON-quoted (a control character in it stays visible), cut and masked as any echo.
      const shown = JSON.stringify(echo(name))
      if (!TOKEN.test(name)) add(['headers'], `header name ${shown} is not an HTTP field name (a token of letters, digits and !#$%&'*+-.^_\`|~: RFC 9110)`)
      else if (HEADER_VALUE_BAD.test(value)) add(['headers'], `the value of header ${shown} holds a character no HTTP field value may (CR, LF, NUL or another control character, or one beyond U+00FF)`)
    }
  })
  const names = new Set(models.map((m) => m.name))
  const seen = new Set<string>()
  models.forEach((m, index) => {
    const add = (field: readonly (string | number)[], message: string) => problems.push({ list: 'models', index, entry: m.name, field, message })
    if (m.name.trim() === '') add(['name'], 'a model name cannot be blank')
    else if (m.name.trim() !== m.name) add(['name'], `a model name cannot begin or end with white space (${JSON.stringify(m.name)})`)
    // A slash is allowed (`acme/llama-3`), but no part between slashes may be dots only.
    else if (m.name.split('/').some((part) => DOTS.test(part))) add(['name'], `"${m.name}" has a part of dots only: ${DOTS_WHY}`)
    if (seen.has(m.name)) add(['name'], `duplicate model name "${m.name}"`)
    seen.add(m.name)
    m.targets.forEach((t, j) => {
      if (!providerIds.has(t.provider)) add(['targets', j, 'provider'], `no provider with id "${t.provider}"`)
    })
    m.fallbacks?.forEach((f, j) => {
      if (!names.has(f) && !options.missingFallbacks) add(['fallbacks', j], `no model named "${f}"`)
      if (f === m.name) add(['fallbacks', j], 'a model cannot fall back to itself')
    })
    if (m.encoding !== undefined && !isEncoding(m.encoding)) add(['encoding'], `${JSON.stringify(echo(m.encoding))} is not one of ${ENCODINGS.join(', ')}`)
  })
  return problems
}

/**
 * The fallbacks that name no model of the list, as `[model, fallback]` pairs: a config file's may
 * (see {@link CatalogCheckOptions}), and the boot warns of each one still missing once the
 * models added through the admin API are loaded.
 */
export function missingFallbacks(models: readonly { name: string; fallbacks?: readonly string[] }[]): [model: string, fallback: string][] {
  const names = new Set(models.map((m) => m.name))
  return models.flatMap((m) => (m.fallbacks ?? []).filter((f) => !names.has(f)).map((f): [string, string] => [m.name, f]))
}

/** Positions of the config file's providers and models that the schema refused. */
interface CatalogEntries {
  providers: Set<number>
  models: Set<number>
}

/**
 * {@link catalogProblems} on the config file's providers and models, one line each with its path in
 * the file. A fallback may name a model the file does not define (the admin API may add it). An
 * entry the schema refused is checked for what can be read of it (its id or name, its keys, targets,
 * fallbacks and headers of the right kinds), so one boot reports the duplicate id or the target naming
 * no provider beside its schema problem; a problem at a path the schema already reported (or within
 * it) is not reported again.
 */
function checkCatalogEntries(providers: readonly unknown[], models: readonly unknown[], bad: CatalogEntries, errorPaths: ReadonlySet<string>, problems: string[]): void {
  const readProviders = providers.map((p, i) => (bad.providers.has(i) ? readableProvider(p) : (p as ProviderConfig)))
  const readModels = models.map((m, i) => (bad.models.has(i) ? readableModel(m) : (m as ModelConfig)))
  const providerAt = readProviders.flatMap((p, i) => (p ? [i] : []))
  const modelAt = readModels.flatMap((m, i) => (m ? [i] : []))
  const checked = catalogProblems(
    providerAt.map((i) => readProviders[i]!),
    modelAt.map((i) => readModels[i]!),
    { missingFallbacks: true },
  )
  for (const p of checked) {
    const index = (p.list === 'providers' ? providerAt : modelAt)[p.index]!
    const path = `/${p.list}/${index}/${p.field.join('/')}`
    if (reportedAt(path, errorPaths)) continue
    problems.push(`${path}: ${p.message}`)
  }
}

/** Whether the schema reported a problem at this path or at one holding it. */
function reportedAt(path: string, errorPaths: ReadonlySet<string>): boolean {
  for (let at = path; at !== ''; at = at.slice(0, at.lastIndexOf('/'))) if (errorPaths.has(at)) return true
  return false
}

/**
 * What the catalog checks can read of a provider the schema refused: null without a string id.
 * Keys with no string id are left out at their places (a sparse list keeps the others' positions).
 */
function readableProvider(entry: unknown): ProviderConfig | null {
  if (!isPlainObject(entry) || typeof entry.id !== 'string') return null
  const keys: { id: string; secret: string }[] = []
  if (Array.isArray(entry.keys)) entry.keys.forEach((k: unknown, j) => isPlainObject(k) && typeof k.id === 'string' && (keys[j] = { id: k.id, secret: '' }))
  const headers = isPlainObject(entry.headers) ? Object.fromEntries(Object.entries(entry.headers).filter((h): h is [string, string] => typeof h[1] === 'string')) : undefined
  return {
    id: entry.id,
    type: entry.type as ProviderConfig['type'],
    ...(typeof entry.baseUrl === 'string' && { baseUrl: entry.baseUrl }),
    keys,
    ...(headers && { headers }),
  }
}

/** What the catalog checks can read of a model the schema refused: null without a string name; as {@link readableProvider}. */
function readableModel(entry: unknown): ModelConfig | null {
  if (!isPlainObject(entry) || typeof entry.name !== 'string') return null
  const targets: ModelConfig['targets'] = []
  if (Array.isArray(entry.targets)) entry.targets.forEach((t: unknown, j) => isPlainObject(t) && typeof t.provider === 'string' && (targets[j] = { provider: t.provider, model: '' }))
  const fallbacks: string[] = []
  if (Array.isArray(entry.fallbacks)) entry.fallbacks.forEach((f: unknown, j) => typeof f === 'string' && (fallbacks[j] = f))
  return { name: entry.name, targets, fallbacks, ...(typeof entry.encoding === 'string' && { encoding: entry.encoding }) }
}

/** The keys a `{use, options}` entry may have, from its schema. */
const PLUGIN_ENTRY_KEYS: ReadonlySet<string> = new Set(Object.keys(PluginUseEntrySchema.properties))

/**
 * Check one entry of `plugins`, adding a problem (with its path) for each thing wrong. A key the
 * entry does not know is refused rather than ignored: `"option"` for `"options"` would otherwise
 * start the plugin with its defaults, and `"enabled": false` would still start it.
 */
export function checkPluginEntry(entry: unknown, path: string, problems: string[]): void {
  if (typeof entry === 'string') return
  if (typeof entry === 'function') return
  if (isPlainObject(entry)) {
    if ('use' in entry) {
      if (typeof entry.use !== 'string' || entry.use === '') problems.push(`${path}/use: must be a module path`)
      if (entry.options !== undefined && !isPlainObject(entry.options)) problems.push(`${path}/options: must be an object`)
      for (const key of Object.keys(entry)) {
        if (!PLUGIN_ENTRY_KEYS.has(key)) problems.push(`${path}/${pointerSegment(key)}: unknown key; a plugin entry takes only "use" and "options"${unknownKeyHint(key)}`)
      }
      return
    }
  }
  if (typeof entry === 'object' && entry !== null && 'definition' in entry) return
  problems.push(`${path}: expected a plugin name, {"use": path, "options": {...}}, or a plugin`)
}

function unknownKeyHint(key: string): string {
  if (/^option/i.test(key)) return ' (did you mean "options"?)'
  if (/^(enabled?|disabled?)$/i.test(key)) return ' (to leave a plugin out, remove its entry)'
  return ''
}

/** A key as one segment of a JSON pointer (RFC 6901), like the paths the schema errors carry. */
const pointerSegment = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1')

/** Why a file cannot be read (no such file, a folder, no permission), or null when it can. */
function unreadableFile(path: string): string | null {
  try {
    if (statSync(path).isDirectory()) return `${path} is a folder, not a file`
    accessSync(path, constants.R_OK)
    return null
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return `no file at ${path}`
    if (code === 'EACCES' || code === 'EPERM') return `${path} cannot be read by this process (permission denied)`
    return `${path} cannot be read: ${error instanceof Error ? error.message : String(error)}`
  }
}

/**
 * What the server would refuse in a readable certificate and key, found here rather than by
 * OpenSSL when the server starts (its message names neither file, and comes after the database
 * is created): each must be PEM, and the key must be the certificate's.
 */
function tlsPairProblems(certPath: string, keyPath: string): string[] {
  const problems: string[] = []
  const certText = readFileSync(certPath, 'utf8')
  const keyText = readFileSync(keyPath, 'utf8')
  let cert: X509Certificate | null = null
  let key: KeyObject | null = null
  try {
    if (!certText.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate')
    cert = new X509Certificate(certText)
  } catch {
    problems.push(`SLUICE_TLS_CERT: ${certPath} holds no PEM certificate (a block beginning -----BEGIN CERTIFICATE-----)`)
  }
  try {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyText)) throw new Error('no PEM private key')
    key = createPrivateKey(keyText)
  } catch {
    problems.push(`SLUICE_TLS_KEY: ${keyPath} holds no PEM private key the gateway can use (a block beginning -----BEGIN PRIVATE KEY-----, not protected by a passphrase)`)
  }
  if (cert && key && !cert.checkPrivateKey(key)) {
    problems.push(`SLUICE_TLS_KEY: ${keyPath} is not the private key of the certificate in ${certPath} (SLUICE_TLS_CERT); give the key the certificate was issued for`)
  }
  return problems
}

/**
 * PORT in digits, 1 to 65535; blank (an env file's `PORT=`) is unset. Number() would take " " for
 * 0 (a random port), "0x4A9E" for 19102 and "1e4" for 10000.
 */
function parsePort(raw: string | undefined, fallback: number, problems: string[]): number {
  const text = raw?.trim() ?? ''
  if (text === '') return fallback
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  if (!(n >= 1 && n <= 65535)) {
    problems.push(`PORT: ${JSON.stringify(echo(raw!))} is not a port number (digits, 1 to 65535)`)
    return fallback
  }
  return n
}

/**
 * The master keys that are not 32 bytes of base64: SLUICE_ENCRYPTION_KEY (when set) and each key of
 * SLUICE_ENCRYPTION_KEY_PREVIOUS (comma-separated, as src/catalog.ts reads them), the latter named by
 * its place in the list (never by its value: it is a secret). The boot's check and the rotation CLI's.
 */
export function encryptionKeyProblems(current: string | null | undefined, previous: string | undefined): string[] {
  const keys = (previous ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  const problems = current && decodedLength(current) !== 32 ? ['SLUICE_ENCRYPTION_KEY: must be 32 bytes, base64-encoded (try: openssl rand -base64 32)'] : []
  return problems.concat(keys.flatMap((key, i) =>
    decodedLength(key) === 32
      ? []
      : [`SLUICE_ENCRYPTION_KEY_PREVIOUS: its key ${i + 1} is not 32 bytes, base64-encoded (each key of the comma-separated list is one, as SLUICE_ENCRYPTION_KEY is)`],
  ))
}

function decodedLength(b64: string): number {
  try {
    return Buffer.from(b64, 'base64').length
  } catch {
    return -1
  }
}

/** A schema error as a problem line: its path, what is wrong, and the value found. */
function schemaProblem(error: ValueError, raw: unknown): string {
  return `${error.path || '/'}: ${schemaErrorMessage(error)}${describeValue(error, raw)}`
}

/**
 * A schema error in words: TypeBox's own message, except for a value that must be one of a fixed
 * set (a union of literals: a provider's `type`, a model's `strategy`, a plugin's mode), where
 * TypeBox says only "Expected union value" and this names the values accepted.
 */
export function schemaErrorMessage(error: ValueError): string {
  const choices = error.type === ValueErrorType.Union ? literalChoices(error.schema) : null
  return choices ? `must be one of ${choices.map((v) => JSON.stringify(v)).join(', ')}` : error.message
}

/** The values a union of literals accepts, in its order; null for any other schema. */
function literalChoices(schema: TSchema): TLiteralValue[] | null {
  if (!KindGuard.IsUnion(schema)) return null
  const values: TLiteralValue[] = []
  for (const member of schema.anyOf) {
    if (!KindGuard.IsLiteral(member)) return null
    values.push(member.const)
  }
  return values
}

/** Path segments under which a value is taken for a secret and never shown. */
const SECRET_SEGMENT = /secret|key|token|pass(word|wd)?|credential|auth|headers/i

/**
 * ` (got …)` for a schema error, or nothing when the value might be a secret: a value that came
 * (wholly or partly) from a `${VAR}`, the value of a property the schema does not know (a
 * misspelt `secret` is still a secret), or anything under a path that names a secret, keys or
 * headers (a TS config may hold secrets read from the environment itself, with no `${VAR}`).
 */
function describeValue(error: ValueError, raw: unknown): string {
  if (error.value === undefined) return ''
  if (error.type === ValueErrorType.ObjectAdditionalProperties) return ''
  const segments = error.path.split('/').slice(1).map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
  if (segments.some((s) => SECRET_SEGMENT.test(s))) return ''
  const s = JSON.stringify(error.value)
  if (s === undefined || s !== JSON.stringify(valueAt(raw, segments))) return ''
  return ` (got ${s.length > 60 ? s.slice(0, 57) + '...' : s})`
}

/** The value at a JSON pointer's segments in the config as written (before `${VAR}` interpolation). */
function valueAt(root: unknown, segments: readonly string[]): unknown {
  let node = root
  for (const segment of segments) {
    if (Array.isArray(node)) node = node[Number(segment)]
    else if (isPlainObject(node)) node = node[segment]
    else return undefined
  }
  return node
}
