/**
 * The baseline: the least a Bun proxy can do. It forwards method, path, body stream,
 * content-type and authorization to an upstream and streams the answer back with its status
 * and content-type. Whatever the gateway costs beyond this row is the gateway's own cost.
 *
 *   bun run benchmarks/http/raw-proxy.ts --port 8081 --upstream http://127.0.0.1:9999
 *
 * `--upstream` is an origin (optionally with a path prefix); the incoming path is appended
 * as is, so `/v1/chat/completions` reaches `<upstream>/v1/chat/completions`.
 */
import { parseArgs } from 'node:util'

/** Options of {@link startRawProxy}. */
export interface RawProxyOptions {
  /** Origin the requests go to, e.g. `http://127.0.0.1:9999`. */
  upstream: string
  /** @default 0 (a free port) */
  port?: number
  /** @default '127.0.0.1' */
  hostname?: string
}

/** A running raw proxy. */
export interface RawProxy {
  /** `http://127.0.0.1:PORT` */
  url: string
  port: number
  stop(): Promise<void>
}

const FORWARDED_REQUEST_HEADERS = ['content-type', 'authorization', 'accept'] as const

/** Starts the pass-through proxy; resolves once it listens. */
export function startRawProxy(opts: RawProxyOptions): RawProxy {
  const upstream = opts.upstream.replace(/\/+$/, '')
  const server = Bun.serve({
    port: opts.port ?? 0,
    hostname: opts.hostname ?? '127.0.0.1',
    idleTimeout: 120,
    async fetch(req) {
      // Slicing the absolute URL is cheaper than building a URL object per request.
      const path = req.url.slice(req.url.indexOf('/', req.url.indexOf('//') + 2))
      if (path === '/health') return Response.json({ status: 'ok' })
      const headers = new Headers()
      for (const name of FORWARDED_REQUEST_HEADERS) {
        const value = req.headers.get(name)
        if (value !== null) headers.set(name, value)
      }
      let res: Response
      try {
        res = await fetch(upstream + path, { method: req.method, headers, body: req.body, signal: req.signal })
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        return Response.json({ error: { message: `raw proxy: upstream failed: ${message}`, type: 'api_error', param: null, code: 'upstream_error' } }, { status: 502 })
      }
      // Bun's fetch has already decoded any content-encoding, so only the content-type is passed on.
      return new Response(res.body, {
        status: res.status,
        headers: { 'content-type': res.headers.get('content-type') ?? 'application/octet-stream' },
      })
    },
  })
  const port = server.port ?? opts.port ?? 0
  return {
    url: `http://${server.hostname}:${port}`,
    port,
    async stop() {
      await server.stop(true)
    },
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      port: { type: 'string', default: '8081' },
      host: { type: 'string', default: '127.0.0.1' },
      upstream: { type: 'string' },
    },
  })
  if (values.upstream === undefined) {
    console.error('raw proxy: --upstream <origin> is required, e.g. --upstream http://127.0.0.1:9999')
    process.exit(2)
  }
  const proxy = startRawProxy({ port: Number(values.port), hostname: values.host, upstream: values.upstream })
  console.log(`raw proxy listening on ${proxy.url} -> ${values.upstream}`)
  const shutdown = (): void => {
    void proxy.stop().then(() => process.exit(0))
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}
