/**
 * How `bun run start` sets up Bun's memory for the gateway, before the process starts: mimalloc
 * and JavaScriptCore read these variables once, at startup, and nothing can change them later.
 * `SLUICE_MEMORY` picks a profile; a variable the environment already sets wins over the profile.
 *
 * `fast` (the default): MIMALLOC_PURGE_DELAY=-1, freed memory stays with the process instead of
 * being handed back to the OS ~10 ms after it is freed. A gateway frees and reuses request buffers
 * thousands of times a second; by default mimalloc's scavenger thread gave pages back and the
 * serving thread faulted them in again on the next request. Measured on the full stack (chat, 50
 * connections, see benchmarks/README.md): 15-25 % more requests per second, about a quarter less
 * CPU per request, for an RSS that stays at its peak instead of shrinking when load drops. The
 * JavaScript heap keeps Bun's growth rule: about three times its live size between full
 * collections on a machine with 16 GB or more.
 *
 * `lean`: freed memory goes back to the OS (mimalloc's own 10 ms), and the heap may grow only 30 %
 * past its live size before a full collection (BUN_JSC_heapGrowthMaxIncrease=0.3). Together, not
 * either alone, they halve the RSS: measured with 100,000 keys in Postgres and load over 10,000 of
 * them, a peak of 141-148 MB against 266-288. The price is CPU on the collector's and the
 * allocator's threads, fewer requests a second at saturation (benchmarks/README.md).
 */
export const MEMORY_PROFILES = {
  fast: { MIMALLOC_PURGE_DELAY: '-1' },
  lean: { MIMALLOC_PURGE_DELAY: '10', BUN_JSC_heapGrowthMaxIncrease: '0.3' },
} as const satisfies Record<string, Readonly<Record<string, string>>>

export type MemoryProfile = keyof typeof MEMORY_PROFILES

export const DEFAULT_MEMORY_PROFILE: MemoryProfile = 'fast'

/** Every variable some profile sets. */
export const MEMORY_VARIABLES: readonly string[] = [...new Set(Object.values(MEMORY_PROFILES).flatMap((vars) => Object.keys(vars)))]

/** The profile SLUICE_MEMORY names; throws with the accepted values on anything else. */
export function memoryProfile(env: Record<string, string | undefined> = process.env): MemoryProfile {
  const raw = env.SLUICE_MEMORY?.trim()
  if (raw === undefined || raw === '') return DEFAULT_MEMORY_PROFILE
  if (raw in MEMORY_PROFILES) return raw as MemoryProfile
  throw new Error(`SLUICE_MEMORY must be one of ${Object.keys(MEMORY_PROFILES).join(', ')} (got "${raw}")`)
}

/** The profile's variables under what the caller's environment already sets (its own values win): what `bun run start` runs the gateway with. */
export function memoryEnv(env: Record<string, string | undefined> = process.env, profile: MemoryProfile = memoryProfile(env)): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(MEMORY_PROFILES[profile])) out[k] = env[k] ?? v
  return out
}
