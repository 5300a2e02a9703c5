/**
 * Every migration, listed by hand.
 *
 * A static list rather than a directory scan: it works the same from source, from a
 * bundle and from a compiled binary, and a migration can never be picked up (or missed)
 * because of what happens to sit in a folder at run time.
 *
 * Kysely runs them in the order of their names, so a new migration takes the next
 * number: `0002-…`. Never rename or edit one that has shipped; add a new one.
 */
import type { Migration } from 'kysely/migration';
import * as initial from './0001-initial.ts';
import * as logging from './0002-logging.ts';
import * as lineage from './0003-lineage.ts';
import * as consoleRevocations from './0004-console-revocations.ts';
import * as providerKeyWeight from './0005-provider-key-weight.ts';
import * as ownerModels from './0006-owner-models.ts';
import * as alertsCreatedAt from './0007-alerts-created-at.ts';
import * as apiKeysExpiring from './0008-api-keys-expiring.ts';
import * as providerKeyPosition from './0009-provider-key-position.ts';

export const migrations = {
  '0001-initial': initial,
  '0002-logging': logging,
  '0003-lineage': lineage,
  '0004-console-revocations': consoleRevocations,
  '0005-provider-key-weight': providerKeyWeight,
  '0006-owner-models': ownerModels,
  '0007-alerts-created-at': alertsCreatedAt,
  '0008-api-keys-expiring': apiKeysExpiring,
  '0009-provider-key-position': providerKeyPosition,
} as const satisfies Readonly<Record<string, Migration>>;
