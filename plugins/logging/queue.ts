/**
 * A FIFO with a hard bound, for rows waiting to be written. Rows leave it only once written:
 * the writer reads the head with `peek` and removes it with `shift` after the database took it,
 * so a failed write loses nothing. When it is full, `push` refuses the new row (drop-newest):
 * what already waits keeps its place and its order.
 */
export class BoundedQueue<T> {
  private items: T[] = []
  private head = 0

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`queue capacity must be a positive integer, got ${capacity}`)
  }

  get size(): number {
    return this.items.length - this.head
  }

  /** Add at the tail; false (and nothing added) when the queue is full. */
  push(item: T): boolean {
    if (this.size >= this.capacity) return false
    this.items.push(item)
    return true
  }

  /** The first `n` items (fewer when fewer wait), oldest first, left in place. */
  peek(n: number): T[] {
    const end = Math.min(this.items.length, this.head + n)
    return this.items.slice(this.head, end)
  }

  /** Remove the first `n` items. */
  shift(n: number): void {
    this.head = Math.min(this.items.length, this.head + n)
    // Compact now and then instead of on every shift: memory follows what waits, at amortised O(1).
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  /** Remove all but the first `keep` items; returns how many went. */
  truncate(keep: number): number {
    const n = Math.max(0, this.size - keep)
    this.items.length -= n
    return n
  }

  /** Remove everything; returns how many items there were. */
  clear(): number {
    const n = this.size
    this.items = []
    this.head = 0
    return n
  }
}
