import { Type as t, type TSchema } from '@sinclair/typebox'

/**
 * Request bodies of the OpenAI endpoints. They check what the gateway relies on and let
 * every other field through untouched (`additionalProperties`), so new OpenAI parameters
 * and providers' own extras (vLLM's `top_k`, `repetition_penalty`) reach the upstream
 * without a gateway release.
 */
const open = { additionalProperties: true } as const

/**
 * An optional field that may also be `null`: OpenAI takes `null` for "not set" on its optional
 * parameters, and clients send it (openai-python's `None`, LangChain's and LiteLLM's defaults).
 */
const OrNull = <T extends TSchema>(schema: T) => t.Optional(t.Union([schema, t.Null()]))

export const ChatMessage = t.Object(
  {
    role: t.String({ minLength: 1, description: 'system, developer, user, assistant, tool or function' }),
    content: t.Optional(t.Union([t.String(), t.Array(t.Unknown()), t.Null()])),
    name: OrNull(t.String()),
  },
  open,
)

// Bounded as a 32-bit integer, as providers take it: 1e300 is an integer to JSON, and no model's.
const MaxTokens = OrNull(t.Integer({ minimum: 1, maximum: 2_147_483_647 }))
const StreamOptions = OrNull(t.Object({ include_usage: OrNull(t.Boolean()) }, open))
const Tools = OrNull(t.Array(t.Object({ type: t.String() }, open)))

/** The sampling parameters both text endpoints share, at the bounds OpenAI documents. */
const sampling = {
  temperature: OrNull(t.Number({ minimum: 0, maximum: 2 })),
  top_p: OrNull(t.Number({ minimum: 0, maximum: 1 })),
  frequency_penalty: OrNull(t.Number({ minimum: -2, maximum: 2 })),
  presence_penalty: OrNull(t.Number({ minimum: -2, maximum: 2 })),
  // Checked because the Anthropic and Gemini adapters translate it (and would drop a wrong shape silently).
  stop: OrNull(t.Union([t.String(), t.Array(t.String())])),
}

export const ChatCompletionBody = t.Object(
  {
    model: t.String({ minLength: 1 }),
    messages: t.Array(ChatMessage, { minItems: 1 }),
    stream: OrNull(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    max_completion_tokens: MaxTokens,
    ...sampling,
    n: OrNull(t.Integer({ minimum: 1, maximum: 128 })),
    top_logprobs: OrNull(t.Integer({ minimum: 0, maximum: 20 })),
    tools: Tools,
    user: OrNull(t.String()),
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
    stream: OrNull(t.Boolean()),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    ...sampling,
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
    dimensions: OrNull(t.Integer({ minimum: 1 })),
    encoding_format: OrNull(t.Union([t.Literal('float'), t.Literal('base64')])),
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
