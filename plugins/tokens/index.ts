import { Type } from '@sinclair/typebox'
import type { Pricing } from '../../src/config/schema.ts'
import { roughPromptTokens } from '../../src/lib/usage.ts'
import type { ModelGroup, ModelRegistry } from '../../src/models.ts'
import { definePlugin } from '../../src/plugin.ts'
import type { Tokenizer } from '../../src/services.ts'
import { DEFAULT_IMAGE_RULE, knownImageRule, type ImageRuleName } from './count.ts'
import { ENCODINGS, isEncoding, knownEncoding, type EncodingName } from './encodings.ts'
import { CountPool } from './pool.ts'
import { builtinPricing } from './prices.ts'
import { MAX_TIMER_MS } from '../../src/config/schema.ts'

const Options = Type.Object(
  {
    /** Encoding of models that neither the config (a model group's `encoding`) nor the built-in table knows. @default "o200k_base" */
    default_encoding: Type.Union(
      ENCODINGS.map((e) => Type.Literal(e)),
      { default: 'o200k_base' },
    ),
    /** Counting threads (Bun Workers), started on the first exact count. @default 1 */
    workers: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
    /**
     * Encodings to build in every worker in the background at boot, so no count waits for a
     * build (o200k_base takes about half a second). Empty: nothing loads until a count needs it. @default []
     */
    preload: Type.Array(Type.Union(ENCODINGS.map((e) => Type.Literal(e))), { default: [] }),
    /**
     * How quota reservations count a prompt: `estimate` (4 characters a token, no wait) or
     * `exact` (tiktoken in a worker, about 0.3 ms per KB of prompt). Settlement corrects a
     * reservation from the real usage either way. @default "estimate"
     */
    reserve: Type.Union([Type.Literal('estimate'), Type.Literal('exact')], { default: 'estimate' }),
    /** Counts waiting or running at once; more are refused (settlement then falls back to the estimate). @default 1024 */
    max_pending: Type.Integer({ minimum: 1, default: 1024 }),
    /** A count not done within this many ms of its worker starting it (time waiting its turn is not counted) fails and its worker is restarted. @default 30000 */
    timeout_ms: Type.Integer({ minimum: 50, maximum: MAX_TIMER_MS, default: 30_000 }),
  },
  { additionalProperties: false },
)

/** Runtime-added model groups may name an encoding this build lacks; each is warned about once (bounded). */
const MAX_WARNED = 1000

/**
 * Exact token counts with tiktoken, off the event loop, and prices: installs a `Tokenizer`
 * into the shared services during setup. The core uses it to count usage a provider did not
 * report (streams without a usage chunk, cut streams) and for `POST /v1/tokens/count`; the
 * quota plugin uses it to reserve.
 */
export const tokens = definePlugin({
  name: 'tokens',
  options: Options,
  setup({ options, services, models, logger }) {
    for (const group of models.list()) {
      if (group.encoding !== undefined && !isEncoding(group.encoding)) {
        throw new Error(`model "${group.name}": encoding "${group.encoding}" is not one of ${ENCODINGS.join(', ')}`)
      }
    }
    const pool = new CountPool({ size: options.workers, maxPending: options.max_pending, timeoutMs: options.timeout_ms, logger })
    const warned = new Set<string>()
    const encodingFor = (model: string, upstream?: string): EncodingName => {
      const found = resolveEncoding(models, model, options.default_encoding, upstream)
      if (found.unknown && warned.size < MAX_WARNED && !warned.has(found.unknown)) {
        warned.add(found.unknown)
        logger.warn('a model group names an encoding this build does not have; using the default', { encoding: found.unknown, default: options.default_encoding })
      }
      return found.encoding
    }

    // A group's image rule is worked out once per upstream model it serves (its targets', so bounded):
    // the registry replaces a group's object when it changes.
    const imageRules = new WeakMap<ModelGroup, Map<string, ImageRuleName>>()
    const imageRuleFor = (model: string, upstream?: string): ImageRuleName => {
      const group = models.get(model)
      if (!group) return resolveImageRule(models, model, upstream)
      let rules = imageRules.get(group)
      if (rules === undefined) imageRules.set(group, (rules = new Map()))
      let rule = rules.get(upstream ?? '')
      if (rule === undefined) rules.set(upstream ?? '', (rule = resolveImageRule(models, model, upstream)))
      return rule
    }

    const tokenizer: Tokenizer = {
      name: 'tiktoken',
      encodingFor,
      countPrompt(endpoint, body, model, purpose, upstream) {
        if (purpose === 'reserve' && options.reserve === 'estimate') return roughPromptTokens(body)
        return pool.run({ op: 'prompt', encoding: encodingFor(model, upstream), images: imageRuleFor(model, upstream), endpoint, body })
      },
      countText(text, model, upstream) {
        return text.length === 0 ? 0 : pool.run({ op: 'text', encoding: encodingFor(model, upstream), text })
      },
      pricing: (model, upstreamModel, configured) => configured ?? tablePricing(models, model, upstreamModel),
    }
    services.tokenizer = tokenizer
    if (options.preload.length > 0) pool.warm(options.preload)

    return {
      /** Worker threads running and counts pending (for tests and diagnostics). */
      stats: () => ({ workers: pool.running, started: pool.started, pending: pool.pending }),
      close: () => pool.close(),
    }
  },
})

/**
 * A model group's configured encoding, then the table by the client model name, then by the
 * upstream model that served (`upstream`, when settling), then by the group's other upstream
 * model names; a name that is no group (an upstream model, as older callers pass it, or a group
 * deleted since) is looked up in the table, then in the configured groups that target it.
 */
export function resolveEncoding(models: ModelRegistry, model: string, fallback: EncodingName, upstream?: string): { encoding: EncodingName; unknown?: string } {
  const configured = (encoding: string | undefined) => (encoding === undefined ? undefined : isEncoding(encoding) ? { encoding } : { encoding: fallback, unknown: encoding })
  const group = models.get(model)
  if (!group && upstream !== undefined) return resolveEncoding(models, upstream, fallback)
  if (group) {
    const own = configured(group.encoding) ?? known(model) ?? (upstream === undefined ? undefined : known(upstream))
    if (own) return own
    for (const target of group.targets) {
      const upstream = known(target.model)
      if (upstream) return upstream
    }
    return { encoding: fallback }
  }
  const direct = known(model)
  if (direct) return direct
  for (const g of models.list()) {
    if (g.encoding !== undefined && g.targets.some((t) => t.model === model)) return configured(g.encoding)!
  }
  return { encoding: fallback }
}

/**
 * The image rule of a client model name or an upstream one, found as the encoding is: a group's
 * own name, then the upstream model that served (`upstream`), then its targets' upstream names;
 * a name that is no group (an upstream model), then the groups that target it by their names.
 * Else gpt-4o's.
 */
export function resolveImageRule(models: ModelRegistry, model: string, upstream?: string): ImageRuleName {
  const group = models.get(model)
  if (!group && upstream !== undefined) return resolveImageRule(models, upstream)
  const own = knownImageRule(model)
  if (group) {
    if (own) return own
    const served = upstream === undefined ? undefined : knownImageRule(upstream)
    if (served) return served
    for (const target of group.targets) {
      const upstream = knownImageRule(target.model)
      if (upstream) return upstream
    }
    return DEFAULT_IMAGE_RULE
  }
  if (own) return own
  for (const g of models.list()) {
    if (g.targets.some((t) => t.model === model)) {
      const named = knownImageRule(g.name)
      if (named) return named
    }
  }
  return DEFAULT_IMAGE_RULE
}

const known = (model: string): { encoding: EncodingName } | undefined => {
  const encoding = knownEncoding(model)
  return encoding ? { encoding } : undefined
}

/** The built-in price of what is really called: the upstream model, else the group's targets, else the client model name. */
export function tablePricing(models: ModelRegistry, model: string, upstreamModel: string | undefined): Pricing | undefined {
  if (upstreamModel) {
    const upstream = builtinPricing(upstreamModel)
    if (upstream) return upstream
  }
  const group = models.get(model)
  if (group) {
    for (const target of group.targets) {
      const price = builtinPricing(target.model)
      if (price) return price
    }
  }
  return builtinPricing(model)
}
