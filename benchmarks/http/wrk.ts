/**
 * Fixed-concurrency load with wrk: C connections, each sending the next request as soon as
 * the previous answer is complete. This finds maximum throughput; latencies here include
 * queueing, so the fixed-rate generator is the one to read latency from.
 */

/** Options of one wrk run. */
export interface WrkOptions {
  /** Full URL, e.g. `http://127.0.0.1:8080/v1/chat/completions`. */
  url: string
  /** File holding the JSON body to POST. */
  bodyFile: string
  apiKey?: string
  connections: number
  /** wrk threads; on a 2-core machine 1 leaves a core to the servers. */
  threads: number
  durationS: number
  /** Extra request headers, e.g. a peer gateway's routing headers. */
  headers?: Record<string, string>
  /**
   * Options of dynamic.lua (rotating API keys, a share of large bodies, counting one expected status);
   * when set, dynamic.lua runs instead of post.lua.
   */
  dynamic?: { keysFile?: string; largeBodyFile?: string; largeEvery?: number; expectStatus?: number }
}

/** What one wrk run measured. */
export interface WrkResult {
  requests: number
  durationS: number
  rps: number
  /** Responses with a status of 400 or more (wrk's "Non-2xx or 3xx"). */
  non2xx: number
  /** Socket errors: connect, read, write, timeout. */
  socketErrors: number
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
  /** With `dynamic.expectStatus`: answers with that status and with any other. */
  expected?: { status: number; matched: number; other: number }
}

interface WrkJson {
  requests: number
  duration_us: number
  errors: { connect: number; read: number; write: number; status: number; timeout: number }
  latency_us: { p50: number; p90: number; p99: number; max: number; mean: number }
  expected?: { status: number; matched: number; other: number }
}

const SCRIPT = new URL('./post.lua', import.meta.url).pathname
const DYNAMIC_SCRIPT = new URL('./dynamic.lua', import.meta.url).pathname

/** Whether wrk is on the PATH. */
export function hasWrk(): boolean {
  return Bun.which('wrk') !== null
}

/** Runs wrk once; throws if it fails or does not print its summary. */
export async function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const d = opts.dynamic
  const args = ['wrk', '-t', String(opts.threads), '-c', String(opts.connections), '-d', `${opts.durationS}s`, '--timeout', '10s', '-s', d === undefined ? SCRIPT : DYNAMIC_SCRIPT]
  if (opts.apiKey !== undefined) args.push('-H', `Authorization: Bearer ${opts.apiKey}`)
  for (const [name, value] of Object.entries(opts.headers ?? {})) args.push('-H', `${name}: ${value}`)
  args.push(opts.url, '--', opts.bodyFile)
  if (d?.keysFile !== undefined) args.push('keys', d.keysFile)
  if (d?.largeBodyFile !== undefined) args.push('large', d.largeBodyFile, String(d.largeEvery ?? 10))
  if (d?.expectStatus !== undefined) args.push('expect', String(d.expectStatus))
  const proc = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
  // wrk stops by itself after -d; the guard only covers a wedged process.
  const guard = setTimeout(() => proc.kill('SIGKILL'), (opts.durationS + 20) * 1000)
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(guard)
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '))
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (exit ${code}): ${stderr.trim() || stdout.trim()}`)
  const parsed = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson
  const durationS = parsed.duration_us / 1e6
  const ms = (us: number): number => us / 1000
  const e = parsed.errors
  return {
    requests: parsed.requests,
    durationS,
    rps: parsed.requests / durationS,
    non2xx: e.status,
    socketErrors: e.connect + e.read + e.write + e.timeout,
    latencyMs: {
      p50: ms(parsed.latency_us.p50),
      p90: ms(parsed.latency_us.p90),
      p99: ms(parsed.latency_us.p99),
      max: ms(parsed.latency_us.max),
      mean: ms(parsed.latency_us.mean),
    },
    ...(parsed.expected !== undefined && { expected: parsed.expected }),
  }
}
