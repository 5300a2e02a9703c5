import { writeSync } from 'node:fs'

/** Log levels, lowest first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface Logger {
  readonly level: LogLevel
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  /** Whether a level would be written; lets callers skip building fields. */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean
}

export const isLogLevel = (value: string): value is LogLevel => (LOG_LEVELS as readonly string[]).includes(value)

/** JSON lines on stdout (stderr for warn and error), one object per event, written through {@link defaultLogWriter}. */
export function createLogger(level: LogLevel, write: (line: string, level: LogLevel) => void = defaultWrite): Logger {
  const threshold = LOG_LEVELS.indexOf(level)
  const enabled = (l: Exclude<LogLevel, 'silent'>) => LOG_LEVELS.indexOf(l) >= threshold
  const emit = (l: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
    if (!enabled(l)) return
    write(JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...fields }), l)
  }
  return {
    level,
    enabled,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  }
}

/** Options of {@link BufferedLineWriter}. */
export interface LineWriterOptions {
  /** Write out at least this often while lines wait. @default 25 */
  flushMs?: number
  /** Write out at once when this many bytes wait. @default 65536 */
  flushBytes?: number
  /** Lines waiting (while the stream does not drain) are dropped beyond this, and counted. @default 16777216 */
  maxPendingBytes?: number
}

/** A writable the writer drains into: `process.stdout` and `process.stderr` in production. */
export interface LineSink {
  write(chunk: string): boolean
  once(event: 'drain', listener: () => void): unknown
  /** A failed write (a pipe whose reader is gone: EPIPE) is told here; unheard, it ends the process. */
  on(event: 'error', listener: (error: Error) => void): unknown
}

/**
 * Lines collected and written in one `write` per flush, so a burst of request logs costs a
 * few writes rather than one system call a line, and a slow reader (a full pipe) never
 * stalls the gateway: lines wait, bounded, and past the bound they are dropped and counted
 * (`dropped`, shown on /metrics as `sluice_log_lines_dropped_total`). What still waits when
 * the process exits is written synchronously then.
 */
export class BufferedLineWriter {
  private pending: string[] = []
  private pendingBytes = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private blocked = false
  /** The stream failed (its reader is gone): what waits, and every line after, is dropped and counted. */
  private broken = false
  /** Lines dropped because the stream did not keep up. */
  dropped = 0
  private readonly flushMs: number
  private readonly flushBytes: number
  private readonly maxPendingBytes: number

  constructor(
    private readonly sink: LineSink,
    private readonly fd: number | null,
    options: LineWriterOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 25
    this.flushBytes = options.flushBytes ?? 64 * 1024
    this.maxPendingBytes = options.maxPendingBytes ?? 16 * 1024 * 1024
    // The gateway serves on without its log: a closed stdout must not end it. The chunk being
    // written when it failed is lost with it (not counted: its lines are no longer known here).
    sink.on('error', () => {
      this.broken = true
      this.blocked = false
      this.dropped += this.pending.length
      this.pending = []
      this.pendingBytes = 0
    })
  }

  write(line: string): void {
    if (this.broken || this.pendingBytes + line.length + 1 > this.maxPendingBytes) {
      this.dropped++
      return
    }
    this.pending.push(line)
    this.pendingBytes += line.length + 1
    if (this.blocked) return
    if (this.pendingBytes >= this.flushBytes) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.flushMs)
      this.timer.unref?.()
    }
  }

  /** Hand what waits to the stream now (unless it asked us to wait for `drain`). */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.blocked || this.broken || this.pending.length === 0) return
    const chunk = this.pending.join('\n') + '\n'
    this.pending = []
    this.pendingBytes = 0
    if (!this.sink.write(chunk)) {
      this.blocked = true
      this.sink.once('drain', () => {
        this.blocked = false
        if (this.pending.length) this.flush()
      })
    }
  }

  /** At exit: write what waits with a blocking write, since no event loop turn is left. */
  flushSync(): void {
    if (this.broken || this.pending.length === 0) return
    const chunk = this.pending.join('\n') + '\n'
    this.pending = []
    this.pendingBytes = 0
    try {
      if (this.fd !== null) writeSync(this.fd, chunk)
      else this.sink.write(chunk)
    } catch {
      // The stream is gone (a closed pipe): nothing is left to tell.
    }
  }
}

let stdoutWriter: BufferedLineWriter | undefined
let stderrWriter: BufferedLineWriter | undefined

/** The process-wide writers behind the default logger: stdout for debug and info, stderr for warn and error. */
export function defaultLogWriter(): { stdout: BufferedLineWriter; stderr: BufferedLineWriter } {
  if (!stdoutWriter || !stderrWriter) {
    stdoutWriter = new BufferedLineWriter(process.stdout, 1)
    stderrWriter = new BufferedLineWriter(process.stderr, 2)
    process.once('exit', () => {
      stdoutWriter?.flushSync()
      stderrWriter?.flushSync()
    })
  }
  return { stdout: stdoutWriter, stderr: stderrWriter }
}

function defaultWrite(line: string, level: LogLevel): void {
  const writers = defaultLogWriter()
  if (level === 'warn' || level === 'error') writers.stderr.write(line)
  else writers.stdout.write(line)
}
