import { afterAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gitInfo } from './report.ts'

describe('the commit a results file names', () => {
  const repo = mkdtempSync(join(tmpdir(), 'sluice-bench-git-'))
  const git = (...args: string[]) => {
    const out = Bun.spawnSync(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: repo })
    if (out.exitCode !== 0) throw new Error(out.stderr.toString())
    return out.stdout.toString().trim()
  }
  afterAll(() => rmSync(repo, { recursive: true, force: true }))

  test("the benchmarks' own outputs do not mark the checkout dirty; a change to anything else does", () => {
    git('init', '-q')
    mkdirSync(join(repo, 'src'))
    mkdirSync(join(repo, 'benchmarks/results'), { recursive: true })
    writeFileSync(join(repo, 'src/a.ts'), 'export const a = 1\n')
    writeFileSync(join(repo, 'benchmarks/README.md'), '# Benchmarks\n')
    git('add', '.')
    git('commit', '-qm', 'one')
    const head = git('rev-parse', 'HEAD')
    expect(gitInfo(repo)).toEqual({ commit: head, dirty: false })
    // What an earlier run left: its results files, and the README's results section rewritten.
    writeFileSync(join(repo, 'benchmarks/results/suite-x.json'), '{}\n')
    writeFileSync(join(repo, 'benchmarks/results/suite-x.md'), '# x\n')
    writeFileSync(join(repo, 'benchmarks/README.md'), '# Benchmarks\n\nresults\n')
    expect(gitInfo(repo)).toEqual({ commit: head, dirty: false })
    writeFileSync(join(repo, 'src/b.ts'), 'export const b = 2\n')
    expect(gitInfo(repo).dirty).toBe(true)
    rmSync(join(repo, 'src/b.ts'))
    writeFileSync(join(repo, 'src/a.ts'), 'export const a = 2\n')
    expect(gitInfo(repo).dirty).toBe(true)
  })
})
