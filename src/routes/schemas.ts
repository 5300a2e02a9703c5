import { Type as t, type TSchema } from '@sinclair/typebox'

/**
 * Request bodies of the OpenAI endpoints. They check what the gateway relies on and let
 * every other field through untouched (`additionalProperties`), so new OpenAI parameters
 * reach the upstream without a gateway release.
 */
const open = { additionalProperties: true } as const

export const ChatMessage = t.Object(
  {
    role: t.String({ minLength: 1, description: 'system, developer, user, assistant or tool' }),
    content: t.Optional(t.Union([t.String(), t.Array(t.Unknown()), t.Null()])),
    name: t.Optional(t.String()),
  },
  open,
)

const MaxTokens = t.Optional(t.Integer({ minimum: 1 }))
const StreamOptions = t.Optional(t.Object({ include_usage: t.Optional(t.Boolean()) }, open))

export const ChatCompletionBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    messages: t.Array(ChatMessage, { minItems: 1 }),
    stream: t.Optional(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    max_completion_tokens: MaxTokens,
    temperature: t.Optional(t.Number({ minimum: 0, maximum: 2 })),
    n: t.Optional(t.Integer({ minimum: 1, maximum: 128 })),
    tools: t.Optional(t.Array(t.Object({ type: t.String() }, open))),
    user: t.Optional(t.String()),
  },
  { ...open, description: 'OpenAI chat completion request' },
)

export const CompletionBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    prompt: t.Union([t.String(), t.Array(t.String()), t.Array(t.Integer()), t.Array(t.Array(t.Integer()))]),
    stream: t.Optional(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
  },
  { ...open, description: 'OpenAI legacy completion request' },
)

export const EmbeddingBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    input: t.Union([t.String(), t.Array(t.String()), t.Array(t.Integer()), t.Array(t.Array(t.Integer()))]),
    dimensions: t.Optional(t.Integer({ minimum: 1 })),
    encoding_format: t.Optional(t.Union([t.Literal('float'), t.Literal('base64')])),
  },
  { ...open, description: 'OpenAI embeddings request' },
)

export const ErrorBody = t.Object(
  {
    error: t.Object({
      message: t.String(),
      type: t.String(),
      param: t.Union([t.String(), t.Null()]),
      code: t.String(),
    }),
  },
  { description: 'The error envelope of every failed request' },
)

export const ModelObject = t.Object({
  id: t.String(),
  object: t.Literal('model'),
  created: t.Integer(),
  owned_by: t.String(),
})

export const ModelList = t.Object({
  object: t.Literal('list'),
  data: t.Array(ModelObject),
  next_cursor: t.Union([t.String(), t.Null()]),
})

/** Error responses every authenticated route may give, for the OpenAPI document. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  413: ErrorBody,
  429: ErrorBody,
  502: ErrorBody,
  503: ErrorBody,
  504: ErrorBody,
} as const

const Nullable = <T extends TSchema>(schema: T) => t.Union([schema, t.Null()])

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
    remaining: t.Object({
      requests: Nullable(t.Number()),
      tokens: Nullable(t.Number()),
      budget_tokens: Nullable(t.Number()),
      budget_usd: Nullable(t.Number()),
    }),
  },
  { additionalProperties: true },
)

/** `POST /v1/tokens/count` with a chat body: the prompt a chat completion would send. */
export const TokenCountChatBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    messages: t.Array(ChatMessage, { minItems: 1 }),
    tools: t.Optional(t.Array(t.Object({ type: t.String() }, open))),
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
