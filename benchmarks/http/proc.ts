/**
 * What a server process costs, read from /proc (Linux only): CPU time and resident memory.
 * Read from outside the process, so measuring does not disturb the server being measured.
 */
import { readFileSync } from 'node:fs'

let clockTicks: number | undefined

/** Kernel clock ticks per second (`getconf CLK_TCK`), the unit of utime and stime. */
export function clockTicksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks
  const out = Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()
  const parsed = Number(out)
  clockTicks = Number.isFinite(parsed) && parsed > 0 ? parsed : 100
  return clockTicks
}

/** User + system CPU time of `pid` (all its threads), in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces and parentheses; fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return ((utime + stime) * 1_000_000) / clockTicksPerSecond()
}

/** Resident set size of `pid` in KiB (VmRSS), or 0 if the process is gone. */
export function rssKib(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** Samples VmRSS every `intervalMs` until stopped; `stop()` returns the peak in KiB. */
export function sampleRss(pid: number, intervalMs = 100): { stop(): number } {
  let peak = rssKib(pid)
  const timer = setInterval(() => {
    peak = Math.max(peak, rssKib(pid))
  }, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      return Math.max(peak, rssKib(pid))
    },
  }
}
