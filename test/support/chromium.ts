import { test } from 'bun:test'
import { existsSync } from 'node:fs'
import { isCi } from './services.ts'

/** Debian's Chromium, which the browser tests drive through playwright-core (`.ci/run` installs it). */
export const CHROMIUM = '/usr/bin/chromium'

/**
 * Whether Chromium is here for the browser tests of `file`. Without it they are skipped with a line
 * that says so, unless CI is set: then a failing test stands in for them.
 */
export function chromiumFor(file: string): boolean {
  if (existsSync(CHROMIUM)) return true
  const message = `${file}: Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)`
  if (isCi()) {
    test('Chromium is installed (required when CI is set)', () => {
      throw new Error(message)
    })
  } else {
    console.warn(`[skip] ${message}: the browser tests are skipped. With CI set this is a failure.`)
  }
  return false
}
