/**
 * A bounded map with per-entry expiry and second-chance eviction (an approximation of
 * least-recently-used). A hit only sets a flag, which is cheaper than moving the entry;
 * eviction walks from the oldest insertion and spares, once, entries hit since.
 */
export class LruCache<V> {
  private readonly map = new Map<string, { value: V; expires: number; hit: boolean }>()

  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): V | undefined {
    const entry = this.map.get(key)
    if (!entry) return undefined
    if (entry.expires <= this.now()) {
      this.map.delete(key)
      return undefined
    }
    entry.hit = true
    return entry.value
  }

  set(key: string, value: V, ttlMs: number): void {
    this.map.delete(key)
    this.map.set(key, { value, expires: this.now() + ttlMs, hit: false })
    if (this.map.size > this.capacity) this.evictOne()
  }

  /** Remove the oldest entry not hit since it was last spared; spared entries move to the young end. */
  private evictOne(): void {
    // Bounded: after one pass every entry's flag is clear, so the loop ends within capacity + 1 steps.
    for (const [key, entry] of this.map) {
      this.map.delete(key)
      if (!entry.hit) return
      entry.hit = false
      this.map.set(key, entry)
    }
  }

  delete(key: string): void {
    this.map.delete(key)
  }

  clear(): void {
    this.map.clear()
  }

  get size(): number {
    return this.map.size
  }
}
