/**
 * Row types of every table, assembled into {@link Database} for `Kysely<Database>`.
 *
 * The column types are the portable subset shared by SQLite and Postgres (see
 * migrations/0001-initial.ts): times are ISO-8601 UTC strings, JSON is text,
 * booleans are 0/1 integers. Repositories parse and serialise at their edge, so
 * these types say exactly what the database stores and returns on both dialects.
 *
 * Naming: `XRow` is what a select returns, `XInsert` what an insert takes,
 * `XUpdate` what an update takes. The `Row` suffix keeps them apart from the
 * API-facing TypeBox types that share the domain names (`User`, `ApiKey`, ...).
 */
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

/** An instant as `Date.prototype.toISOString()` writes it (`2025-01-31T12:00:00.000Z`): fixed width, so text order is time order on both dialects. */
export type IsoTimestamp = string;

/** A `JSON.stringify` result stored as TEXT; `null` in a nullable JSON column means "not set" (for `models`/`scopes`: no restriction). */
export type JsonText = string;

/** A boolean stored as INTEGER, because SQLite has no boolean type. */
export type IntBoolean = 0 | 1;

/** Written once at insert, never by an update: keeps `Updateable<...>` from offering to rewrite keys and creation times. */
type Immutable<T> = ColumnType<T, T, never>;

export interface UsersTable {
  /** `usr_…` */
  id: Immutable<string>;
  /** Unique when set; several users may have none. */
  email: string | null;
  name: string | null;
  disabled_at: IsoTimestamp | null;
  /** Soft delete: the user's keys stay and are refused with `invalid_user_for_key`. */
  deleted_at: IsoTimestamp | null;
  /** `{rpm?, tpm?, max_parallel?}` */
  limits: JsonText | null;
  /** `{tokens?, usd?, period}` */
  budget: JsonText | null;
  /** JSON array of the model names the user's keys may use; `null` = every model. */
  models: JsonText | null;
  metadata: JsonText | null;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
}

export interface TeamsTable {
  /** `team_…` */
  id: Immutable<string>;
  name: string;
  limits: JsonText | null;
  budget: JsonText | null;
  /** JSON array of the model names requests billed to the team may use; `null` = every model. */
  models: JsonText | null;
  metadata: JsonText | null;
  deleted_at: IsoTimestamp | null;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
}

export interface TeamMembersTable {
  team_id: Immutable<string>;
  user_id: Immutable<string>;
  /** @default 'member' */
  role: Generated<string>;
  created_at: Immutable<IsoTimestamp>;
}

/** The two states a key record can be in; expiry is a time, not a status. */
export type ApiKeyStatus = 'active' | 'revoked';

export interface ApiKeysTable {
  /** `key_…` */
  id: Immutable<string>;
  /** SHA-256 hex of the whole plaintext key; unique. */
  hash: string;
  /** First 12 characters of the key, for display. */
  start: string;
  /** Last 4 characters of the key, for display. (A reserved word in SQL: Kysely quotes it; quote it in raw SQL.) */
  end: string;
  environment: string;
  user_id: string;
  team_id: string | null;
  name: string | null;
  /** JSON array of model names; `null` = every model. */
  models: JsonText | null;
  /** JSON array of scopes; `null` = every scope. */
  scopes: JsonText | null;
  limits: JsonText | null;
  budget: JsonText | null;
  /** @default 'active' */
  status: Generated<ApiKeyStatus>;
  expires_at: IsoTimestamp | null;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
  last_used_at: IsoTimestamp | null;
  revoked_at: IsoTimestamp | null;
  revoked_reason: string | null;
  /** Id of the key this one replaced. */
  rotated_from: string | null;
  /** Id of the key that replaced this one. */
  rotated_to: string | null;
  /** After a rotation the old key stays valid until then. */
  grace_until: IsoTimestamp | null;
  metadata: JsonText | null;
  /**
   * Id of the first key of this key's rotation chain (migrations/0003-lineage.ts); `null`
   * = the key's own id. The quota counts the key's limits and budgets under it, so rotation
   * changes the secret and nothing else. Set once, when rotation creates the key.
   */
  lineage_id: Immutable<string | null>;
}

export interface AuditLogTable {
  /** Text, not an autoincrement: autoincrement DDL differs between SQLite and Postgres. */
  id: Immutable<string>;
  at: IsoTimestamp;
  /** Who did it, e.g. `admin` or a key id. */
  actor: string;
  /** e.g. `key.revoke` */
  action: string;
  target_type: string | null;
  target_id: string | null;
  details: JsonText | null;
}

export interface SettingsTable {
  key: Immutable<string>;
  value: string;
  updated_at: IsoTimestamp;
}

export interface ProvidersTable {
  id: Immutable<string>;
  /** `openai` | `openai-compatible` | `anthropic` | `gemini` | `mock` (validated by the app, not the database, so new adapters need no migration). */
  type: string;
  base_url: string | null;
  /** @default '{}' */
  config: Generated<JsonText>;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
  deleted_at: IsoTimestamp | null;
}

export interface ProviderKeysTable {
  id: Immutable<string>;
  provider_id: Immutable<string>;
  /** Encrypted envelope (AES-256-GCM); never the plaintext secret. */
  secret_enc: string;
  /** Id of the master key that sealed `secret_enc`, so the master key can be rotated. */
  key_version: string;
  /** @default 1 */
  weight: Generated<number>;
  /** The key's place in its provider's list as given (0 first); 0 for rows from before migration 0009. @default 0 */
  position: Generated<number>;
  rpm: number | null;
  tpm: number | null;
  disabled_at: IsoTimestamp | null;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
}

export interface ModelsTable {
  name: Immutable<string>;
  /** The model definition (targets, strategy, fallbacks, pricing) as JSON. */
  config: JsonText;
  created_at: Immutable<IsoTimestamp>;
  updated_at: IsoTimestamp;
}

export interface RequestLogsTable {
  /** The request id (`req_…`). */
  id: Immutable<string>;
  at: IsoTimestamp;
  /** `null` when the request was refused before a key was known. */
  key_id: string | null;
  user_id: string | null;
  team_id: string | null;
  environment: string;
  endpoint: string;
  /** The model the client asked for. */
  model: string | null;
  provider: string | null;
  upstream_model: string | null;
  provider_key_id: string | null;
  /** HTTP status sent to the client. */
  status: number;
  error_code: string | null;
  /** @default 0 */
  prompt_tokens: Generated<number>;
  /** @default 0 */
  completion_tokens: Generated<number>;
  /** @default 0 */
  cached_tokens: Generated<number>;
  /** @default 0 */
  total_tokens: Generated<number>;
  /** @default 0 */
  cost_usd: Generated<number>;
  /** Where the token counts came from, e.g. `provider` or `estimate`. */
  usage_source: string | null;
  latency_ms: number;
  /** Time to first token, streams only. */
  ttft_ms: number | null;
  /** @default 0 */
  streamed: Generated<IntBoolean>;
  client_ip: string | null;
  user_agent: string | null;
}

/** An alert the logging plugin raised (migrations/0002-logging.ts): claimed, then sent once. */
export interface AlertsSentTable {
  /** `kind:subject:threshold:period`: the same alert twice is the same row. */
  id: Immutable<string>;
  /** `key_expiring`, `budget`, `upstream_key_dead`. */
  kind: Immutable<string>;
  /** What it is about, e.g. `key:key_…`, `user:usr_…`, `provider_key:openai/oa-1`. */
  subject: Immutable<string>;
  threshold: Immutable<number>;
  /** The period it belongs to (a budget period label, an expiry time, the start of a failure run). */
  period: Immutable<string>;
  /**
   * 'pending' until the receiver answered 2xx, then 'sent'; 'dropped': a budget alert whose
   * budget was changed before it could be sent (kept, so its figure counts as the period's told one).
   * @default 'pending'
   */
  status: Generated<'pending' | 'sent' | 'dropped'>;
  /** @default 0 */
  attempts: Generated<number>;
  /** The JSON body POSTed to the webhook. */
  payload: JsonText;
  next_attempt_at: IsoTimestamp;
  last_error: string | null;
  created_at: Immutable<IsoTimestamp>;
  sent_at: IsoTimestamp | null;
}

/** A console session signed out before its expiry (migrations/0004-console-revocations.ts). */
export interface ConsoleRevocationsTable {
  session_id: Immutable<string>;
  /** The session's own expiry: past it the row is deleted. */
  expires_at: Immutable<IsoTimestamp>;
}

/** Every table, keyed by its SQL name: the type parameter of `Kysely<Database>`. */
export interface Database {
  users: UsersTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  api_keys: ApiKeysTable;
  audit_log: AuditLogTable;
  settings: SettingsTable;
  providers: ProvidersTable;
  provider_keys: ProviderKeysTable;
  models: ModelsTable;
  request_logs: RequestLogsTable;
  alerts_sent: AlertsSentTable;
  console_revocations: ConsoleRevocationsTable;
}

export type UserRow = Selectable<UsersTable>;
export type UserInsert = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;

export type TeamRow = Selectable<TeamsTable>;
export type TeamInsert = Insertable<TeamsTable>;
export type TeamUpdate = Updateable<TeamsTable>;

export type TeamMemberRow = Selectable<TeamMembersTable>;
export type TeamMemberInsert = Insertable<TeamMembersTable>;
export type TeamMemberUpdate = Updateable<TeamMembersTable>;

export type ApiKeyRow = Selectable<ApiKeysTable>;
export type ApiKeyInsert = Insertable<ApiKeysTable>;
export type ApiKeyUpdate = Updateable<ApiKeysTable>;

export type AuditLogRow = Selectable<AuditLogTable>;
export type AuditLogInsert = Insertable<AuditLogTable>;
export type AuditLogUpdate = Updateable<AuditLogTable>;

export type SettingRow = Selectable<SettingsTable>;
export type SettingInsert = Insertable<SettingsTable>;
export type SettingUpdate = Updateable<SettingsTable>;

export type ProviderRow = Selectable<ProvidersTable>;
export type ProviderInsert = Insertable<ProvidersTable>;
export type ProviderUpdate = Updateable<ProvidersTable>;

export type ProviderKeyRow = Selectable<ProviderKeysTable>;
export type ProviderKeyInsert = Insertable<ProviderKeysTable>;
export type ProviderKeyUpdate = Updateable<ProviderKeysTable>;

export type ModelRow = Selectable<ModelsTable>;
export type ModelInsert = Insertable<ModelsTable>;
export type ModelUpdate = Updateable<ModelsTable>;

export type RequestLogRow = Selectable<RequestLogsTable>;
export type RequestLogInsert = Insertable<RequestLogsTable>;
export type RequestLogUpdate = Updateable<RequestLogsTable>;

export type AlertSentRow = Selectable<AlertsSentTable>;
export type AlertSentInsert = Insertable<AlertsSentTable>;
export type AlertSentUpdate = Updateable<AlertsSentTable>;
