import { Elysia } from 'elysia'
import { adminGuard } from '../admin-key.ts'
import { Type, type Static } from '@sinclair/typebox'
import { GatewayError } from '../errors.ts'
import { echo, maskKey } from '../lib/key-text.ts'
import { compileCheck } from '../lib/validate.ts'
import type { ModelRegistry } from '../models.ts'
import { modelNotFound, type Pipeline } from '../pipeline.ts'
import type { Endpoint } from '../plugin.ts'
import type { Services } from '../services.ts'
import { adminErrors, ErrorEnvelope, jsonResponse, Nullable } from './schemas.ts'

/**
 * `req.locals` key by which the key doctor asks the authenticate stage about a key id instead
 * of a presented key. Only this admin route sets it; client requests cannot reach `locals`.
 */
export const DIAGNOSE = 'sluice.diagnose'

/**
 * The field of a `describe` answer under which a plugin that admits requests tells the doctor what
 * it would answer now: `{ refusal: GatewayError | null, max_request_tokens: number | null }`.
 * Only asked for when DIAGNOSE is set; never part of `GET /v1/key`.
 */
export const DIAGNOSIS = 'sluice.diagnosis'

interface Diagnosis {
  refusal: GatewayError | null
  max_request_tokens: number | null
}

/** What no HTTP header value can hold (fetch's Headers refuse it): NUL, a line break inside, a character beyond Latin-1. */
const UNSENDABLE = /[\0\r\n]|[^\0-\xff]/

/**
 * The verdict on a pasted key that no client could send as it is: most often the display form
 * (`sk-dev-abcde…wxyz`) the admin API and the console show, or a key broken over two lines. Null
 * for a key a header can carry, which the authenticate stage judges. Leading and trailing white
 * space is not at fault here: a header drops it, as the key's own holder's client does.
 */
function unsendableKey(key: string): GatewayError | null {
  const text = key.trim()
  if (!UNSENDABLE.test(text)) return null
  if (text.includes('\u2026')) {
    return new GatewayError('invalid_api_key', `"${text.slice(0, 40)}" is the shortened form of a key the admin API and the console show (its start, "…", its last four), not the key itself. Paste the whole key, or pick the key by its id ("key_id"; GET /admin/keys lists the ids beside their shortened form).`)
  }
  const why = /[\r\n]/.test(text) ? 'a line break' : /\0/.test(text) ? 'a NUL character' : 'a character beyond Latin-1 (a typographic quote or dash?)'
  return new GatewayError('invalid_api_key', `The key ${maskKey(text)} holds ${why}, which no HTTP header can carry: no client could send it as it is. Paste the key on one line as it was given out, or pick the key by its id ("key_id").`)
}

const ENDPOINTS = ['chat.completions', 'completions', 'embeddings', 'models.list', 'tokens.count'] as const
/** The endpoints whose requests are admitted (counted against limits and budgets); the others are only authenticated. */
const ADMITTED: ReadonlySet<Endpoint> = new Set<Endpoint>(['chat.completions', 'completions', 'embeddings'])

export const DiagnoseBody = Type.Object(
  {
    key: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'A key as a client would send it' })),
    key_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Or a key id (key_…)' })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'The model the client asks for' })),
    team: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'The team the client names in OpenAI-Organization' })),
    endpoint: Type.Optional(Type.Union(ENDPOINTS.map((e) => Type.Literal(e)), { default: 'chat.completions' })),
  },
  { additionalProperties: false },
)
type Diagnose = Static<typeof DiagnoseBody>

/** The doctor's answer. */
const KeyDiagnosis = Type.Object({
  object: Type.Literal('key_diagnosis'),
  allowed: Type.Boolean({ description: 'Whether the least request (one token) with this key, model and team would be admitted now' }),
  status: Type.Integer({ description: 'The status the gateway would answer: 200, or that of the refusal' }),
  error: Nullable({ ...ErrorEnvelope.properties.error, description: 'The refusal, as the client would get it' }),
  retry_after: Nullable(Type.Number({ description: 'Seconds, as the Retry-After of a 429' })),
  quota: Type.String({ description: '"ok", "no limits", or "exhausted: " and what is' }),
  max_request_tokens: Nullable(Type.Integer({ description: 'The most tokens a request may reserve now (prompt + max_tokens); null without the quota plugin or with no token limit' })),
  endpoint: Type.String(),
  model: Nullable(Type.String()),
  team: Nullable(Type.String()),
  key: Nullable(Type.Record(Type.String(), Type.Unknown(), { description: 'The key as GET /v1/key shows it, without `remaining`' })),
  remaining: Nullable(Type.Record(Type.String(), Nullable(Type.Number()))),
})

/**
 * The key doctor: what the gateway would answer a request with this key, model and team,
 * and why — through the same authenticate stage and model lookup, without calling upstream
 * and without counting anything against the key.
 */
export function doctorRoutes({ pipeline, models, services }: { pipeline: Pipeline; models: ModelRegistry; services: Services }) {
  const check = compileCheck(DiagnoseBody)
  const guard = adminGuard(services.admin)
  return new Elysia({ name: 'sluice.doctor' })
    // The admin key before the body is read (see adminGuard).
    .onParse(guard.parse)
    .onTransform(guard.transform)
    .post(
      '/admin/doctor',
      async ({ body, set }) => {
        const input = check(body as Record<string, unknown>) as Diagnose
        if (!input.key === !input.key_id) throw new GatewayError('invalid_request', 'Send exactly one of "key" or "key_id".', { param: 'key' })
        const endpoint: Endpoint = input.endpoint ?? 'chat.completions'
        if (input.team && UNSENDABLE.test(input.team.trim())) {
          throw new GatewayError('invalid_request', 'team is not a team id a client could name in OpenAI-Organization: team ids are letters, digits and _ . : -.', { param: 'team' })
        }
        const unsendable = input.key ? unsendableKey(input.key) : null
        const headers = new Headers()
        if (input.key && !unsendable) headers.set('authorization', `Bearer ${input.key}`)
        if (input.team) headers.set('openai-organization', input.team)
        const probe = new Request('http://doctor.invalid/', { headers })
        const req = pipeline.createRequest(endpoint, probe, set.headers['x-request-id'] as string, input.model ? { model: input.model } : {})
        req.locals[DIAGNOSE] = input.key_id ?? true

        let error = unsendable ?? (await pipeline.authenticate(req))
        if (error?.code === 'not_found' && input.key_id) throw error
        if (!error && input.model && endpoint !== 'models.list' && !models.get(input.model)) {
          // The client's own refusal: what to do, and a key pasted as the model masked.
          error = modelNotFound(input.model)
        }
        const described = await pipeline.describe(req)
        const remaining = (described.remaining ?? null) as Record<string, number | null> | null
        const diagnosis = (described[DIAGNOSIS] ?? null) as Diagnosis | null
        const exhausted = remaining ? Object.entries(remaining).filter(([, v]) => v !== null && v <= 0).map(([k]) => k) : []
        // The quota plugin describes every key, with null for what no limit or budget counts.
        const limited = remaining !== null && Object.values(remaining).some((v) => v !== null)
        const { remaining: _r, [DIAGNOSIS]: _d, ...key } = described
        // What admission would answer the least request now (a full max_parallel set, an empty
        // bucket, a spent budget: the one the gateway names), after the key's own verdict. Listing
        // models and counting tokens are not admitted: a spent limit refuses neither.
        const admitted = ADMITTED.has(endpoint)
        const refused = error ?? (admitted ? diagnosis?.refusal : null) ?? null
        const held = admitted && exhausted.length > 0
        return {
          object: 'key_diagnosis',
          allowed: !refused && !held,
          status: refused ? refused.status : held ? 429 : 200,
          error: refused ? refused.toJSON().error : null,
          retry_after: refused?.headers?.['retry-after'] === undefined ? null : Number(refused.headers['retry-after']),
          quota: exhausted.length ? `exhausted: ${exhausted.join(', ')}` : limited ? 'ok' : 'no limits',
          // A request reserving more (prompt + max_tokens for each completion) is refused now.
          max_request_tokens: diagnosis?.max_request_tokens ?? null,
          endpoint,
          // As the request log keeps them: a key pasted as the model or the team masked.
          model: input.model === undefined ? null : echo(input.model, 256),
          team: input.team === undefined ? null : echo(input.team, 256),
          key: Object.keys(key).length ? key : null,
          remaining,
        }
      },
      {
        parse: 'json',
        detail: {
          tags: ['Admin: users, teams, keys'],
          summary: 'Key doctor: what the gateway would answer a key (or key id), model and team, and why',
          requestBody: { required: true, content: { 'application/json': { schema: DiagnoseBody } } },
          responses: { ...jsonResponse('The verdict, and why', KeyDiagnosis), ...adminErrors(400, 404) },
        },
      },
    )
}
