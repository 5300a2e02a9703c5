/**
 * How `bun run start` sets up Bun's memory allocator (mimalloc) for the gateway, before the
 * process starts (mimalloc reads its options once, at startup; nothing can change them later).
 *
 * MIMALLOC_PURGE_DELAY=-1: freed memory stays with the process instead of being handed back to
 * the OS ~10 ms after it is freed. A gateway frees and reuses request buffers thousands of times a
 * second; by default mimalloc's scavenger thread gave pages back and the serving thread faulted
 * them in again on the next request. Measured on the full stack (chat, 50 connections, see
 * benchmarks/README.md): 15-25 % more requests per second, about a quarter less CPU per request,
 * for an RSS that stays at its peak (about 15-25 MB more) instead of shrinking when load drops.
 * An operator who prefers the memory back sets MIMALLOC_PURGE_DELAY to a delay in ms (0 at once).
 */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: '-1' }

/** ALLOCATOR_ENV under what the caller's environment already sets (its own values win). */
export function allocatorEnv(env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(ALLOCATOR_ENV)) out[k] = env[k] ?? v
  return out
}
