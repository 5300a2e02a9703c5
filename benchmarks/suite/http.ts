/**
 * The HTTP matrix: fixed scenarios × targets × loads, in one run on one machine, every target
 * its own process behind (or being) the same mock upstream. Targets: the mock itself, the raw
 * Bun pass-through (the baseline), the gateway with no plugins, with one plugin at a time (the
 * per-plugin deltas), with the full stack, and the Portkey gateway as a peer. Every target is
 * verified with the scenario's own requests before any load; rounds rotate the order.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CHAT_BODY, LARGE_CHAT_BODY, STREAM_BODY } from '../fixtures/bodies.ts'
import type { ServerProcess } from '../fixtures/processes.ts'
import { verifyTarget } from '../http/verify.ts'
import { checkBalanceSpreads, checkLarge, checkLimited, checkLogging, checkQuotaCharged, checkQuotaInRedis, checkUnauth } from './checks.ts'
import { measure, warmUp, type Credentials, type LoadSettings, type LoadTarget, type Mode, type Sample, type Scenario } from './load.ts'
import type { MemoryProfile } from '../../src/lib/memory.ts'
import { SCENARIO_IDS as SCENARIO_ORDER, type DeltaPlugin, type ScenarioId, type SuiteOptions } from './options.ts'
import { GENEROUS, UPSTREAM_KEYS, ensurePeer, mockStats, peerHeaders, provisionKey, startGateway, startPeer, startRawProxy, type GatewaySpec, type Stack } from './services.ts'

/** Every plugin, in the order the built-ins run. */
export const FULL_STACK = ['auth', 'tokens', 'quota', 'balance', 'logging'] as const

/** Gateway configurations by target id. The quota delta runs with auth: without an identity it has nothing to limit. */
const GATEWAYS: Record<string, { label: string; plugins: readonly string[]; redis: boolean; memory?: MemoryProfile }> = {
  bare: { label: 'sluice, no plugins', plugins: [], redis: false },
  auth: { label: 'sluice + auth', plugins: ['auth'], redis: false },
  quota: { label: 'sluice + auth + quota (Redis)', plugins: ['auth', 'quota'], redis: true },
  tokens: { label: 'sluice + tokens', plugins: ['tokens'], redis: false },
  balance: { label: 'sluice + balance (4 keys)', plugins: ['balance'], redis: false },
  logging: { label: 'sluice + logging', plugins: ['logging'], redis: false },
  full: { label: 'sluice full stack', plugins: FULL_STACK, redis: true },
  // What the memory profile for small RSS costs in throughput (src/lib/memory.ts).
  lean: { label: 'sluice full stack, SLUICE_MEMORY=lean', plugins: FULL_STACK, redis: true, memory: 'lean' },
}

export const TARGET_LABELS: Record<string, string> = {
  mock: 'mock (direct)',
  raw: 'raw Bun proxy',
  rawalloc: 'raw Bun proxy, MIMALLOC_PURGE_DELAY=-1',
  ...Object.fromEntries(Object.entries(GATEWAYS).map(([id, g]) => [id, g.label])),
  portkey: 'Portkey 1.15.2',
}

/** Table order of the targets. */
export const TARGET_ORDER = ['mock', 'raw', 'rawalloc', 'bare', 'auth', 'quota', 'tokens', 'balance', 'logging', 'full', 'lean', 'portkey']

/** Which row a plugin row is priced against: quota against auth (it needs it), the rest against no plugins. */
export const DELTA_REFERENCE: Record<string, string> = { auth: 'bare', quota: 'auth', tokens: 'bare', balance: 'bare', logging: 'bare' }

export const SCENARIO_LABELS: Record<ScenarioId, string> = {
  chat: 'chat (1 KB prompt)',
  stream: 'stream (16 chunks)',
  mix: 'mix (10 % 64 KB prompts)',
  unauth: '401 unknown key',
  limited: '429 over rpm',
}

/** The rpm of the key the 429 scenario uses: spent by the first request, refilled one per minute. */
const LIMITED_RPM = 1

/** What each scenario measures, by mode. */
interface Cell {
  scenario: ScenarioId
  concurrency: string[]
  rate: string[]
}

/** The fixed matrix of this run. */
export function planMatrix(o: SuiteOptions, peer: boolean): Cell[] {
  const cells: Cell[] = []
  const p = peer ? ['portkey'] : []
  if (o.parts.has('http')) {
    const deltas: string[] = o.deltaPlugins as DeltaPlugin[]
    for (const scenario of o.scenarios) {
      if (scenario === 'chat' || scenario === 'stream') {
        // rawalloc: the baseline with the allocator setting the gateway runs with (src/lib/memory.ts).
        cells.push({ scenario, concurrency: ['mock', 'raw', 'rawalloc', 'bare', ...deltas, 'full', 'lean', ...p], rate: ['mock', 'raw', 'bare', 'full', ...p] })
      } else if (scenario === 'mix') {
        cells.push({ scenario, concurrency: ['mock', 'raw', 'bare', 'full'], rate: ['mock', 'raw', 'bare', 'full'] })
      } else {
        cells.push({ scenario, concurrency: ['full'], rate: ['full'] })
      }
    }
  }
  // The peer alone (or with scenarios other than chat and stream): its own small comparison.
  if (peer) {
    for (const scenario of ['chat', 'stream'] as const) {
      if (!cells.some((c) => c.scenario === scenario)) cells.unshift({ scenario, concurrency: ['mock', 'raw', 'full', 'portkey'], rate: ['mock', 'raw', 'full', 'portkey'] })
    }
    cells.sort((a, b) => SCENARIO_ORDER.indexOf(a.scenario) - SCENARIO_ORDER.indexOf(b.scenario))
  }
  return cells
}

/** Seconds the matrix should take (for the estimate printed at the start). */
export function estimateMatrixS(cells: readonly Cell[], o: SuiteOptions): number {
  let s = 0
  const targets = new Set<string>()
  for (const c of cells) {
    const perRound = c.concurrency.length * (o.durationS + 0.8) + c.rate.length * (o.durationS + 2.5)
    s += o.rounds * perRound + new Set([...c.concurrency, ...c.rate]).size * (o.warmupS + 0.5)
    for (const t of [...c.concurrency, ...c.rate]) targets.add(t)
  }
  return s + targets.size * 3
}

/** A well-formed key no database knows (same length as a real one, so request sizes match). */
export function unknownKey(): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
  return `sk-dev-${Array.from(crypto.getRandomValues(new Uint8Array(43)), (b) => alphabet[b % 62]).join('')}`
}

/** What the matrix produced. */
export interface MatrixResult {
  samples: Sample[]
  cells: Cell[]
  verified: Record<string, string[]>
  notes: string[]
}

export async function runMatrix(o: SuiteOptions, stack: Stack, ctx: { mock: ServerProcess; redisUrl: string | null; redisPid: number | null; adminKey: string }): Promise<MatrixResult> {
  const log = stack.log
  const notes: string[] = []
  let peerEntry: string | null = null
  if (o.parts.has('peer')) {
    const peer = await ensurePeer(log)
    if ('skipped' in peer) {
      notes.push(`Portkey rows skipped: ${peer.skipped}`)
      log(`note: Portkey skipped: ${peer.skipped}`)
    } else peerEntry = peer.entry
  }
  const cells = planMatrix(o, peerEntry !== null)
  if (o.deltaPlugins.length > 0 && !o.scenarios.some((s) => s === 'chat' || s === 'stream')) {
    notes.push('per-plugin delta rows are measured on chat and stream only; neither was selected')
  }
  if (cells.length === 0) return { samples: [], cells, verified: {}, notes }

  // Files the load generators read.
  const files = { chat: join(stack.tmp, 'chat.json'), stream: join(stack.tmp, 'stream.json'), large: join(stack.tmp, 'large.json') }
  writeFileSync(files.chat, CHAT_BODY)
  writeFileSync(files.stream, STREAM_BODY)
  writeFileSync(files.large, LARGE_CHAT_BODY)
  const scenarios: Record<ScenarioId, Scenario> = {
    chat: { id: 'chat', label: SCENARIO_LABELS.chat, bodyFile: files.chat, stream: false, expectStatus: 200 },
    stream: { id: 'stream', label: SCENARIO_LABELS.stream, bodyFile: files.stream, stream: true, expectStatus: 200 },
    mix: { id: 'mix', label: SCENARIO_LABELS.mix, bodyFile: files.chat, stream: false, expectStatus: 200, large: { file: files.large, every: 10 } },
    unauth: { id: 'unauth', label: SCENARIO_LABELS.unauth, bodyFile: files.chat, stream: false, expectStatus: 401 },
    limited: { id: 'limited', label: SCENARIO_LABELS.limited, bodyFile: files.chat, stream: false, expectStatus: 429 },
  }

  // Start every target the matrix needs, each in its own process.
  const needed = new Set(cells.flatMap((c) => [...c.concurrency, ...c.rate]))
  const targets = new Map<string, LoadTarget & { origin: string }>()
  const keys = new Map<string, { id: string; key: string }>()
  const add = (id: string, server: ServerProcess, headers?: Record<string, string>) => {
    const redis = GATEWAYS[id]?.redis === true && ctx.redisPid !== null ? [ctx.redisPid] : undefined
    targets.set(id, { id, label: TARGET_LABELS[id] ?? id, url: `${server.origin}/v1/chat/completions`, pids: [server.pid], origin: server.origin, ...(headers && { headers }), ...(redis && { sidePids: redis }) })
  }
  if (needed.has('mock')) add('mock', ctx.mock)
  if (needed.has('raw')) add('raw', await startRawProxy(stack, ctx.mock.origin))
  if (needed.has('rawalloc')) add('rawalloc', await startRawProxy(stack, ctx.mock.origin, true))
  for (const id of TARGET_ORDER) {
    const g = GATEWAYS[id]
    if (g === undefined || !needed.has(id)) continue
    if (g.redis && ctx.redisUrl === null) throw new Error(`${g.label} needs Redis`)
    const spec: GatewaySpec = { name: id, plugins: [...g.plugins], redisUrl: g.redis ? ctx.redisUrl : null, ...(g.memory && { memory: g.memory }) }
    log(`starting ${g.label}…`)
    const server = await startGateway(stack, spec, ctx.mock.origin, ctx.adminKey)
    add(id, server)
    if (g.plugins.includes('auth')) keys.set(id, await provisionKey(server.origin, ctx.adminKey, `bench-${id}`, GENEROUS))
  }
  if (needed.has('portkey') && peerEntry !== null) add('portkey', await startPeer(stack, peerEntry), peerHeaders(ctx.mock.origin))

  // Credentials: the gateway's own key where auth runs; Portkey forwards its bearer as the upstream key;
  // elsewhere an unknown key of the same length, so every target gets the same bytes.
  const dummy = unknownKey()
  const unknown = unknownKey()
  let limitedKey: string | null = null
  const full = targets.get('full')
  if (full !== undefined && cells.some((c) => c.scenario === 'limited')) {
    limitedKey = (await provisionKey(full.origin, ctx.adminKey, 'bench-limited', { limits: { rpm: LIMITED_RPM } })).key
  }
  const credentialsFor = (target: string, scenario: ScenarioId): Credentials => {
    if (target === 'portkey') return { apiKey: UPSTREAM_KEYS[0]!.secret }
    if (scenario === 'unauth') return { apiKey: unknown }
    if (scenario === 'limited') return { apiKey: limitedKey ?? dummy }
    return { apiKey: keys.get(target)?.key ?? dummy }
  }

  // Correctness first.
  const verified: Record<string, string[]> = {}
  const note = (id: string, what: string) => (verified[id] ??= []).push(what)
  const upstreamSecrets = new Set(UPSTREAM_KEYS.map((k) => `Bearer ${k.secret}`))
  for (const id of TARGET_ORDER) {
    const t = targets.get(id)
    if (t === undefined) continue
    const scenariosOf = new Set(cells.filter((c) => c.concurrency.includes(id) || c.rate.includes(id)).map((c) => c.scenario))
    const creds = credentialsFor(id, 'chat')
    // Every target, whatever its scenarios: the plugin checks below read what these requests left (the key's charge, its log rows).
    {
      const before = await mockStats(ctx.mock.origin)
      const v = await verifyTarget(t.label, t.url.replace(/\/chat\/completions$/, ''), creds.apiKey, t.headers)
      const after = await mockStats(ctx.mock.origin)
      if (id !== 'mock' && after.requests - before.requests < 2) throw new Error(`${t.label} answered without calling the mock upstream`)
      if (GATEWAYS[id] !== undefined && !upstreamSecrets.has(String(after.last_authorization))) throw new Error(`${t.label} did not send a configured upstream key (saw ${after.last_authorization})`)
      if (id === 'portkey' && after.last_authorization !== `Bearer ${UPSTREAM_KEYS[0]!.secret}`) throw new Error(`Portkey did not forward the upstream key (saw ${after.last_authorization})`)
      note(id, `chat: a chat.completion with usage ("${v.chatContent.slice(0, 24)}…"); stream: text/event-stream, ${v.streamFrames} frames parsed strictly, usage chunk, [DONE]; the upstream was called${GATEWAYS[id] ? ' with a configured upstream key' : ''}`)
    }
    if (scenariosOf.has('mix')) note(id, await checkLarge(t.label, t.url, files.large, creds.apiKey, t.headers))
    if (scenariosOf.has('unauth')) note(id, await checkUnauth(t.label, t.url, CHAT_BODY, unknown))
    if (scenariosOf.has('limited') && limitedKey !== null) note(id, await checkLimited(t.label, t.url, CHAT_BODY, limitedKey, LIMITED_RPM))
    // Every plugin of the row's label at work, not only loaded: each gateway row, not only the full stack.
    const key = keys.get(id)
    const plugins = GATEWAYS[id]?.plugins ?? []
    if (plugins.includes('auth') && !scenariosOf.has('unauth')) note(id, await checkUnauth(t.label, t.url, CHAT_BODY, unknown))
    if (plugins.includes('quota')) {
      if (key === undefined) throw new Error(`${t.label}: quota without a key`)
      note(id, await checkQuotaCharged(t.label, t.origin, key.key, key.id, GENEROUS.budget.tokens))
      if (GATEWAYS[id]?.redis === true && ctx.redisUrl !== null) note(id, await checkQuotaInRedis(t.label, t.url, key.key, key.id, ctx.redisUrl))
    }
    if (plugins.includes('balance')) note(id, await checkBalanceSpreads(t.label, t.url, creds.apiKey, ctx.mock.origin))
    if (plugins.includes('logging')) note(id, await checkLogging(t.label, t.origin, ctx.adminKey, key?.id))
    log(`verified ${t.label}`)
  }
  if (cells.some((c) => c.scenario === 'limited')) notes.push(`The 429 key has rpm ${LIMITED_RPM}: its bucket refills one request per minute, so up to one 200 per minute of that scenario is correct.`)

  const settings: LoadSettings = { durationS: o.durationS, connections: o.connections, threads: o.threads, rate: o.rate }
  const samples: Sample[] = []
  const total = cells.reduce((n, c) => n + o.rounds * (c.concurrency.length + c.rate.length), 0)
  const started = performance.now()
  for (const cell of cells) {
    const scenario = scenarios[cell.scenario]
    const ids = [...new Set([...cell.concurrency, ...cell.rate])].filter((id) => targets.has(id))
    for (const id of ids) await warmUp(targets.get(id)!, scenario, credentialsFor(id, cell.scenario), settings, o.warmupS)
    for (let round = 1; round <= o.rounds; round++) {
      for (const mode of ['concurrency', 'rate'] as const satisfies readonly Mode[]) {
        const list = cell[mode].filter((id) => targets.has(id))
        // Rotate the order each round so slow drift does not always favour the same target.
        const order = list.map((_, i) => list[(i + round - 1) % list.length]!)
        for (const id of order) {
          const sample = await measure(targets.get(id)!, scenario, mode, round, credentialsFor(id, cell.scenario), settings)
          samples.push(sample)
          const done = samples.length
          const eta = ((performance.now() - started) / done) * (total - done) / 1000
          log(
            `[${done}/${total}, ~${Math.ceil(eta / 60)} min left] ${cell.scenario}/${mode} r${round} ${TARGET_LABELS[id]}: ` +
              `${Math.round(sample.rps).toLocaleString('en-US')} req/s, p50 ${sample.p50Ms.toFixed(2)} ms, ${Math.round(sample.cpuUsPerReq)} µs CPU/req, ${Math.round(sample.peakRssMb)} MB` +
              (sample.wrong + sample.errors > 0 ? `, ${sample.wrong} wrong status, ${sample.errors} errors` : ''),
          )
          // Let sockets of the last run close before the next starts.
          await Bun.sleep(300)
        }
      }
    }
  }
  return { samples, cells, verified, notes }
}
