import { ConfigError, loadConfig, missingFallbacks } from './config/load.ts'
import { MEMORY_PROFILES, memoryProfile } from './lib/memory.ts'
import { resolvePlugins } from './plugin-loader.ts'
import { createGateway } from './server.ts'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'

const USAGE = `Usage: bun run start

Runs the gateway. It takes no arguments: it is configured by its environment and
its config file (README.md, "Configuration"):

  SLUICE_CONFIG        config file (default ./sluice.config.ts, then ./sluice.config.json)
  PORT, HOST           listen address (default 8080, 0.0.0.0)
  DATABASE_URL         sqlite://PATH, sqlite::memory: or postgres://... (default sqlite://./data/sluice.db)
  REDIS_URL            shared limits and messages between instances (default: in-process)
  SLUICE_ENV           the environment it serves (default dev)
  SLUICE_ADMIN_KEY     the admin key (default: generated on first start, printed once)
  SLUICE_ENCRYPTION_KEY, SLUICE_ENCRYPTION_KEY_PREVIOUS, SLUICE_TLS_CERT, SLUICE_TLS_KEY,
  SLUICE_REUSE_PORT, LOG_LEVEL
  SLUICE_MEMORY        memory profile bun run start applies: fast (default) or lean, which sets
                       MIMALLOC_PURGE_DELAY and BUN_JSC_heapGrowthMaxIncrease (a value you set wins)

  --help     show this text`

/**
 * The gateway takes no arguments: `--help` prints the usage (exit 0), anything else is refused
 * with it (exit 2), before anything is created or a one-time key printed. Returns only when there are none.
 */
function refuseArguments(args: readonly string[]): void {
  if (args.length === 0) return
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE)
    process.exit(0)
  }
  console.error(`sluice: unknown argument ${args.join(' ')}; the gateway is configured by its environment and config file\n\n${USAGE}`)
  process.exit(2)
}

/** `bun run start`: load config, boot, listen, and stop cleanly on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  refuseArguments(process.argv.slice(2))
  let config
  try {
    // Plugins are resolved with the config: one that cannot be used is a config problem, found before anything is opened.
    config = await loadConfig({ resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS) })
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`sluice: ${error.message}`)
      process.exit(2)
    }
    throw error
  }
  let profile
  try {
    profile = memoryProfile()
  } catch (error) {
    console.error(`sluice: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(2)
  }
  const reusePort = config.reusePort
  // Before the database is created and the one-time keys printed: they would go out with a boot that cannot serve.
  // With reusePort, another gateway on the port is the point.
  if (!reusePort) {
    try {
      Bun.serve({ port: config.port, hostname: config.host, fetch: () => new Response(null, { status: 503 }) }).stop(true)
    } catch (error) {
      console.error(`sluice: ${listenFailure(error, config.host, config.port)}`)
      process.exit(1)
    }
  }
  const gateway = await createGateway(config)
  let server
  try {
    server = gateway.listen({ reusePort })
  } catch (error) {
    console.error(`sluice: ${listenFailure(error, config.host, config.port)}`)
    await gateway.close().catch(() => undefined)
    process.exit(1)
  }
  gateway.logger.info('sluice listening', {
    // An IPv6 address is bracketed in a URL (http://[::1]:8080).
    url: `${config.tls ? 'https' : 'http'}://${server.hostname?.includes(':') ? `[${server.hostname}]` : server.hostname}:${server.port}`,
    environment: config.environment,
    database: gateway.services.db.url,
    redis: config.redisUrl ? 'configured' : 'in-process',
    plugins: gateway.plugins.map((p) => p.name),
    models: gateway.models.list().map((m) => m.name),
    pid: process.pid,
    // Set before the process started, by `bun run start` unless given (src/lib/memory.ts).
    memory_profile: profile,
    allocator_purge_delay: process.env.MIMALLOC_PURGE_DELAY ?? 'mimalloc default',
    heap_growth_max_increase: process.env.BUN_JSC_heapGrowthMaxIncrease ?? 'Bun default',
  })
  for (const [model, fallback] of missingFallbacks(gateway.models.list())) {
    gateway.logger.warn(`model "${model}" falls back to "${fallback}", which is not a model here: the fallback is skipped until a model of that name is added (POST /admin/models)`, { model, fallback })
  }
  // Started some other way than `bun run start` (src/start.ts), a chosen profile's variables may be missing.
  const settings: Readonly<Record<string, string>> = MEMORY_PROFILES[profile]
  const missing = Object.keys(settings).filter((k) => process.env[k] === undefined)
  if (process.env.SLUICE_MEMORY && missing.length > 0) {
    gateway.logger.warn(`SLUICE_MEMORY=${profile} is not in force: ${missing.join(' and ')} must be in the environment the process starts with (bun run start sets them)`, {
      expected: Object.fromEntries(missing.map((k) => [k, settings[k]])),
    })
  }

  let stopping = false
  let stoppedAt = 0
  const stop = async (signal: string) => {
    if (stopping) {
      // The first signal again, passed on by `bun run` (or sent to the process group twice): the same stop.
      if (performance.now() - stoppedAt < SAME_STOP_MS) return
      // A second signal: the requests still in flight are cut off now, not at the end of the grace.
      gateway.logger.info('shutting down now', { signal })
      gateway.hurry()
      return
    }
    stopping = true
    stoppedAt = performance.now()
    gateway.logger.info('shutting down', { signal, grace_ms: config.shutdownGraceMs })
    try {
      await gateway.close()
      process.exit(0)
    } catch (error) {
      gateway.logger.error('shutdown failed', { error: String(error) })
      process.exit(1)
    }
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

/**
 * A signal this soon after the first is the same stop, not a second one: Ctrl-C in a terminal, or
 * a service manager that signals every process of the service (systemd's default), reaches the
 * gateway directly and again through the `bun run start` that started it, which passes signals on
 * to its child, a few ms apart. A second signal meant as one comes later than this.
 */
const SAME_STOP_MS = 1000

/** Why the server could not listen, naming the address (Bun's own message does not name the host). */
function listenFailure(error: unknown, host: string, port: number): string {
  const code = (error as { code?: unknown } | null)?.code
  if (code === 'EADDRINUSE') return `port ${port} on ${host} is in use (another process listens there); stop it, or set PORT to a free port`
  if (code === 'EADDRNOTAVAIL') return `cannot listen on ${host}: not an address of this machine; set HOST to one (0.0.0.0 for every IPv4 address)`
  if (code === 'EACCES') return `port ${port} on ${host} needs privileges this process does not have; set PORT to 1024 or above`
  return `cannot listen on port ${port} on ${host}: ${error instanceof Error ? error.message : String(error)}`
}

main().catch((error: unknown) => {
  console.error('sluice: failed to start:', error instanceof Error ? error.message : error)
  process.exit(1)
})
