import { describe, expect, test } from 'bun:test'
import { within } from './within.ts'

describe('within', () => {
  test("a promise that settles in time gives its own value or rejection; late() is not called", async () => {
    let calls = 0
    const late = () => {
      calls++
      return new Error('late')
    }
    expect(await within(Promise.resolve(7), 50, late)).toBe(7)
    const own = new Error('own')
    await expect(within(Promise.reject(own), 50, late)).rejects.toBe(own)
    await Bun.sleep(80)
    expect(calls).toBe(0)
  })

  test("one that does not is rejected with late()'s answer, and what it does later changes nothing", async () => {
    const { promise, resolve } = Promise.withResolvers<number>()
    const marker = new Error('too slow')
    const bounded = within(promise, 10, () => marker)
    await expect(bounded).rejects.toBe(marker)
    await Bun.sleep(30)
    resolve(1)
    await expect(bounded).rejects.toBe(marker)
  })
})
