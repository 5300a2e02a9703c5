import { expect } from 'bun:test'
import { ConfigError, loadConfig, type LoadOptions } from '../../src/config/load.ts'
import type { ConfigFile } from '../../src/config/schema.ts'
import { createGateway, type Gateway, type GatewayOptions } from '../../src/server.ts'
import { createLogger } from '../../src/lib/logger.ts'

export interface TestGateway {
  gateway: Gateway
  /** Base URL of the listening gateway, e.g. http://127.0.0.1:43121 */
  url: string
  close(): Promise<void>
}

/**
 * Boot a real gateway listening on 127.0.0.1 on a free port. The config object is used
 * as the config file would be; `env` adds variables (DATABASE_URL defaults to in-memory SQLite).
 */
export async function startGateway(
  config: ConfigFile & { plugins?: unknown[] },
  options: { env?: Record<string, string | undefined>; gateway?: GatewayOptions; listen?: boolean } = {},
): Promise<TestGateway> {
  const env: LoadOptions['env'] = { DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent', ...options.env }
  const resolved = await loadConfig({ config, env })
  const gateway = await createGateway(resolved, { logger: createLogger(resolved.logLevel), ...options.gateway })
  if (options.listen === false) return { gateway, url: 'http://localhost', close: () => gateway.close() }
  const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
  return { gateway, url: `http://127.0.0.1:${server.port}`, close: () => gateway.close() }
}

/** A config with one OpenAI-compatible provider at `baseUrl` serving `mock-gpt`. */
export function upstreamConfig(baseUrl: string, extra: Partial<ConfigFile> & { plugins?: unknown[] } = {}): ConfigFile & { plugins?: unknown[] } {
  return {
    providers: [{ id: 'up', type: 'openai-compatible', baseUrl, keys: [{ id: 'k1', secret: 'sk-upstream-secret-0123456789' }] }],
    models: [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] }],
    plugins: [],
    ...extra,
  }
}

/** The environment of a gateway started as its own process (`bun run src/main.ts` or `bun run start`): loopback, in-memory SQLite, a test admin key. */
export function processEnv(port: number, configPath: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: 'sqlite::memory:',
    SLUICE_CONFIG: configPath,
    SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789',
    ...extra,
  }
}

/** The problems of a config that must not boot (no plugins unless it names them); fails the test if it boots. */
export async function bootProblems(config: ConfigFile & { plugins?: unknown[] }): Promise<string[]> {
  const error = await loadConfig({ config: { plugins: [], ...config }, env: {} }).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}
