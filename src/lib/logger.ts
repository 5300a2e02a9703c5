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

/** JSON lines on stdout (stderr for warn and error), one object per event. */
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

function defaultWrite(line: string, level: LogLevel): void {
  if (level === 'warn' || level === 'error') process.stderr.write(line + '\n')
  else process.stdout.write(line + '\n')
}
