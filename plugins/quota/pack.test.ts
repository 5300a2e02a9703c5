/**
 * The MessagePack writer against the reader that matters: Redis' own cmsgpack, through a script
 * that unpacks an argument and answers each value back (numbers as text at full precision).
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { Redis } from 'ioredis'
import { redisUrlForTests } from '../../test/support/services.ts'
import { PackWriter } from './pack.ts'

const VALUES: (number | string)[] = [
  0, 1, 127, 128, 255, 256, -1, -32, -33, -129, 65_535, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1,
  1_798_761_600_000, 1e15, 1e18, 2 ** 53, 0.5, -0.25, 1666.6666666666667, 10 / 60_000, -0, 1e-300,
  '', 'b', 'req_01JDZ3XW8Q4V7M2N', 'é€😀', 'x'.repeat(255), 'y'.repeat(256), 'z'.repeat(70_000),
]

describe('PackWriter', () => {
  test('an array header, then each value in its smallest exact form', () => {
    const w = new PackWriter(8)
    w.begin()
    w.number(5)
    w.number(-3)
    w.number(300)
    w.string('ab')
    w.raw(PackWriter.pack([1, 2]), 2)
    const bytes = [...w.finish()]
    expect(bytes).toEqual([0xdd, 0, 0, 0, 6, 5, 0xfd, 0xd2, 0, 0, 1, 0x2c, 0xd9, 2, 0x61, 0x62, 1, 2])
  })

  test('grows past its first buffer and starts over on begin', () => {
    const w = new PackWriter(8)
    w.begin()
    for (let i = 0; i < 1000; i++) w.number(i + 0.5)
    expect(w.finish().length).toBe(5 + 1000 * 9)
    w.begin()
    w.number(1)
    expect([...w.finish()]).toEqual([0xdd, 0, 0, 0, 1, 1])
  })
})

const redisUrl = await redisUrlForTests('plugins/quota/pack.test.ts')

describe.skipIf(redisUrl === null)("Redis' cmsgpack reads what it writes", () => {
  const client = redisUrl === null ? null : new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  afterAll(() => client?.disconnect())

  test('every number exactly and every string byte for byte', async () => {
    const w = new PackWriter(16)
    w.begin()
    for (const v of VALUES) {
      if (typeof v === 'number') w.number(v)
      else w.string(v)
    }
    const echo = `local A = cmsgpack.unpack(ARGV[1])
local out = {}
for i = 1, #A do
  local v = A[i]
  if type(v) == 'number' then out[i] = string.format('%.17g', v) else out[i] = 's:' .. v end
end
return out`
    const reply = (await client!.eval(echo, 0, w.finish())) as string[]
    expect(reply.length).toBe(VALUES.length)
    for (let i = 0; i < VALUES.length; i++) {
      const v = VALUES[i]!
      if (typeof v === 'string') expect(reply[i]).toBe(`s:${v}`)
      else expect(Number(reply[i])).toBe(v)
    }
  })
})
