/**
 * `bun run start`: the gateway under the memory profile SLUICE_MEMORY names (src/lib/memory.ts).
 * Bun reads those variables only when a process starts, so when the environment lacks one of them
 * this process replaces itself (execve: the same pid, nothing left behind to supervise) with
 * `bun run src/main.ts` under the completed environment. Otherwise it runs the gateway itself.
 */
import { fileURLToPath } from 'node:url'
import { memoryEnv } from './lib/memory.ts'

let wanted: Record<string, string>
try {
  wanted = memoryEnv()
} catch (error) {
  console.error(`sluice: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(2)
}

const unset = Object.entries(wanted).some(([k, v]) => process.env[k] !== v)
if (unset && typeof process.execve === 'function') {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url))
  try {
    process.execve(process.execPath, [process.execPath, 'run', main, ...process.argv.slice(2)], { ...process.env, ...wanted })
  } catch (error) {
    // The gateway still starts, under Bun's own settings; its boot line shows what is in force.
    console.error(`sluice: could not restart with the memory settings ${JSON.stringify(wanted)}: ${error instanceof Error ? error.message : String(error)}`)
  }
}
await import('./main.ts')
