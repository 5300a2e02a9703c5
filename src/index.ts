/**
 * sluice's public API: what a plugin author or an embedding program imports.
 */
export { definePlugin } from './plugin.ts'
export type {
  AttemptFailure,
  Endpoint,
  GatewayRequest,
  HookResult,
  Identity,
  MaybePromise,
  Outcome,
  PluginContext,
  PluginDefinition,
  PluginFactory,
  PluginHooks,
  PluginInstance,
  PluginOptionsInput,
  RoutePlan,
  StreamChunk,
  StreamChunkResult,
  Usage,
} from './plugin.ts'
export { GatewayError, ERROR_CODES, type ErrorCode, type ErrorType, type ErrorEnvelope, type GatewayErrorOptions } from './errors.ts'
/** The type of `ctx.logger` (lines carry `plugin: <name>`), for a plugin's own functions that take it. */
export type { Logger, LogLevel } from './lib/logger.ts'
export { defineConfig, loadConfig, ConfigError, type ResolvedConfig } from './config/load.ts'
export type { ConfigFile, ModelConfig, ProviderConfig } from './config/schema.ts'
export { createGateway, type Gateway, type GatewayOptions } from './server.ts'
export type { ModelGroup, RouteTarget, GroupTarget, ProviderRuntime } from './models.ts'
export type { Services } from './services.ts'
export { LATENCY_BUCKETS, type MetricsRegistry, type Counter, type Gauge, type Histogram } from './metrics.ts'
export type { UpstreamHealth, UpstreamKeyState } from './upstream-health.ts'
export type { ProviderAdapter, UpstreamCall } from './providers/types.ts'
export { t } from 'elysia'
