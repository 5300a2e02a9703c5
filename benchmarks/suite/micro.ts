/**
 * Runs every micro-benchmark (benchmarks/micro/*.ts) as its own child process, one after the
 * other, and collects the `BENCH_JSON {...}` line each prints last. A file that fails its own
 * correctness checks exits non-zero; that is reported, never measured around.
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH_JSON_PREFIX, type BenchJson } from '../micro/lib/bench-json.ts'

const MICRO_DIR = new URL('../micro/', import.meta.url).pathname
/** Run first, in this order; files added later run after them, by name. */
const ORDER = ['key-verify', 'admission', 'tokens', 'sse', 'balance', 'balance-route']

/** One micro file's outcome. */
export interface MicroRun {
  file: string
  ok: boolean
  exitCode: number | null
  seconds: number
  report: BenchJson | null
  /** Why it has no report, when it has none. */
  problem: string | null
  /** The file's own output (mitata's tables), for the results JSON. */
  output: string
}

export function microFiles(filter: readonly string[]): string[] {
  const names = readdirSync(MICRO_DIR)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => f.slice(0, -3))
  const rank = (n: string) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length)
  const sorted = names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
  if (filter.length === 0) return sorted
  for (const f of filter) if (!names.includes(f)) throw new Error(`--micro: no benchmarks/micro/${f}.ts (have ${names.join(', ')})`)
  return sorted.filter((n) => filter.includes(n))
}

/** Arguments some files take to be shorter in a quick run. */
function argsFor(name: string, quick: boolean): string[] {
  if (name === 'admission') return quick ? ['--seconds', '1'] : []
  return []
}

export async function runMicro(files: readonly string[], opts: { quick: boolean; redisUrl: string | null; log: (m: string) => void }): Promise<MicroRun[]> {
  const runs: MicroRun[] = []
  for (const name of files) {
    const path = join(MICRO_DIR, `${name}.ts`)
    opts.log(`micro: ${name}…`)
    const started = performance.now()
    const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: '1' }
    if (opts.redisUrl !== null) env.REDIS_URL = opts.redisUrl
    if (opts.quick) env.BENCH_QUICK = '1'
    const proc = Bun.spawn(['bun', 'run', path, ...argsFor(name, opts.quick)], { stdout: 'pipe', stderr: 'pipe', env })
    const limitS = opts.quick ? 180 : 420
    const guard = setTimeout(() => proc.kill('SIGKILL'), limitS * 1000)
    const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
    clearTimeout(guard)
    const seconds = (performance.now() - started) / 1000
    const line = stdout.split('\n').findLast((l) => l.startsWith(BENCH_JSON_PREFIX))
    let report: BenchJson | null = null
    let problem: string | null = null
    if (exitCode !== 0) problem = `exited ${exitCode ?? proc.signalCode}${proc.signalCode === 'SIGKILL' ? ` (killed after ${limitS} s)` : ''}: ${(stderr.trim() || stdout.trim()).split('\n').slice(-6).join(' | ')}`
    else if (line === undefined) problem = 'printed no BENCH_JSON line'
    else {
      try {
        report = JSON.parse(line.slice(BENCH_JSON_PREFIX.length)) as BenchJson
      } catch (error) {
        problem = `BENCH_JSON line is not JSON: ${String(error)}`
      }
    }
    const output = `${stdout}${stderr ? `\n[stderr]\n${stderr}` : ''}`.replace(/\x1b\[[0-9;]*m/g, '')
    runs.push({ file: `benchmarks/micro/${name}.ts`, ok: problem === null, exitCode, seconds, report, problem, output: output.length > 20_000 ? output.slice(-20_000) : output })
    opts.log(problem === null ? `micro: ${name} done in ${seconds.toFixed(0)} s` : `micro: ${name} FAILED: ${problem}`)
  }
  return runs
}
