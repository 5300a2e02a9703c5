import type { Kysely, Transaction } from 'kysely'
import type { Database } from './schema.ts'
import { toJson } from '../lib/json-text.ts'

/** One row of the audit trail (admin changes, by any plugin's admin routes). Never pass secrets in `details`. */
export async function audit(
  db: Kysely<Database> | Transaction<Database>,
  entry: { action: string; targetType: string; targetId: string; details?: unknown; actor?: string },
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      // Time-ordered (UUID v7): changes of one millisecond still list in the order they were made.
      id: `aud_${Bun.randomUUIDv7().replaceAll('-', '')}`,
      at: new Date().toISOString(),
      actor: entry.actor ?? 'admin',
      action: entry.action,
      target_type: entry.targetType,
      target_id: entry.targetId,
      details: toJson(entry.details),
    })
    .execute()
}
