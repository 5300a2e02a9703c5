import type { ModelConfig, Pricing, ProviderConfig, ProviderKeyConfig, Strategy } from './config/schema.ts'
import type { ProviderAdapter } from './providers/types.ts'
import { createAdapter } from './providers/index.ts'

/** A configured provider with its adapter, built once. */
export interface ProviderRuntime {
  readonly id: string
  readonly type: string
  readonly config: ProviderConfig
  readonly adapter: ProviderAdapter
  readonly keys: readonly ProviderKeyConfig[]
}

/** One (provider, upstream model) a model group can send to. */
export interface GroupTarget {
  readonly provider: ProviderRuntime
  readonly model: string
  readonly weight: number
}

/** A concrete attempt: a target and the provider key to use. */
export interface RouteTarget {
  readonly provider: ProviderRuntime
  readonly model: string
  readonly key: ProviderKeyConfig
  /** The model group this target belongs to (differs from the request's after a fallback). */
  readonly group: string
}

/** A client-facing model name and how it maps to upstreams. */
export interface ModelGroup {
  readonly name: string
  readonly strategy: Strategy
  readonly targets: readonly GroupTarget[]
  readonly fallbacks: readonly string[]
  readonly pricing: Pricing | undefined
  readonly encoding: string | undefined
  /** RFC 3339 time the group was loaded; `created` in the model list. */
  readonly created: number
}

/** The models this gateway serves, resolved from config (and, at run time, the admin API). */
export class ModelRegistry {
  private groups = new Map<string, ModelGroup>()
  private providerMap = new Map<string, ProviderRuntime>()

  constructor(providers: readonly ProviderConfig[], models: readonly ModelConfig[]) {
    this.replace(providers, models)
  }

  /** Swap the whole set atomically (config reload, admin changes). */
  replace(providers: readonly ProviderConfig[], models: readonly ModelConfig[]): void {
    const providerMap = new Map<string, ProviderRuntime>()
    for (const p of providers) {
      providerMap.set(p.id, { id: p.id, type: p.type, config: p, adapter: createAdapter(p), keys: p.keys })
    }
    const created = Math.floor(Date.now() / 1000)
    const groups = new Map<string, ModelGroup>()
    for (const m of models) {
      const targets = m.targets.map((t) => {
        const provider = providerMap.get(t.provider)
        if (!provider) throw new Error(`model "${m.name}": no provider "${t.provider}"`)
        return { provider, model: t.model, weight: t.weight ?? 1 }
      })
      groups.set(m.name, {
        name: m.name,
        strategy: m.strategy ?? 'weighted',
        targets,
        fallbacks: m.fallbacks ?? [],
        pricing: m.pricing,
        encoding: m.encoding,
        created,
      })
    }
    this.providerMap = providerMap
    this.groups = groups
  }

  get(name: string): ModelGroup | undefined {
    return this.groups.get(name)
  }

  list(): ModelGroup[] {
    return [...this.groups.values()]
  }

  provider(id: string): ProviderRuntime | undefined {
    return this.providerMap.get(id)
  }

  providers(): ProviderRuntime[] {
    return [...this.providerMap.values()]
  }
}
