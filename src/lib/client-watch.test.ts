import { describe, expect, test } from 'bun:test'
import { ClientWatch, type ClientBound } from './client-watch.ts'

/** A watched call whose client is an AbortController of the test's. */
function call(): ClientBound & { client: AbortController; gone: number } {
  const client = new AbortController()
  return {
    client,
    gone: 0,
    clientSignal: client.signal,
    clientGone() {
      this.gone++
    },
  }
}

const ticks = (watch: ClientWatch, n: number) => Bun.sleep(n * 10 + 5).then(() => watch)

describe('ClientWatch', () => {
  test('a call whose client is gone is stopped once, at the next check, and no longer watched', async () => {
    const watch = new ClientWatch(10)
    const a = call()
    const b = call()
    watch.add(a)
    watch.add(b)
    a.client.abort()
    await ticks(watch, 3)
    expect(a.gone).toBe(1)
    expect(b.gone).toBe(0)
    expect(watch.size).toBe(1)
    watch.close()
  })

  test('a call deleted before its client leaves is never stopped', async () => {
    const watch = new ClientWatch(10)
    const a = call()
    watch.add(a)
    watch.delete(a)
    a.client.abort()
    await ticks(watch, 3)
    expect(a.gone).toBe(0)
    expect(watch.size).toBe(0)
    watch.close()
  })

  test('checks start again after the set ran empty and the interval stopped', async () => {
    const watch = new ClientWatch(10)
    const a = call()
    watch.add(a)
    a.client.abort()
    await ticks(watch, 3)
    // Empty for several checks: the interval has stopped itself.
    await ticks(watch, 3)
    const b = call()
    watch.add(b)
    b.client.abort()
    await ticks(watch, 3)
    expect([a.gone, b.gone]).toEqual([1, 1])
    watch.close()
  })

  test('close() forgets every call: none is stopped afterwards', async () => {
    const watch = new ClientWatch(10)
    const a = call()
    watch.add(a)
    watch.close()
    a.client.abort()
    await ticks(watch, 3)
    expect(a.gone).toBe(0)
    expect(watch.size).toBe(0)
  })
})
