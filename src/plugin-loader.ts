import { existsSync } from 'node:fs'
import { within } from './lib/within.ts'
import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { KindGuard, OptionalKind, ReadonlyKind, TransformKind, Type, type TSchema } from '@sinclair/typebox'
import { Value, type ValueError } from '@sinclair/typebox/value'
import { ConfigError, checkPluginEntry, fillNumberReferences, notANumber, schemaErrorMessage, type PluginSource } from './config/load.ts'
import { hooksProblem, isPluginFactory, isPluginInstance, misspeltHooks, type Identity, type PluginContext, type PluginDefinition, type PluginHooks, type PluginInstance } from './plugin.ts'
import type { LoadedPlugin, Pipeline } from './pipeline.ts'
import { GatewayError } from './errors.ts'
import { newRequestId } from './lib/id.ts'
import type { Logger } from './lib/logger.ts'
import type { PluginFactory } from './plugin.ts'

/**
 * Turn the config's plugin entries into instances; every problem is reported, each naming its
 * plugin. Nothing is started: the gateway runs this as part of loading its config, before it
 * opens anything, and `createGateway` again on what that returned (instances pass through).
 */
export async function resolvePlugins(config: PluginSource, builtins: Record<string, PluginFactory>): Promise<PluginInstance[]> {
  const problems: string[] = []
  const entries = config.plugins ?? Object.keys(builtins)
  const instances: PluginInstance[] = []
  const seen = new Set<string>()
  /** The first entry of each name and its definition: a name is one plugin's (it keys log lines, metrics and `req.locals`). */
  const named = new Map<string, { definition: PluginDefinition; path: string }>()
  for (const [i, entry] of entries.entries()) {
    const path = `/plugins/${i}`
    const instance = await toInstance(entry, path, config, builtins, problems)
    if (!instance) continue
    const unnamed = nameProblem(instance.name)
    if (unnamed !== null) {
      problems.push(`${path}: ${unnamed}`)
      continue
    }
    const first = named.get(instance.name)
    if (first && first.definition !== instance.definition) {
      problems.push(`${path}: plugin "${instance.name}" is another plugin than the "${instance.name}" at ${first.path} (two definitions share the name); rename one of them: a name keys its plugin's log lines, metrics and req.locals`)
      continue
    }
    if (!first) named.set(instance.name, { definition: instance.definition, path })
    // Options written in the file (`{"use": …, "options": …}`) may hold a number as "${NAME}".
    const written = typeof entry === 'object' && entry !== null && 'use' in entry
    const options = validateOptions(instance, path, problems, written ? config.wholeReferences : undefined)
    // The same plugin with equal options registers once (a config and a preset may both list it).
    const identity = `${instance.name}\u0000${optionsIdentity(options)}`
    if (seen.has(identity)) continue
    seen.add(identity)
    instances.push({ ...instance, options })
  }
  if (problems.length) throw new ConfigError(problems)
  return instances
}

/**
 * What is wrong with a plugin's name, or null. A plugin without one (a JavaScript plugin's
 * definePlugin without `name`) booted and failed as plugin "undefined", and had no metrics. A name is
 * also printed as it is in the boot's errors (plain text), hence one line.
 */
function nameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name.trim() === '') {
    return `a plugin needs a name (definePlugin({ name: "my-plugin", ... })): it names the plugin in every error, log line and metric; got ${name === undefined ? 'undefined' : JSON.stringify(name)}`
  }
  if (name.length > 100 || /[\u0000-\u001f\u007f]/.test(name)) return `a plugin's name is one line of at most 100 characters, without control characters; got ${JSON.stringify(name)}`
  return null
}

/**
 * `ctx.authenticate` of every plugin: the pipeline's authenticate stage for a request a plugin's
 * route handles. Plugins are set up before the pipeline is built; it is bound once it is.
 */
export class RouteAuthenticator {
  private pipeline: Pipeline | undefined

  bind(pipeline: Pipeline): void {
    this.pipeline = pipeline
  }

  readonly authenticate = async (request: Request, requestId?: string): Promise<Identity | GatewayError> => {
    const pipeline = this.pipeline
    if (!pipeline) throw new Error('ctx.authenticate checks requests being handled; it cannot run during setup')
    // As GET /v1/key is checked: the key's validity, no scope nor model. Under the id the client
    // is answered with, so that the hooks' log lines can be found by it.
    const req = pipeline.createRequest('key', request, requestId || newRequestId())
    const refused = await pipeline.authenticate(req)
    if (refused) return refused
    return req.identity ?? new GatewayError('missing_api_key', 'This route needs an API key, but no plugin of this gateway checks keys (the built-in "auth" does).')
  }
}

/** What a plugin's setup returned that is no hooks object (see hooksProblem), with what it returned. */
class HooksProblem extends Error {
  readonly hooks: { close?: unknown }
  constructor(message: string, hooks: unknown) {
    super(message)
    this.hooks = typeof hooks === 'object' && hooks !== null ? hooks : {}
  }
}

/** How often a plugin's setup that has not finished is logged (see setupPlugins). */
export const SETUP_NOTICE_MS = 10_000

/**
 * Run each plugin's `setup` in order; a failure names the plugin. A setup still running is logged
 * every `noticeMs`, naming its plugin: one waiting on a server that does not answer held the boot
 * with nothing said, nothing listening and no log line to tell which plugin it waited for.
 */
export async function setupPlugins(instances: PluginInstance[], base: Omit<PluginContext, 'options'>, noticeMs = SETUP_NOTICE_MS): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = []
  for (const instance of instances) {
    const started = performance.now()
    const notice = setInterval(() => {
      base.logger.warn('plugin is still starting (its setup has not finished)', { plugin: instance.name, waited_ms: Math.round(performance.now() - started) })
    }, noticeMs)
    try {
      const hooks: unknown = await instance.definition.setup({ ...base, logger: pluginLogger(base.logger, instance.name), options: instance.options as never })
      clearInterval(notice)
      const problem = hooksProblem(hooks)
      // Closed with the others, if it says how: it started.
      if (problem !== null) throw new HooksProblem(problem, hooks)
      const given = (hooks as PluginHooks | undefined) ?? {}
      for (const { name, meant } of misspeltHooks(given)) {
        base.logger.warn(`plugin's setup returned "${name}", which is no hook and is never called (did you mean ${meant}?)`, { plugin: instance.name })
      }
      loaded.push({ name: instance.name, hooks: given })
    } catch (error) {
      clearInterval(notice)
      // Those already started are closed (the last first): a boot that fails leaves nothing running.
      if (error instanceof HooksProblem && typeof error.hooks.close === 'function') loaded.push({ name: instance.name, hooks: { close: error.hooks.close.bind(error.hooks) } })
      await closePlugins(loaded, base.logger)
      throw new Error(`plugin "${instance.name}" failed to start: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
    }
  }
  return loaded
}

/**
 * How long the gateway waits for one plugin's `close` before it logs so and closes the plugins before
 * it: above what the built-in ones take at most by their own bounds (logging's, with the database
 * down: its alerts or pruning and then its queue, each `close_timeout_ms`, 5 s by default).
 */
export const PLUGIN_CLOSE_MS = 30_000

/**
 * Close plugins, the last started first (one may use those before it). A close that fails, or has
 * not finished within `waitMs`, is logged naming its plugin, and the plugins before it are closed
 * all the same: one that hung held up the rest for good, `logging`'s flush of the request log among
 * them (a user's plugin is listed after it), and the process never exited on SIGTERM.
 */
export async function closePlugins(started: readonly LoadedPlugin[], logger: Logger, waitMs = PLUGIN_CLOSE_MS): Promise<void> {
  for (let i = started.length - 1; i >= 0; i--) {
    const plugin = started[i]!
    if (!plugin.hooks.close) continue
    try {
      const closed = await within(Promise.resolve(plugin.hooks.close()).then(() => true), waitMs, () => LATE).catch((error: unknown) => {
        if (error === LATE) return false
        throw error
      })
      if (!closed) logger.error('plugin did not close in time; the plugins before it are closed without it', { plugin: plugin.name, waited_ms: waitMs })
    } catch (error) {
      logger.error('plugin failed to close', { plugin: plugin.name, error: String(error) })
    }
  }
}

/** What `within` rejects a close with when it is late (told from the close's own failure). */
const LATE = Symbol('late')

/** The logger a plugin is given: its lines carry `plugin: <name>` (a `plugin` field of the line's own wins). */
function pluginLogger(logger: Logger, plugin: string): Logger {
  const named = (fields: Record<string, unknown> | undefined) => (fields === undefined ? { plugin } : { plugin, ...fields })
  return {
    level: logger.level,
    enabled: (level) => logger.enabled(level),
    debug: (msg, fields) => logger.debug(msg, named(fields)),
    info: (msg, fields) => logger.info(msg, named(fields)),
    warn: (msg, fields) => logger.warn(msg, named(fields)),
    error: (msg, fields) => logger.error(msg, named(fields)),
  }
}

async function toInstance(
  entry: unknown,
  path: string,
  config: PluginSource,
  builtins: Record<string, PluginFactory>,
  problems: string[],
): Promise<PluginInstance | undefined> {
  if (typeof entry === 'string') {
    // Own names only: "constructor" or "toString" is no built-in plugin.
    const factory = Object.hasOwn(builtins, entry) ? builtins[entry] : undefined
    if (!factory) {
      const names = Object.keys(builtins)
      problems.push(`${path}: unknown plugin "${entry}"; built-in plugins are ${names.length ? names.join(', ') : '(none)'}; load your own with {"use": "./path/to/plugin.ts"}`)
      return undefined
    }
    return factory()
  }
  if (isPluginInstance(entry)) return entry
  if (isPluginFactory(entry)) return entry()
  if (typeof entry === 'object' && entry !== null && 'use' in entry) {
    // A config that did not come through loadConfig (an embedding program's) is checked here too.
    const before = problems.length
    checkPluginEntry(entry, path, problems)
    if (problems.length > before) return undefined
    const { use, options } = entry as { use: string; options?: unknown }
    const builtin = Object.hasOwn(builtins, use) ? builtins[use] : undefined
    if (builtin) return builtin(options as never)
    const target = modulePath(use, config.baseDir)
    if (typeof target !== 'string') {
      problems.push(`${path}: plugin "${use}" cannot be loaded: ${target.missing}`)
      return undefined
    }
    let mod: Record<string, unknown>
    try {
      mod = await import(pathToFileURL(target).href)
    } catch (error) {
      problems.push(`${path}: plugin "${use}" cannot be loaded: ${error instanceof Error ? error.message : String(error)}`)
      return undefined
    }
    const found = exportedPlugin(mod)
    if (found === undefined) {
      problems.push(`${path}: plugin "${use}" exports no plugin (export one made with definePlugin)`)
      return undefined
    }
    if (Array.isArray(found)) {
      // Taking the first would load one of them in silence, whichever the file happens to list first.
      problems.push(`${path}: plugin "${use}" exports several plugins (${found.join(', ')}) and none as default: export the one to load as default, or give each a file of its own`)
      return undefined
    }
    const instance = isPluginFactory(found) ? found() : (found as PluginInstance)
    return { ...instance, options: options ?? instance.options }
  }
  problems.push(`${path}: expected a plugin name, {"use": path, "options": {...}}, or a plugin`)
  return undefined
}

/**
 * The file a `{"use"}` names: a path (absolute, or relative to the config's folder), else a package
 * installed where the config is (`@acme/sluice-audit`, from its node_modules), as a plugin published
 * to npm is listed; a name that is neither says so. A path starting with `./` or `../` is a file only.
 */
function modulePath(use: string, baseDir: string): string | { missing: string } {
  if (isAbsolute(use)) return use
  const file = resolve(baseDir, use)
  if (use.startsWith('./') || use.startsWith('../') || existsSync(file)) return file
  try {
    return Bun.resolveSync(use, baseDir)
  } catch {
    return { missing: `no file ${file} and no package "${use}" installed for ${baseDir}` }
  }
}

/**
 * The plugin a module listed by `{"use"}` exports: its default if that is one, else its only one
 * (under one name or several); the names of the plugins when it has more than one; undefined for none.
 */
function exportedPlugin(mod: Record<string, unknown>): PluginFactory | PluginInstance | string[] | undefined {
  const isPlugin = (v: unknown): v is PluginFactory | PluginInstance => isPluginFactory(v) || isPluginInstance(v)
  if (isPlugin(mod.default)) return mod.default
  const plugins = Object.values(mod).filter(isPlugin)
  const definitions = new Set(plugins.map((p) => p.definition))
  if (definitions.size <= 1) return plugins[0]
  return [...new Set(plugins.map((p) => (isPluginFactory(p) ? p.definition.name : p.name)))]
}

function validateOptions(instance: PluginInstance, path: string, problems: string[], wholeReferences?: ReadonlyMap<string, string>): unknown {
  const declared = instance.definition.options
  if (!declared) return instance.options
  const schema = withoutCoercion(declared)
  // Defaults first, so a plugin listed bare gets its documented defaults. `Value.Default` writes
  // them into the objects it is given, so it gets copies of the caller's (see copyContainers).
  const value = Value.Default(schema, copyContainers(instance.options ?? {}))
  let ok = true
  // A number option that is "${NAME}" in the file takes the variable as a number, as the config's own fields do.
  const notNumbers = new Set<string>()
  if (wholeReferences) {
    fillNumberReferences(schema, value, `${path}/options`, wholeReferences, (at, variable) => {
      notNumbers.add(at)
      problems.push(`${path}: plugin "${instance.name}" option ${at || '/'}: ${notANumber(variable)}`)
    })
  }
  if (notNumbers.size > 0) ok = false
  for (const error of Value.Errors(schema, value)) {
    ok = false
    if (notNumbers.has(error.path)) continue
    problems.push(`${path}: plugin "${instance.name}" option ${error.path || '/'}: ${optionErrorMessage(error)}`)
  }
  if (!ok) return undefined
  try {
    // A transform left in the schema (t.Date's, a plugin's own Type.Transform) hands setup its decoded value.
    return Value.Decode(schema, value)
  } catch (error) {
    problems.push(`${path}: plugin "${instance.name}" options cannot be decoded: ${error instanceof Error ? error.message : String(error)}`)
    return undefined
  }
}

/** A schema error, saying so when a string was given where a number or a boolean is wanted (`"10"` for 10). */
function optionErrorMessage(error: ValueError): string {
  const message = schemaErrorMessage(error)
  const wanted = error.schema.type
  const scalar = wanted === 'integer' || wanted === 'number' || wanted === 'boolean'
  return scalar && typeof error.value === 'string' ? `${message} (got a string; write the value without quotes)` : message
}

/**
 * The string formats of the members Elysia's `t` adds beside a number, a boolean, an object or an
 * array (t.Integer, t.Numeric, t.BooleanString, t.ObjectString, t.ArrayString), so a query string
 * or a form field can hold one; a transform then parses the string.
 */
const COERCED_FORMATS: ReadonlySet<string> = new Set(['integer', 'numeric', 'boolean', 'ObjectString', 'ArrayString'])

const isCoercedString = (schema: unknown): boolean =>
  KindGuard.IsString(schema) && typeof schema.format === 'string' && COERCED_FORMATS.has(schema.format)

/**
 * The schema a plugin's options are checked against: its own, with every coercing union of
 * Elysia's replaced by its other members (the schema itself when it has none). A
 * config holds JSON (or a TypeScript value): `"10"` for an integer is a mistake to report, as
 * anywhere else in the config, not text to parse. Left in, the string passed the check as the
 * string member, reached setup unparsed, and the number member's constraints (its minimum) were
 * never checked, while a wrong value was reported as "Expected union value".
 */
function withoutCoercion(schema: TSchema): TSchema {
  if (KindGuard.IsUnion(schema) && TransformKind in schema && schema.anyOf.some(isCoercedString)) {
    const kept = schema.anyOf.filter((member) => !isCoercedString(member)).map(withoutCoercion)
    const inner: TSchema = kept.length === 1 ? { ...kept[0]! } : Type.Union(kept)
    // What the union said of itself: its default, and whether its property may be left out.
    if (schema.default !== undefined && inner.default === undefined) inner.default = schema.default
    if (schema[OptionalKind] !== undefined) inner[OptionalKind] = schema[OptionalKind]
    if (schema[ReadonlyKind] !== undefined) inner[ReadonlyKind] = schema[ReadonlyKind]
    return inner
  }
  let copy: Record<string | symbol, unknown> | undefined
  const set = (key: string, value: unknown) => ((copy ??= { ...schema })[key] = value)
  for (const key of ['items', 'additionalProperties', 'not'] as const) {
    const child: unknown = schema[key]
    if (KindGuard.IsSchema(child)) {
      const mapped = withoutCoercion(child)
      if (mapped !== child) set(key, mapped)
    }
  }
  for (const key of ['anyOf', 'allOf', 'oneOf', 'items', 'prefixItems'] as const) {
    const children: unknown = schema[key]
    if (!Array.isArray(children)) continue
    const mapped = children.map((child: unknown) => (KindGuard.IsSchema(child) ? withoutCoercion(child) : child))
    if (mapped.some((child, i) => child !== children[i])) set(key, mapped)
  }
  for (const key of ['properties', 'patternProperties'] as const) {
    const children: unknown = schema[key]
    if (typeof children !== 'object' || children === null) continue
    const entries = Object.entries(children).map(([name, child]: [string, unknown]) => [name, KindGuard.IsSchema(child) ? withoutCoercion(child) : child] as const)
    if (entries.some(([name, child]) => child !== (children as Record<string, unknown>)[name])) set(key, Object.fromEntries(entries))
  }
  return (copy as TSchema | undefined) ?? schema
}

/**
 * A copy of the plain objects and arrays in a plugin's options (the only values defaults are
 * written into), so filling in defaults never changes the object the config passed, which may
 * be shared with another entry. Everything else is kept as it is, not cloned: a TypeScript
 * config may pass functions, class instances (a client, a Map) or RegExps, which a structured
 * clone refuses or strips of their class.
 */
function copyContainers(value: unknown, copies = new Map<object, unknown>()): unknown {
  if (typeof value !== 'object' || value === null) return value
  const done = copies.get(value)
  if (done !== undefined) return done
  if (Array.isArray(value)) {
    const out: unknown[] = []
    copies.set(value, out)
    for (const item of value) out.push(copyContainers(item, copies))
    return out
  }
  if (!isPlainObject(value)) return value
  const out: Record<string, unknown> = Object.create(Object.getPrototypeOf(value) as object | null)
  copies.set(value, out)
  // Defined, not assigned: an own "__proto__" key (JSON.parse makes them) stays a key.
  for (const [key, item] of Object.entries(value)) Object.defineProperty(out, key, { value: copyContainers(item, copies), enumerable: true, writable: true, configurable: true })
  return out
}

/** An object literal or a JSON object (its prototype Object's or none), not a class instance. */
function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const references = new WeakMap<object, number>()
let nextReference = 0

/**
 * A key equal for equal options: JSON for JSON data; a function or class instance counts as
 * equal only to itself (JSON would drop a function, making two different callbacks look equal).
 * Options that cannot be written out (a cycle) never count as equal to another entry's.
 */
function optionsIdentity(options: unknown): string {
  const ref = (value: object): string => {
    let id = references.get(value)
    if (id === undefined) references.set(value, (id = ++nextReference))
    return `\u0000ref:${id}`
  }
  try {
    return JSON.stringify(options ?? null, (_key, value: unknown) => {
      if (typeof value === 'function') return ref(value)
      if (typeof value === 'object' && value !== null && !Array.isArray(value) && !isPlainObject(value)) return ref(value)
      return value
    })
  } catch {
    return ref({})
  }
}
