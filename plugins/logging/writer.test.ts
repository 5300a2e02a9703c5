import { describe, expect, test } from 'bun:test'
import { BoundedQueue } from './queue.ts'
import { BatchWriter, type BatchWriterOptions } from './writer.ts'

const OPTIONS: BatchWriterOptions = { queueSize: 1000, batchSize: 10, flushMs: 20, retryBaseMs: 10, retryMaxMs: 40, writeTimeoutMs: 1000 }

/** A sink that records batches and fails while `down` is true. */
function fakeSink() {
  const batches: number[][] = []
  const state = { down: false, calls: 0 }
  const sink = async (rows: number[]) => {
    state.calls++
    await Bun.sleep(1)
    if (state.down) throw new Error('database unreachable')
    batches.push(rows)
  }
  return { sink, batches, state, written: () => batches.flat() }
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out')
    await Bun.sleep(5)
  }
}

describe('BoundedQueue', () => {
  test('FIFO, bounded, peek leaves rows in place, shift removes them', () => {
    const q = new BoundedQueue<number>(3)
    expect([q.push(1), q.push(2), q.push(3), q.push(4)]).toEqual([true, true, true, false])
    expect(q.peek(2)).toEqual([1, 2])
    expect(q.size).toBe(3)
    q.shift(2)
    expect(q.peek(5)).toEqual([3])
    expect(q.push(5)).toBe(true)
    expect(q.clear()).toBe(2)
    expect(q.size).toBe(0)
  })

  test('stays correct across compactions', () => {
    const q = new BoundedQueue<number>(100_000)
    let next = 0
    let expected = 0
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 500; i++) q.push(next++)
      const got = q.peek(400)
      expect(got[0]).toBe(expected)
      expect(got[got.length - 1]).toBe(expected + got.length - 1)
      q.shift(got.length)
      expected += got.length
    }
    expect(q.size).toBe(next - expected)
  })
})

describe('BatchWriter', () => {
  test('writes full batches at once and the rest after flushMs, in order', async () => {
    const f = fakeSink()
    const w = new BatchWriter<number>(f.sink, OPTIONS)
    for (let i = 0; i < 25; i++) w.push(i)
    await until(() => f.written().length === 20)
    // The partial batch waits for its flush time.
    expect(f.batches.map((b) => b.length)).toEqual([10, 10])
    await until(() => f.written().length === 25)
    expect(f.written()).toEqual(Array.from({ length: 25 }, (_, i) => i))
    expect(w.written).toBe(25)
    await w.close(100)
  })

  test('a failing write keeps its rows and is retried with backoff until the sink is back; nothing lost or duplicated', async () => {
    const f = fakeSink()
    const failures: number[] = []
    let recovered = 0
    const w = new BatchWriter<number>(f.sink, OPTIONS, { failed: (_e, n) => failures.push(n), recovered: () => recovered++ })
    f.state.down = true
    for (let i = 0; i < 35; i++) w.push(i)
    await until(() => failures.length >= 4)
    expect(w.queue.size).toBe(35)
    expect(w.failing).toBe(true)
    // Backoff grows: attempts are spaced, not a busy loop.
    const callsWhileDown = f.state.calls
    expect(callsWhileDown).toBeLessThan(20)
    f.state.down = false
    await until(() => f.written().length === 35)
    expect(f.written()).toEqual(Array.from({ length: 35 }, (_, i) => i))
    expect(failures).toEqual(failures.map((_, i) => i + 1))
    expect(recovered).toBe(1)
    expect(w.errors).toBe(failures.length)
    await w.close(100)
  })

  test('a full queue drops the newest rows and counts them; the queued ones are written later', async () => {
    const f = fakeSink()
    const dropped: number[] = []
    const w = new BatchWriter<number>(f.sink, { ...OPTIONS, queueSize: 15 }, { dropped: (_r, n) => dropped.push(n) })
    f.state.down = true
    const accepted = Array.from({ length: 40 }, (_, i) => w.push(i))
    expect(accepted.filter(Boolean).length).toBe(15)
    expect(w.dropped.queue_full).toBe(25)
    expect(dropped.length).toBe(25)
    f.state.down = false
    await until(() => f.written().length === 15)
    expect(f.written()).toEqual(Array.from({ length: 15 }, (_, i) => i))
    await w.close(100)
  })

  test('close writes what waits (partial batches too) without waiting for flushMs', async () => {
    const f = fakeSink()
    const w = new BatchWriter<number>(f.sink, { ...OPTIONS, flushMs: 60_000 })
    for (let i = 0; i < 23; i++) w.push(i)
    await w.close(1000)
    expect(f.written()).toEqual(Array.from({ length: 23 }, (_, i) => i))
    expect(w.dropped.shutdown).toBe(0)
    // After close, rows are refused and counted.
    expect(w.push(99)).toBe(false)
    expect(w.dropped.shutdown).toBe(1)
  })

  test('a batch still being written when close times out is counted once: written when its write ends, dropped only if it fails', async () => {
    for (const fails of [false, true]) {
      let release = () => {}
      const written: number[] = []
      const slow = async (rows: number[]) => {
        await new Promise<void>((resolve) => (release = resolve))
        if (fails) throw new Error('database unreachable')
        written.push(...rows)
      }
      const w = new BatchWriter<number>(slow, { ...OPTIONS, batchSize: 10 })
      for (let i = 0; i < 15; i++) w.push(i)
      await until(() => w.queue.size === 15)
      await w.close(50)
      // The 5 rows behind the batch in flight are lost; the batch itself is not decided yet.
      expect(w.dropped.shutdown).toBe(5)
      release()
      await until(() => w.written + w.dropped.shutdown === 15)
      expect(w.written).toBe(fails ? 0 : 10)
      expect(w.dropped.shutdown).toBe(fails ? 15 : 5)
      expect(written.length).toBe(fails ? 0 : 10)
      expect(w.queue.size).toBe(0)
    }
  })

  test('close gives up after its timeout while the sink is down, and counts what it could not write', async () => {
    const f = fakeSink()
    const w = new BatchWriter<number>(f.sink, OPTIONS)
    f.state.down = true
    for (let i = 0; i < 12; i++) w.push(i)
    const started = performance.now()
    await w.close(150)
    expect(performance.now() - started).toBeLessThan(1000)
    // A batch whose write was under way at the deadline is counted when that write fails.
    await until(() => w.dropped.shutdown === 12)
    expect(w.queue.size).toBe(0)
  })

  test('a write that hangs past writeTimeoutMs fails and is retried', async () => {
    let calls = 0
    const written: number[] = []
    const sink = async (rows: number[], signal: AbortSignal) => {
      calls++
      if (calls === 1) {
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
      }
      written.push(...rows)
    }
    const w = new BatchWriter<number>(sink, { ...OPTIONS, writeTimeoutMs: 50 })
    for (let i = 0; i < 10; i++) w.push(i)
    await until(() => written.length === 10)
    expect(calls).toBe(2)
    expect(w.errors).toBe(1)
    await w.close(100)
  })
})
