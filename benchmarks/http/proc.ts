/**
 * What a server process costs, read from /proc (Linux only): CPU time and resident memory.
 * Read from outside the process, so measuring does not disturb the server being measured.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'

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

/**
 * Whether `pid` itself holds a listening TCP socket on `port` (Linux: /proc/net/tcp{,6} and the
 * process's fds). With reusePort every process sharing a port has its own listening socket, so
 * this tells a freshly started one is up even while another already answers on the port.
 */
export function listensOn(pid: number, port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set<string>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, inode is the tenth field.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9])
    }
  }
  if (inodes.size === 0) return false
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return false
  }
  for (const fd of fds) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`)
      if (link.startsWith('socket:[') && inodes.has(link.slice(8, -1))) return true
    } catch {
      // closed meanwhile
    }
  }
  return false
}
