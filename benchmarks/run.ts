/**
 * `bun run bench`: the benchmark entry. For now it runs the HTTP load benchmark
 * (benchmarks/http/run.ts); micro-benchmarks (benchmarks/micro/, mitata) will be added here.
 * All flags are passed through; see benchmarks/README.md.
 */
import { main as runHttp } from './http/run.ts'

process.exit(await runHttp(Bun.argv.slice(2)))
