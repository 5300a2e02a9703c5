import type { Endpoint } from '../plugin.ts'
import type { ProviderConfig, ProviderKeyConfig } from '../config/schema.ts'

/** One call to an upstream, in OpenAI terms; the adapter translates as it needs. */
export interface UpstreamCall {
  endpoint: Endpoint
  /** OpenAI-format body, `model` already set to the upstream model name. */
  body: Record<string, unknown>
  stream: boolean
  key: ProviderKeyConfig
  /** Aborts when the client goes away or a timeout fires. */
  signal: AbortSignal
}

/**
 * A provider adapter: where to call, how to translate. `send` resolves to a response in
 * OpenAI's format (JSON, or SSE for streams) carrying the upstream's status and headers,
 * so generic code never asks which provider it is talking to.
 */
export interface ProviderAdapter {
  readonly type: string
  /** Endpoints this provider can serve. */
  readonly endpoints: ReadonlySet<Endpoint>
  send(call: UpstreamCall): Promise<Response>
}

/** Builds an adapter for one configured provider, once, at boot. */
export type AdapterFactory = (provider: ProviderConfig) => ProviderAdapter
