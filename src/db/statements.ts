import { createQueryId, type CompiledQuery } from 'kysely'

/**
 * Statement sizes for `n` rows: full statements of `max`, then the remainder in powers of two
 * (437 → 256, 128, 32, 16, 4, 1). Every multi-row statement is then one of at most
 * log2(max) + 2 shapes, so each is compiled once and prepared-statement caches on both
 * dialects stay small and warm instead of holding one statement per length.
 */
export function chunkSizes(n: number, max: number): number[] {
  const sizes: number[] = []
  let left = n
  while (left >= max) {
    sizes.push(max)
    left -= max
  }
  while (left > 0) {
    const size = 2 ** Math.floor(Math.log2(left))
    sizes.push(size)
    left -= size
  }
  return sizes
}

const compiledByDb = new WeakMap<object, Map<string, CompiledQuery>>()

/**
 * The statement `name` of a database (or transaction), built and compiled by `build` the first
 * time it is asked for and kept as long as the database object lives. A name stands for one
 * statement shape: its parameters are bound per run with withParameters.
 */
export function compileOnce<R>(db: object, name: string, build: () => CompiledQuery<R>): CompiledQuery<R> {
  let byName = compiledByDb.get(db)
  if (byName === undefined) compiledByDb.set(db, (byName = new Map()))
  let statement = byName.get(name)
  if (statement === undefined) byName.set(name, (statement = build()))
  return statement as CompiledQuery<R>
}

/**
 * A compiled query run again with other parameters (as many, in the same places): building a
 * query through Kysely's builder and compiling it costs more than binding a flat array, so a
 * statement run over and over is compiled once. Not CompiledQuery.raw: it freezes the array,
 * which for thousands of parameters costs more than the statement.
 */
export function withParameters<R>(compiled: CompiledQuery<R>, parameters: readonly unknown[]): CompiledQuery<R> {
  if (parameters.length !== compiled.parameters.length) {
    throw new Error(`a statement compiled with ${compiled.parameters.length} parameters was given ${parameters.length}`)
  }
  return { query: compiled.query, queryId: createQueryId(), sql: compiled.sql, parameters }
}
