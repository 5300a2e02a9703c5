/**
 * The gateway as an operator starts it: `bun run src/main.ts` as its own process in a folder of
 * its own, run until it logs "sluice listening" (then stopped) or exits by itself. The boot line is
 * an info line: a LOG_LEVEL above info hides it, and the boot then runs until the timeout.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'

export const ROOT = resolve(import.meta.dir, '../..')

export interface BootResult {
  /** The exit code when the process stopped by itself; null when it listened (and was stopped). */
  code: number | null
  stdout: string
  stderr: string
  /** The folder it ran in. */
  dir: string
  /** The boot line's fields when it listened. */
  listening: Record<string, unknown> | null
}

export interface BootOptions {
  /** Files to write in the folder, by relative path. */
  files?: Record<string, string>
  /** Variables over a minimal environment (PATH, HOME and LOG_LEVEL info); undefined leaves one out. */
  env?: Record<string, string | undefined>
  /** Run while the gateway listens, before it is stopped. */
  whileUp?: (url: string, output: () => string) => Promise<void>
  /** Reuse a folder (a second boot on the same data). */
  dir?: string
  timeoutMs?: number
}

/** Boots once; the environment is PATH, HOME and `env` only, so no variable of the test's own leaks in. */
export async function bootProcess(options: BootOptions = {}): Promise<BootResult> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sluice-boot-'))
  for (const [path, text] of Object.entries(options.files ?? {})) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), text)
  }
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir, LOG_LEVEL: 'info' }
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  const proc = Bun.spawn([process.execPath, 'run', join(ROOT, 'src/main.ts')], { cwd: dir, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  const out = { stdout: '', stderr: '' }
  const collect = async (stream: ReadableStream<Uint8Array>, into: 'stdout' | 'stderr') => {
    const decoder = new TextDecoder()
    for await (const chunk of stream) out[into] += decoder.decode(chunk, { stream: true })
  }
  const reading = Promise.all([collect(proc.stdout, 'stdout'), collect(proc.stderr, 'stderr')])
  const deadline = Date.now() + (options.timeoutMs ?? 20_000)
  let listening: Record<string, unknown> | null = null
  while (proc.exitCode === null && Date.now() < deadline) {
    const line = out.stdout.split('\n').find((l) => l.includes('"sluice listening"'))
    if (line) {
      listening = JSON.parse(line) as Record<string, unknown>
      break
    }
    await Bun.sleep(25)
  }
  if (listening && options.whileUp) {
    const url = String(listening.url)
    try {
      await options.whileUp(url, () => out.stdout + out.stderr)
    } finally {
      proc.kill('SIGTERM')
    }
  } else if (proc.exitCode === null) {
    proc.kill(listening ? 'SIGTERM' : 'SIGKILL')
  }
  const code = await proc.exited
  await reading
  return { code: listening ? null : code, stdout: out.stdout, stderr: out.stderr, dir, listening }
}
