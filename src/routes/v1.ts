import { Elysia, type TSchema } from 'elysia'
import { GatewayError } from '../errors.ts'
import { readJsonObject } from '../lib/body.ts'
import { compileCheck } from '../lib/validate.ts'
import type { ModelGroup, ModelRegistry } from '../models.ts'
import { modelNotFound, type Pipeline } from '../pipeline.ts'
import { allowsModel, type Endpoint, type GatewayRequest, type Identity } from '../plugin.ts'
import type { Services } from '../services.ts'
import { echo } from '../lib/key-text.ts'
import { decodePercent, modelPathId } from '../lib/percent.ts'
import {
  ChatCompletionBody,
  CompletionBody,
  EmbeddingBody,
  KeyInfo,
  ModelList,
  ModelObject,
  OrganizationHeader,
  TokenCount,
  TokenCountBody,
  TokenCountChatBody,
  TokenCountEmbeddingBody,
  v1Responses,
} from './schemas.ts'

export interface V1Options {
  pipeline: Pipeline
  models: ModelRegistry
  maxBodyBytes: number
  /** How long a body may take to arrive (0: no limit). @default 0 */
  bodyTimeoutMs?: number
  /** Read per request: the tokenizer in force is the one a plugin installed during setup, or the rough one. */
  services: Pick<Services, 'tokenizer'>
}

const security: Record<string, string[]>[] = [{ bearer: [] }, { apiKey: [] }]
/** What every /v1 operation's documentation shares: the API key, and the team a request may name. */
const client = { tags: ['OpenAI'], security, parameters: [OrganizationHeader] }

/** The OpenAI-compatible client API. Each handler hands straight to the pipeline. */
export function v1Routes({ pipeline, models, maxBodyBytes, bodyTimeoutMs = 0, services }: V1Options) {
  // Read and check in the parse step: compiled at boot, and Elysia's own validation (which decodes and
  // copies) stays off the hot path. The schema still documents the route through `requestBody`.
  const reader = (endpoint: Endpoint, schema: TSchema, more?: (body: Record<string, unknown>) => void) => {
    const compiled = compileCheck(schema)
    const check = more
      ? (body: Record<string, unknown>) => {
          const valid = compiled(body)
          more(valid)
          return valid
        }
      : compiled
    const checked = (body: Record<string, unknown>) => refusedOr(body, check)
    return screened(endpoint, (request) => readJsonObject(request, maxBodyBytes, bodyTimeoutMs).then(checked, refusedBody))
  }
  /**
   * `read` behind the key: a body over SCREEN_FROM_BYTES, or of unknown length, is read only once the
   * first authenticate hook has not refused the request without it (Pipeline.screen), so a caller
   * without a valid key cannot make the gateway read and parse megabytes (27 MB of nested JSON held
   * the serving thread 8 s). A smaller body costs nothing more: it is read as before. A refused body
   * of a stated length within maxBodyBytes is let through unread (Bun drops it, nothing parses it) and
   * its connection kept: closed while the client still sends, most clients report the failed write
   * (EPIPE) instead of the refusal that says why. One of unknown or larger length closes it.
   */
  const screened =
    (endpoint: Endpoint, read: (request: Request) => Promise<unknown>) =>
    ({ request, set }: { request: Request; set: { headers: Record<string, unknown> } }): Promise<unknown> => {
      const declared = request.headers.get('content-length')
      const length = declared === null ? NaN : Number(declared)
      if (length <= SCREEN_FROM_BYTES) return read(request)
      const refusal = pipeline.screen(endpoint, request, set.headers['x-request-id'] as string)
      if (refusal === undefined) return read(request)
      const close = !(length <= maxBodyBytes)
      return Promise.resolve(refusal).then((refused) => (refused ? new RefusedBody(refused, {}, close) : read(request)))
    }
  /**
   * A body the route refused (too large, not JSON, not valid) is a request like any other to the
   * plugins: it is authenticated first (a client without a valid key learns that, not what is wrong
   * with its body) and ends through the pipeline, so it is logged, counted and tied to its key.
   */
  const refuse = async (endpoint: Endpoint, refused: RefusedBody, request: Request, id: string): Promise<Response> => {
    const req = pipeline.createRequest(endpoint, request, id, refused.body)
    let response: Response
    try {
      const checked = pipeline.authenticate(req)
      const failed = checked instanceof Promise ? await checked : checked
      response = pipeline.fail(req, failed ?? refused.error)
    } catch (error) {
      // A hook that throws: the answer keeps the request's id, and the completion hooks hear of it.
      response = pipeline.failed(req, error)
    }
    // A body not read whole (too large, too slow) leaves the connection in the middle of it: it is
    // closed, whichever refusal is answered (a stranger's 401 too), so nobody holds it open.
    if (refused.closes || refused.error.status === 408 || refused.error.status === 413) response.headers.set('connection', 'close')
    return response
  }
  const jsonBody = (schema: TSchema) => ({ required: true, content: { 'application/json': { schema } } })
  // Two body shapes: checked against the one it claims to be, so an error names the field at fault.
  const checkChatCount = compileCheck(TokenCountChatBody)
  const checkEmbeddingCount = compileCheck(TokenCountEmbeddingBody)
  const countReader = screened('tokens.count', (request) =>
    readJsonObject(request, maxBodyBytes, bodyTimeoutMs).then((body) => refusedOr(body, countCheck(body)), refusedBody),
  )
  const countCheck = (body: Record<string, unknown>) => {
    const chat = 'messages' in body
    const embeddings = 'input' in body
    if (chat && embeddings) return () => countRefusal('has both messages and input; send one of them')
    if (!chat && !embeddings) return () => countRefusal(`has neither${'prompt' in body ? ' (a completions prompt is not counted here)' : ''}`)
    return chat ? checkChatCount : checkEmbeddingCount
  }
  // `body` is what the reader returned: a checked JSON object.
  const call = (endpoint: Endpoint) => ({ body, request, set }: { body: unknown; request: Request; set: { headers: Record<string, unknown> } }) => {
    const id = set.headers['x-request-id'] as string
    // The pipeline never throws and its every response carries the id. With `set` left empty Elysia hands
    // the response to Bun as it is, instead of copying it (and turning a bytes body into a stream) to merge headers.
    delete set.headers['x-request-id']
    if (body instanceof RefusedBody) return refuse(endpoint, body, request, id)
    return pipeline.handle(pipeline.createRequest(endpoint, request, id, body as Record<string, unknown>))
  }

  const visible = (req: GatewayRequest): ModelGroup[] => {
    const allowed = req.identity?.models ?? null
    const all = models.list()
    return allowed ? all.filter((g) => allowsModel(allowed, g.name)) : all
  }
  const modelObject = (g: ModelGroup) => ({ id: g.name, object: 'model' as const, created: g.created, owned_by: 'sluice' })

  const retrieveModel = async (request: Request, requestId: string, id: string): Promise<Response> => {
    const req = pipeline.createRequest('models.get', request, requestId)
    const refused = await pipeline.authenticate(req)
    if (refused) return pipeline.fail(req, refused)
    const group = visible(req).find((g) => g.name === id)
    if (!group) {
      return pipeline.fail(req, new GatewayError('model_not_found', `The model "${echo(id, 256)}" is not served to this key. GET /v1/models lists the models your key may use.`, { param: 'model' }))
    }
    return pipeline.answered(req, withHeaders(req, modelObject(group)))
  }

  return new Elysia({ name: 'sluice.v1' })
    .post('/v1/chat/completions', call('chat.completions'), {
      parse: reader('chat.completions', ChatCompletionBody, checkTools),
      detail: { ...client, requestBody: jsonBody(ChatCompletionBody), summary: 'Create a chat completion (plain or streamed as server-sent events)', responses: v1Responses.chat },
    })
    .post('/v1/completions', call('completions'), {
      parse: reader('completions', CompletionBody),
      detail: { ...client, requestBody: jsonBody(CompletionBody), summary: 'Create a legacy text completion', responses: v1Responses.completions },
    })
    .post('/v1/embeddings', call('embeddings'), {
      parse: reader('embeddings', EmbeddingBody),
      detail: { ...client, requestBody: jsonBody(EmbeddingBody), summary: 'Create embeddings', responses: v1Responses.embeddings },
    })
    .get(
      '/v1/models',
      async ({ request, set }) => {
        const req = pipeline.createRequest('models.list', request, set.headers['x-request-id'] as string)
        const refused = await pipeline.authenticate(req)
        if (refused) return pipeline.fail(req, refused)
        return pipeline.answered(req, withHeaders(req, { object: 'list', data: visible(req).map(modelObject), next_cursor: null }))
      },
      { response: { 200: ModelList }, detail: { ...client, summary: 'List the models the calling key may use', responses: v1Responses.models } },
    )
    // Elysia's router has decoded the path parameter already; decoding again would break ids holding a "%".
    // It gives null for a malformed escape ("%zz"), which is then taken as sent.
    .get('/v1/models/:id', ({ request, set, params }) => retrieveModel(request, set.headers['x-request-id'] as string, (params.id as string | null) ?? modelPathId(request)), {
      response: { 200: ModelObject },
      detail: { ...client, summary: 'Retrieve one model', responses: v1Responses.model },
    })
    // An id holding a raw slash (`meta-llama/Llama-3.1-8B`), as openai-python and other clients put it
    // in the path unencoded. The router leaves the part after the slash as sent, so the id is decoded here, once.
    .get('/v1/models/:id/*', ({ request, set }) => retrieveModel(request, set.headers['x-request-id'] as string, decodePercent(modelPathId(request))), {
      response: { 200: ModelObject },
      detail: { hide: true },
    })
    .post(
      '/v1/tokens/count',
      async ({ body, request, set }) => {
        if (body instanceof RefusedBody) {
          const id = set.headers['x-request-id'] as string
          delete set.headers['x-request-id']
          return refuse('tokens.count', body, request, id)
        }
        const req = pipeline.createRequest('tokens.count', request, set.headers['x-request-id'] as string, body as Record<string, unknown>)
        const refused = await pipeline.authenticate(req)
        if (refused) return pipeline.fail(req, refused)
        const group = models.get(req.model ?? '')
        if (!group) return pipeline.fail(req, modelNotFound(req.model))
        const tokenizer = services.tokenizer
        const endpoint: Endpoint = Array.isArray(req.body.messages) ? 'chat.completions' : 'embeddings'
        let promptTokens: number
        try {
          promptTokens = await tokenizer.countPrompt(endpoint, req.body, group.name, 'count')
        } catch (error) {
          // The counter's own refusals (at capacity, overrun) are answers; anything else is a bug for the error handler.
          if (error instanceof GatewayError) return pipeline.fail(req, error)
          throw error
        }
        return pipeline.answered(req, withHeaders(req, { model: group.name, encoding: tokenizer.encodingFor(group.name), prompt_tokens: promptTokens }))
      },
      {
        parse: countReader,
        response: { 200: TokenCount },
        detail: {
          ...client,
          requestBody: jsonBody(TokenCountBody),
          summary: 'Count the prompt tokens of a chat or embeddings request without calling the model',
          description:
            'Counts as the model\'s tokenizer does (tiktoken, OpenAI\'s rules for messages, names, tools and images) when the `tokens` plugin is loaded; otherwise an estimate of 4 characters a token, with `encoding: "estimate"`. Needs the `tokens` scope.',
          responses: v1Responses.count,
        },
      },
    )
    .get(
      '/v1/key',
      async ({ request, set }) => {
        const req = pipeline.createRequest('key', request, set.headers['x-request-id'] as string)
        const refused = await pipeline.authenticate(req)
        if (refused) return pipeline.fail(req, refused)
        return pipeline.answered(req, withHeaders(req, { ...KEY_DEFAULTS, ...identityFacts(req.identity), ...(await pipeline.describe(req)) }))
      },
      {
        response: { 200: KeyInfo },
        detail: {
          ...client,
          summary: 'Introspect the calling key: owner, team, environment, scopes, models, limits, remaining quota, expiry',
          description: 'The self-service answer to "why is my key refused?". A refused key gets the error that says why.',
          responses: v1Responses.key,
        },
      },
    )
}

/**
 * What a /v1 body reader returns for a body it refused, in place of the body: the route answers
 * it through the pipeline (see `refuse`) rather than Elysia's error handler, which no plugin hears.
 */
class RefusedBody {
  constructor(
    readonly error: GatewayError,
    /** What could be read of it (a valid JSON object that failed its check), for the log row's model. */
    readonly body: Record<string, unknown> = {},
    /** Refused before it was read, its length unknown or over the limit (see `screened`): the connection is closed after the answer. */
    readonly closes = false,
  ) {}
}

/** Bodies up to this size are read before the key is judged, as always; larger ones after (see `screened`). */
const SCREEN_FROM_BYTES = 16 * 1024

/** The body as its check returns it, or what it refused. */
function refusedOr(body: Record<string, unknown>, check: (body: Record<string, unknown>) => Record<string, unknown>): Record<string, unknown> | RefusedBody {
  try {
    return check(body)
  } catch (error) {
    if (error instanceof GatewayError) return new RefusedBody(error, body)
    throw error
  }
}

/** /v1/tokens/count's refusal of a body that is neither of the two it counts. */
function countRefusal(why: string): never {
  throw new GatewayError('invalid_request', `POST /v1/tokens/count takes a chat body (model, messages, tools?) or an embeddings body (model, input); this one ${why}.`, { param: 'messages' })
}

/** A function's name as OpenAI takes it. */
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/
/** A function name as a message shows it: cut at 80 characters, a key in it masked (echo; messages never hold a whole key). */
const shownName = (name: string): string => `"${echo(name, 80)}"`

/**
 * What the schema does not say about a chat request's tools, checked as OpenAI checks it (the
 * Anthropic and Gemini adapters need it too): a function tool names its function, each name once;
 * a tool_choice that names a function names one of them; "required" needs a tool. Tools of other
 * types (OpenAI's custom tools, a server's own) go as sent.
 */
function checkTools(body: Record<string, unknown>): void {
  const tools = Array.isArray(body.tools) ? (body.tools as Array<Record<string, unknown>>) : []
  const names = new Set<string>()
  tools.forEach((tool, i) => {
    if (tool.type !== 'function') return
    const fn = tool.function
    const name = typeof fn === 'object' && fn !== null ? (fn as Record<string, unknown>).name : undefined
    const param = `tools[${i}].function.name`
    if (typeof name !== 'string' || !FUNCTION_NAME.test(name)) {
      const got = typeof name === 'string' ? shownName(name) : 'none'
      throw new GatewayError('invalid_request', `Invalid value for "${param}": a function tool needs a name of 1 to 64 letters, digits, _ or -; got ${got}.`, { param })
    }
    if (names.has(name)) throw new GatewayError('invalid_request', `Invalid value for "${param}": the function ${shownName(name)} is given twice; tool names must be unique.`, { param })
    names.add(name)
  })
  const choice = body.tool_choice
  if (choice === 'required' && tools.length === 0) {
    throw new GatewayError('invalid_request', 'Invalid value for "tool_choice": "required" needs at least one tool in tools.', { param: 'tool_choice' })
  }
  if (typeof choice === 'object' && choice !== null && (choice as Record<string, unknown>).type === 'function') {
    const fn = (choice as Record<string, unknown>).function
    const name = typeof fn === 'object' && fn !== null ? (fn as Record<string, unknown>).name : undefined
    if (typeof name !== 'string') {
      throw new GatewayError('invalid_request', 'Invalid value for "tool_choice.function.name": name the function the model must call.', { param: 'tool_choice.function.name' })
    }
    if (!names.has(name)) {
      throw new GatewayError('invalid_request', `Invalid value for "tool_choice.function.name": ${shownName(name)} is not one of the functions in tools.`, { param: 'tool_choice.function.name' })
    }
  }
}

/** A body that could not be read as JSON (or was too large), as a refusal; anything else is the error handler's. */
function refusedBody(error: unknown): RefusedBody {
  if (error instanceof GatewayError) return new RefusedBody(error)
  throw error
}

/** Fields of `GET /v1/key` that stay null when no plugin fills them. */
const KEY_DEFAULTS = {
  object: 'api_key',
  id: null,
  name: null,
  environment: null,
  status: null,
  user_id: null,
  team_id: null,
  models: null,
  scopes: null,
  limits: null,
  budget: null,
  expires_at: null,
  remaining: { requests: null, tokens: null, budget_tokens: null, budget_usd: null },
}

/**
 * What `GET /v1/key` can tell of whoever the authenticate stage established, whichever plugin did
 * (one of the operator's own, say); the plugins' `describe` adds to it and may restate it.
 */
function identityFacts(identity: Identity | undefined): Partial<Record<keyof typeof KEY_DEFAULTS, unknown>> {
  if (identity === undefined) return {}
  return {
    id: identity.keyId,
    user_id: identity.userId,
    team_id: identity.teamId,
    environment: identity.environment,
    models: identity.models,
    scopes: identity.scopes,
  }
}

/** A JSON response carrying the headers plugins collected (rate limits). */
function withHeaders(req: GatewayRequest, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: { 'content-type': 'application/json', 'x-request-id': req.id, ...req.responseHeaders },
  })
}
