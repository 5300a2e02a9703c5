import { describe, expect, test } from 'bun:test'
import { sql } from 'kysely'
import { createDatabase } from './index.ts'
import { chunkSizes, compileOnce, withParameters } from './statements.ts'

describe('chunkSizes', () => {
  test('full statements, then powers of two: few statement shapes', () => {
    expect(chunkSizes(0, 500)).toEqual([])
    expect(chunkSizes(500, 500)).toEqual([500])
    expect(chunkSizes(437, 500)).toEqual([256, 128, 32, 16, 4, 1])
    expect(chunkSizes(1001, 500)).toEqual([500, 500, 1])
    const shapes = new Set<number>()
    for (let n = 1; n <= 1500; n++) {
      const sizes = chunkSizes(n, 500)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(n)
      for (const s of sizes) shapes.add(s)
    }
    expect(shapes.size).toBeLessThanOrEqual(10)
  })
})

describe('withParameters', () => {
  test('runs a compiled statement with new values, and refuses a different count', async () => {
    const handle = await createDatabase('sqlite://:memory:')
    try {
      const compiled = sql<{ a: string; b: number }>`select ${''} as a, ${0} as b`.compile(handle.db)
      const rows = (await handle.db.executeQuery(withParameters(compiled, ['x', 7]))).rows
      expect(rows).toEqual([{ a: 'x', b: 7 }])
      expect((await handle.db.executeQuery(withParameters(compiled, ['y', 8]))).rows).toEqual([{ a: 'y', b: 8 }])
      expect(() => withParameters(compiled, ['only one'])).toThrow('compiled with 2 parameters was given 1')
    } finally {
      await handle.close()
    }
  })
})

describe('compileOnce', () => {
  test('builds a statement once per database object and name', async () => {
    const a = await createDatabase('sqlite://:memory:')
    const b = await createDatabase('sqlite://:memory:')
    try {
      let builds = 0
      const build = (db: typeof a.db) => () => {
        builds++
        return sql<{ v: number }>`select ${0} as v`.compile(db)
      }
      const first = compileOnce(a.db, 'test.select', build(a.db))
      expect(compileOnce(a.db, 'test.select', build(a.db))).toBe(first)
      expect(builds).toBe(1)
      expect(compileOnce(a.db, 'test.other', build(a.db))).not.toBe(first)
      expect(compileOnce(b.db, 'test.select', build(b.db))).not.toBe(first)
      expect(builds).toBe(3)
      expect((await b.db.executeQuery(withParameters(compileOnce(b.db, 'test.select', build(b.db)), [5]))).rows).toEqual([{ v: 5 }])
      expect(builds).toBe(3)
    } finally {
      await a.close()
      await b.close()
    }
  })
})
