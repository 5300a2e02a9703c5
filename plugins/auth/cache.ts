/**
 * A bounded map with per-entry expiry and least-recently-used eviction. A Map keeps
 * insertion order, so re-inserting on a hit moves an entry to the young end and the
 * oldest entry is always first.
 */
export class LruCache<V> {
  private readonly map = new Map<string, { value: V; expires: number }>()

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
    // Refreshing recency costs a delete and a set; skip it for the youngest entries would need a second structure.
    this.map.delete(key)
    this.map.set(key, entry)
    return entry.value
  }

  set(key: string, value: V, ttlMs: number): void {
    this.map.delete(key)
    this.map.set(key, { value, expires: this.now() + ttlMs })
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value
      if (oldest !== undefined) this.map.delete(oldest)
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
