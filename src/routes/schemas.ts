import { Type as t, type TSchema } from '@sinclair/typebox'

/**
 * Request bodies of the OpenAI endpoints. They check what the gateway relies on and let
 * every other field through untouched (`additionalProperties`), so new OpenAI parameters
 * and providers' own extras (vLLM's `top_k`, `repetition_penalty`) reach the upstream
 * without a gateway release.
 */
const open = { additionalProperties: true } as const

/** A field that is always there and may be `null`: the views' "not set" (`expires_at: null`). */
export const Nullable = <T extends TSchema>(schema: T) => t.Union([schema, t.Null()])

/** A time in a view: an RFC 3339 string, as every time the API answers. */
export const Time = t.String({ format: 'date-time' })

/**
 * A field that may be left out and may also be `null`: OpenAI takes `null` for "not set" on its
 * optional parameters, and clients send it (openai-python's `None`, LangChain's and LiteLLM's defaults).
 */
const OptionalNullable = <T extends TSchema>(schema: T) => t.Optional(Nullable(schema))

export const ChatMessage = t.Object(
  {
    role: t.String({ minLength: 1, description: 'system, developer, user, assistant, tool or function' }),
    content: t.Optional(t.Union([t.String(), t.Array(t.Unknown()), t.Null()])),
    name: OptionalNullable(t.String()),
  },
  open,
)

// Bounded as a 32-bit integer, as providers take it: 1e300 is an integer to JSON, and no model's.
const MaxTokens = OptionalNullable(t.Integer({ minimum: 1, maximum: 2_147_483_647 }))
const StreamOptions = OptionalNullable(t.Object({ include_usage: OptionalNullable(t.Boolean()) }, open))
const Tools = OptionalNullable(t.Array(t.Object({ type: t.String() }, open)))

/** The sampling parameters both text endpoints share, at the bounds OpenAI documents. */
const sampling = {
  temperature: OptionalNullable(t.Number({ minimum: 0, maximum: 2 })),
  top_p: OptionalNullable(t.Number({ minimum: 0, maximum: 1 })),
  frequency_penalty: OptionalNullable(t.Number({ minimum: -2, maximum: 2 })),
  presence_penalty: OptionalNullable(t.Number({ minimum: -2, maximum: 2 })),
  // Checked because the Anthropic and Gemini adapters translate it (and would drop a wrong shape silently).
  stop: OptionalNullable(t.Union([t.String(), t.Array(t.String())])),
}

export const ChatCompletionBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    messages: t.Array(ChatMessage, { minItems: 1 }),
    stream: OptionalNullable(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    max_completion_tokens: MaxTokens,
    ...sampling,
    n: OptionalNullable(t.Integer({ minimum: 1, maximum: 128 })),
    top_logprobs: OptionalNullable(t.Integer({ minimum: 0, maximum: 20 })),
    tools: Tools,
    user: OptionalNullable(t.String()),
  },
  { ...open, description: 'OpenAI chat completion request' },
)

/** A prompt or an embeddings input: a string, strings, one tokenized text, or several. */
const TextOrTokens = [t.String(), t.Array(t.String()), t.Array(t.Integer()), t.Array(t.Array(t.Integer()))] as const

export const CompletionBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    // Required, but null is OpenAI's "no prompt" (the model starts from a new document).
    prompt: t.Union([...TextOrTokens, t.Null()]),
    stream: OptionalNullable(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    ...sampling,
    // Each multiplies what a request may cost (the quota reserves max_tokens for every completion):
    // unchecked, a best_of of 1e300 made a cost past any number, which Redis' script counted as nothing.
    n: OptionalNullable(t.Integer({ minimum: 1, maximum: 128 })),
    best_of: OptionalNullable(t.Integer({ minimum: 0, maximum: 20 })),
  },
  { ...open, description: 'OpenAI legacy completion request' },
)

/** An embeddings input: as a prompt, but never empty (OpenAI refuses an empty string or list; there is nothing to embed). */
const EmbeddingInput = [
  t.String({ minLength: 1 }),
  t.Array(t.String({ minLength: 1 }), { minItems: 1 }),
  t.Array(t.Integer(), { minItems: 1 }),
  t.Array(t.Array(t.Integer(), { minItems: 1 }), { minItems: 1 }),
] as const

export const EmbeddingBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    input: t.Union([...EmbeddingInput]),
    dimensions: OptionalNullable(t.Integer({ minimum: 1 })),
    encoding_format: OptionalNullable(t.Union([t.Literal('float'), t.Literal('base64')])),
  },
  { ...open, description: 'OpenAI embeddings request' },
)

/** The error envelope of every failed request, on every route: one schema, `ErrorEnvelope` in the document's components. */
export const ErrorEnvelope = t.Object(
  {
    error: t.Object({
      message: t.String({ description: 'What is wrong and what to do; never a whole key nor a provider secret' }),
      type: t.String({ description: 'invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error or api_error' }),
      param: t.Union([t.String(), t.Null()], { description: 'The request field at fault, when one is' }),
      code: t.String({
        description:
          "The error's code, from the table in the README; on an upstream's own 4xx answer, the upstream's code when it sent one (a lowercase identifier, such as context_length_exceeded), else the table's",
      }),
    }),
  },
  { description: 'The error envelope of every failed request' },
)

/** Where the document holds {@link ErrorEnvelope}; error responses refer to it. */
export const ERROR_ENVELOPE_REF = '#/components/schemas/ErrorEnvelope'

/** An OpenAPI response object, as `detail.responses` takes it: documentation only, no route validates its answer against it. */
export interface ResponseDoc {
  description: string
  content?: Record<string, { schema: TSchema | { $ref: string } }>
}

const errorDoc = (description: string): ResponseDoc => ({ description, content: { 'application/json': { schema: { $ref: ERROR_ENVELOPE_REF } } } })

/** The error responses of the client API, by status, with the codes each stands for. */
const CLIENT_ERRORS = {
  400: 'invalid_request: the body is not JSON, or not valid for the endpoint (`param` names the field)',
  401: 'missing_api_key, invalid_api_key, key_revoked or key_expired',
  403: 'invalid_user_for_key (also for an OpenAI-Organization team the key may not use), environment_mismatch, model_not_allowed or insufficient_permissions',
  404: 'model_not_found',
  408: 'invalid_request: the body did not arrive within limits.body_timeout_ms',
  413: 'request_too_large: the body is over limits.max_body_bytes',
  429: 'rate_limit_exceeded (requests or tokens per minute, max_parallel), with Retry-After; or insufficient_quota (a budget is spent)',
  502: 'upstream_error: the upstream failed after retries and fallbacks',
  503:
    "not_ready (the gateway's database cannot serve the request now, such as a key not in the cache while the database is down; with Retry-After); " +
    'on the model routes also no_healthy_upstream (every upstream cooling down or its circuit open) or quota_backend_unavailable (the quota plugin failing closed)',
  504: 'upstream_timeout',
  '4XX': "An upstream's own 4xx answer (other than 401, 403 and 429, which are about its key) keeps its status, and its code when it sent one, in this envelope",
} as const

/** The error responses of the admin API, by status. */
const ADMIN_ERRORS = {
  400: 'invalid_request: a body field, query parameter or path value is not valid (`param` names it)',
  401: 'invalid_admin_key: no admin key, or not this one',
  404: 'not_found: no such object (the message names it)',
  409: 'conflict: the change collides with what is there (the message says with what)',
  413: 'request_too_large: the body is over 1 MiB',
  429: 'rate_limit_exceeded: too many wrong admin keys from this client address of late (server.admin_attempts_per_minute); Retry-After says when to try again',
  503: "not_ready: the gateway's database cannot serve the request now (with Retry-After), or a stored provider secret was sealed with a master key this instance lacks (the message names its id)",
} as const

/** Every route may answer this one: an error nobody expected (a bug), whose details go to the log only. */
export const INTERNAL_ERROR = errorDoc('internal_error: an unexpected failure; the details are in the gateway log under the request id')

const pick = <K extends string | number>(table: Record<K, string>, statuses: readonly K[]): Record<string, ResponseDoc> =>
  Object.fromEntries(statuses.map((status) => [String(status), errorDoc(table[status])]))

/** The error responses of a client route, each in the envelope. */
export const clientErrors = (...statuses: (keyof typeof CLIENT_ERRORS)[]) => pick(CLIENT_ERRORS, statuses)
/** The error responses of an admin route, each in the envelope (400, 401, 429 and 503 are added to every /admin operation by the docs). */
export const adminErrors = (...statuses: (keyof typeof ADMIN_ERRORS)[]) => pick(ADMIN_ERRORS, statuses)

/** A JSON answer with `status` (200 unless given), for `detail.responses`. */
export const jsonResponse = (description: string, schema: TSchema, status = 200): Record<string, ResponseDoc> => ({
  [String(status)]: { description, content: { 'application/json': { schema } } },
})

/** A page of a list, as every list of the API is shaped. */
export const ListOf = <T extends TSchema>(item: T, description?: string) =>
  t.Object({ object: t.Literal('list'), data: t.Array(item), next_cursor: t.Union([t.String(), t.Null()], { description: 'Pass it back as `cursor` for the next page; null on the last' }) }, description === undefined ? {} : { description })

export const ModelObject = t.Object({
  id: t.String(),
  object: t.Literal('model'),
  created: t.Integer(),
  owned_by: t.String(),
})

export const ModelList = t.Object({
  object: t.Literal('list'),
  data: t.Array(ModelObject),
  next_cursor: Nullable(t.String()),
})

const Usage = t.Object(
  { prompt_tokens: t.Integer(), completion_tokens: t.Optional(t.Integer()), total_tokens: t.Integer() },
  { ...open, description: "The upstream's token counts" },
)

/** `POST /v1/chat/completions` without `stream`: OpenAI's chat completion object, as the upstream answered it (other providers' answers translated). */
export const ChatCompletion = t.Object(
  {
    id: t.String(),
    object: t.Literal('chat.completion'),
    created: t.Integer(),
    model: t.String(),
    choices: t.Array(
      t.Object(
        {
          index: t.Integer(),
          message: t.Object({ role: t.String(), content: Nullable(t.String()), tool_calls: t.Optional(t.Array(t.Unknown())) }, open),
          finish_reason: Nullable(t.String()),
        },
        open,
      ),
    ),
    usage: t.Optional(Usage),
  },
  { ...open, description: 'OpenAI chat completion' },
)

/** `POST /v1/completions` without `stream`: OpenAI's legacy text completion object. */
export const TextCompletion = t.Object(
  {
    id: t.String(),
    object: t.Literal('text_completion'),
    created: t.Integer(),
    model: t.String(),
    choices: t.Array(t.Object({ index: t.Integer(), text: t.String(), finish_reason: Nullable(t.String()) }, open)),
    usage: t.Optional(Usage),
  },
  { ...open, description: 'OpenAI text completion' },
)

/** `POST /v1/embeddings`: OpenAI's list of embeddings. */
export const Embeddings = t.Object(
  {
    object: t.Literal('list'),
    data: t.Array(
      t.Object(
        {
          object: t.Literal('embedding'),
          index: t.Integer(),
          embedding: t.Union([t.Array(t.Number()), t.String()], { description: 'Numbers, or base64 of float32s with encoding_format "base64"' }),
        },
        open,
      ),
    ),
    model: t.String(),
    usage: t.Optional(Usage),
  },
  { ...open, description: 'OpenAI embeddings' },
)

/** A stream: server-sent events as OpenAI sends them, passed on as they arrive. */
const eventStream = (chunk: string): ResponseDoc['content'] => ({
  'text/event-stream': {
    schema: t.String({
      description: `With "stream": true: \`data: <${chunk} JSON>\` events, then \`data: [DONE]\`; with stream_options.include_usage the last chunk before it carries usage. An error after the stream has begun arrives as a \`data: {"error": …}\` event in the envelope.`,
    }),
  },
})

/**
 * `OpenAI-Organization`, which every /v1 route reads: a team id to bill the request to. Documented
 * only (the authenticate stage reads it), so no validation of headers is added to the hot path.
 */
export const OrganizationHeader = {
  name: 'OpenAI-Organization',
  in: 'header',
  required: false,
  schema: { type: 'string' },
  description:
    "A team id: the request is billed to that team (usage, limits, budget). The key's owner must be a member, and a key bound to a team may name only that team; otherwise 403 invalid_user_for_key.",
} as const

/** The responses of the model routes that answer JSON or, when asked, a stream. */
const modelRoute = (description: string, schema: TSchema, chunk: string | null): Record<string, ResponseDoc> => ({
  '200': { description, content: { 'application/json': { schema }, ...(chunk && eventStream(chunk)) } },
  ...clientErrors(400, 401, 403, 404, 408, 413, 429, 502, 503, 504, '4XX'),
})

/** `detail.responses` of each /v1 route (OpenAPI only: the hot path validates no answer). */
export const v1Responses = {
  chat: modelRoute('A chat completion; with "stream": true, a stream of chat.completion.chunk events', ChatCompletion, 'chat.completion.chunk'),
  completions: modelRoute('A text completion; with "stream": true, a stream of text_completion events', TextCompletion, 'text_completion'),
  embeddings: modelRoute('The embeddings', Embeddings, null),
  models: { ...jsonResponse('The models the calling key may use', ModelList), ...clientErrors(401, 403, 503) },
  model: { ...jsonResponse('The model', ModelObject), ...clientErrors(401, 403, 404, 503) },
  count: { ...clientErrors(400, 401, 403, 404, 408, 413, 429, 503) },
  key: { ...clientErrors(401, 403, 503) },
} as const

/** A token bucket of the quota plugin (rpm or tpm), as its views show it. */
const QuotaBucket = t.Object(
  {
    limit: t.Number({ description: 'The limit per minute (the bucket holds at most this much).' }),
    remaining: t.Number({ description: 'What the bucket holds now (0 while a charge beyond it is being paid back).' }),
    full_at: Nullable({ ...Time, description: 'When the bucket is full again; null when it is full now.' }),
  },
  { additionalProperties: false },
)
/** A budget's spend in its period. */
const QuotaSpend = t.Object(
  {
    limit: t.Number(),
    spent: t.Number({ description: 'Spent in the current period (it may pass the limit: a request is charged its real usage after it ends).' }),
    remaining: t.Number({ description: 'Left in the current period, at least 0.' }),
  },
  { additionalProperties: false },
)

/** One key's, user's or team's own limits and budget: the quota plugin's admin views and `GET /v1/key`'s `quota`. */
export const QuotaView = t.Object(
  {
    object: t.Literal('quota'),
    subject: t.Union([t.Literal('key'), t.Literal('user'), t.Literal('team')]),
    id: t.String(),
    counted_as: t.String({ description: "The id the counts are kept under: a key's rotation lineage (its first key), shared by every key of the chain; the subject's own id otherwise." }),
    store: t.Union([t.Literal('redis'), t.Literal('memory')], { description: '`redis`: shared by every gateway instance; `memory`: this instance only (no Redis, or Redis unreachable with fail_mode open).' }),
    requests: Nullable(QuotaBucket),
    tokens: Nullable(QuotaBucket),
    parallel: Nullable(t.Object({ limit: t.Number(), in_flight: t.Number() }, { additionalProperties: false })),
    budget: Nullable(
      t.Object(
        {
          period: t.Union([t.Literal('day'), t.Literal('week'), t.Literal('month'), t.Literal('total')]),
          period_start: Nullable({ ...Time, description: 'Start of the current UTC period; null for `total`.' }),
          resets_at: Nullable({ ...Time, description: 'When the budget renews; null for `total`, which never does.' }),
          tokens: Nullable(QuotaSpend),
          usd: Nullable(QuotaSpend),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: "A key's, user's or team's own limits and budget (not those of the others a request also answers to), with what is left of each now." },
)
/** `GET /v1/key`: the calling key as the gateway sees it. */
export const KeyInfo = t.Object(
  {
    object: t.Literal('api_key'),
    id: Nullable(t.String()),
    name: Nullable(t.String()),
    environment: Nullable(t.String()),
    status: Nullable(t.String()),
    user_id: Nullable(t.String()),
    team_id: Nullable(t.String()),
    models: Nullable(t.Array(t.String())),
    scopes: Nullable(t.Array(t.String())),
    limits: Nullable(t.Record(t.String(), t.Unknown())),
    budget: Nullable(t.Record(t.String(), t.Unknown())),
    expires_at: Nullable(t.String()),
    grace_until: OptionalNullable(t.String({ description: 'A rotated key: when it stops working (its rotation grace period ends); null otherwise' })),
    remaining: t.Object({
      requests: Nullable(t.Number()),
      tokens: Nullable(t.Number()),
      budget_tokens: Nullable(t.Number()),
      budget_usd: Nullable(t.Number()),
    }),
    quota: t.Optional(
      t.Object(
        { key: Nullable(QuotaView), user: Nullable(QuotaView), team: Nullable(QuotaView) },
        {
          additionalProperties: false,
          description:
            "With the quota plugin: each level's own limits and budget with what is left of each (the key's, its owner's, and the team the request is billed to; null where that level has none). `remaining` is the least of them; this says which level holds it.",
        },
      ),
    ),
  },
  { additionalProperties: true },
)

/** `POST /v1/tokens/count` with a chat body: the prompt a chat completion would send. */
export const TokenCountChatBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    messages: t.Array(ChatMessage, { minItems: 1 }),
    tools: Tools,
  },
  { ...open, title: 'Chat body', description: 'A chat completion request (other fields are accepted and ignored)' },
)

/** `POST /v1/tokens/count` with an embeddings body. */
export const TokenCountEmbeddingBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    input: EmbeddingBody.properties.input,
  },
  { ...open, title: 'Embeddings body', description: 'An embeddings request (other fields are accepted and ignored)' },
)

export const TokenCountBody = t.Union([TokenCountChatBody, TokenCountEmbeddingBody], {
  description: 'A chat body (`model`, `messages`, `tools?`) or an embeddings body (`model`, `input`)',
})

/** What `POST /v1/tokens/count` answers. */
export const TokenCount = t.Object({
  model: t.String({ description: 'The model the prompt was counted for' }),
  encoding: t.String({ description: 'The tiktoken encoding used, or `estimate` when no token-counting plugin is loaded (4 characters a token)' }),
  prompt_tokens: t.Integer({ minimum: 0, description: 'Prompt tokens, counted by OpenAI’s published rules (messages, names, tools, images)' }),
})
