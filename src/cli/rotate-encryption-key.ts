/**
 * `bun run rotate-encryption-key`: re-seal every stored provider secret under a new master key.
 *
 *   SLUICE_ENCRYPTION_KEY_PREVIOUS=<old key> SLUICE_ENCRYPTION_KEY=<new key> bun run rotate-encryption-key
 *
 * Provider key secrets and providers' sealed header values and base URLs are re-sealed alike. Only the
 * per-secret data keys are re-sealed; the secrets' own ciphertext is kept. Headers and a base URL with
 * a credential that an older version stored in plain text are sealed under the new key (a deleted
 * provider's URL is masked and its settings dropped, as a delete does now). Rows
 * already under the new key are left alone, so the command can be run again safely. Start
 * the gateways with the new key (and the old one in SLUICE_ENCRYPTION_KEY_PREVIOUS until
 * this has run), then drop the old one. Gateways may change providers meanwhile: a row is
 * written only if it still holds what was read, and one changed in between is read again.
 *
 * It works on the database the gateway uses: `DATABASE_URL`, else `database.url` in the config
 * file (`SLUICE_CONFIG`, else ./sluice.config.ts or ./sluice.config.json), else the default.
 *
 * Exit codes: 0 done (or --help), 1 the database could not be opened or the rotation failed, 2 bad
 * arguments, bad keys or a bad config file.
 */
import { maskBaseUrl, resealProvider } from '../catalog.ts'
import { ConfigError, encryptionKeyProblems, loadDatabaseUrl } from '../config/load.ts'
import { describeError } from '../db/errors.ts'
import { DEFAULT_DATABASE_URL, createDatabase, type DatabaseHandle } from '../db/index.ts'
import { migrateToLatest } from '../db/migrate.ts'
import { envelopeKeyId, masterKey, rewrapSecret, type MasterKey } from '../lib/secrets.ts'

const USAGE = `Usage: SLUICE_ENCRYPTION_KEY=<new key> SLUICE_ENCRYPTION_KEY_PREVIOUS=<old key>[,<older key>...] bun run rotate-encryption-key

Re-seals the provider secrets (key secrets, sealed header values and base URLs) stored in the
database the gateway uses under the new master key (a key is 32 bytes, base64:
openssl rand -base64 32). Headers and base URLs an older version stored in plain
text are sealed. Secrets already under the new key are left alone, so it
can be run again. The database: DATABASE_URL, else database.url in the config file
(SLUICE_CONFIG, else ./sluice.config.ts or ./sluice.config.json), else
${DEFAULT_DATABASE_URL}.

  --help     show this text`

async function main(args: readonly string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE)
    return 0
  }
  // It takes its keys from the environment only: an argument is a mistake, refused before anything is opened.
  if (args.length > 0) {
    console.error(`rotate-encryption-key: unknown argument ${args.join(' ')}\n\n${USAGE}`)
    return 2
  }
  const currentText = process.env.SLUICE_ENCRYPTION_KEY
  const previousText = process.env.SLUICE_ENCRYPTION_KEY_PREVIOUS
  if (!currentText || !previousText) {
    console.error('rotate-encryption-key: set SLUICE_ENCRYPTION_KEY to the NEW key and SLUICE_ENCRYPTION_KEY_PREVIOUS to the old one(s), comma-separated')
    return 2
  }
  // Each bad key named by its variable, as the gateway's boot names it.
  const problems = encryptionKeyProblems(currentText, previousText)
  if (problems.length > 0) {
    console.error(problems.map((problem) => `rotate-encryption-key: ${problem}`).join('\n'))
    return 2
  }
  const current = masterKey(currentText)
  const previous = previousText.split(',').map((s) => s.trim()).filter(Boolean).map(masterKey)
  let handle: DatabaseHandle
  try {
    handle = await createDatabase(await loadDatabaseUrl())
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rotate-encryption-key: ${error.message}`)
      return 2
    }
    console.error(`rotate-encryption-key: ${describeError(error)}; nothing was changed`)
    return 1
  }
  let rotated = 0
  try {
    await migrateToLatest(handle.db)
    let kept = 0
    // A gateway may change a provider while this runs (its keys replaced, its headers edited): each
    // row is written only as it was read, and a row changed meanwhile is read again by the next pass.
    for (let pass = 1; ; pass++) {
      const result = await rotatePass(handle, current, previous)
      rotated += result.rotated
      if (pass === 1) kept = result.kept
      if (result.changed === 0) break
      if (pass === MAX_PASSES) throw new Error(`${result.changed} row(s) kept changing while this ran; run it again`)
    }
    console.log(`rotate-encryption-key: re-sealed ${rotated} secret(s) under key ${current.id}; ${kept} already were (${handle.url})`)
    return 0
  } catch (error) {
    // Each pass commits on its own: what the passes before re-sealed stays so (running it again is safe).
    const done = rotated === 0 ? 'nothing was changed' : `${rotated} secret(s) were re-sealed before it; run it again for the rest`
    console.error(`rotate-encryption-key: ${describeError(error)}; ${done}`)
    return 1
  } finally {
    await handle.close()
  }
}

/** How many times rows changed under the rotation are read again before it gives up. */
const MAX_PASSES = 5

/**
 * One pass in one transaction: every secret not under `current` re-sealed. Each row is updated only
 * if it still holds what was read (compare and set), so a change a gateway commits in between is
 * never overwritten with the old secret; such rows are counted as `changed`, for the next pass.
 */
async function rotatePass(handle: DatabaseHandle, current: MasterKey, previous: readonly MasterKey[]): Promise<{ rotated: number; kept: number; changed: number }> {
  let rotated = 0
  let kept = 0
  let changed = 0
  await handle.db.transaction().execute(async (tx) => {
    const rows = await tx.selectFrom('provider_keys').select(['id', 'provider_id', 'secret_enc']).execute()
    const providers = await tx.selectFrom('providers').select(['id', 'base_url', 'config', 'deleted_at']).execute()
    for (const row of rows) {
      if (envelopeKeyId(row.secret_enc) === current.id) {
        kept++
        continue
      }
      const sealed = rewrapSecret([current, ...previous], current, row.secret_enc, row.id)
      const result = await tx
        .updateTable('provider_keys')
        .set({ secret_enc: sealed, key_version: current.id, updated_at: new Date().toISOString() })
        .where('id', '=', row.id)
        .where('provider_id', '=', row.provider_id)
        .where('secret_enc', '=', row.secret_enc)
        .executeTakeFirst()
      if (result.numUpdatedRows > 0n) rotated++
      else changed++
    }
    for (const row of providers) {
      if (row.deleted_at !== null) {
        // A deleted provider keeps no settings, as a delete leaves it now; an older version left its
        // URL as written (credential and all), and its headers.
        const masked = row.base_url === null ? null : maskBaseUrl(row.base_url)
        if (masked === row.base_url && row.config === '{}') continue
        const result = await tx
          .updateTable('providers')
          .set({ base_url: masked, config: '{}' })
          .where('id', '=', row.id)
          .where('config', '=', row.config)
          .where('base_url', row.base_url === null ? 'is' : '=', row.base_url)
          .executeTakeFirst()
        if (result.numUpdatedRows === 0n) changed++
        continue
      }
      // Null: no headers or base URL to seal, or sealed under the new key already.
      const resealed = resealProvider(row, [current, ...previous], current)
      if (resealed === null) continue
      const result = await tx
        .updateTable('providers')
        .set({ base_url: resealed.base_url, config: resealed.config, updated_at: new Date().toISOString() })
        .where('id', '=', row.id)
        .where('config', '=', row.config)
        .where('base_url', row.base_url === null ? 'is' : '=', row.base_url)
        .executeTakeFirst()
      if (result.numUpdatedRows > 0n) rotated += resealed.moved
      else changed++
    }
  })
  return { rotated, kept, changed }
}

process.exit(
  await main(process.argv.slice(2)).catch((error: unknown) => {
    // Whatever escaped main is still reported as one line and an exit code, not as a crash.
    console.error(`rotate-encryption-key: ${describeError(error)}`)
    return 1
  }),
)
