/**
 * A strict reader of Prometheus' text exposition format 0.0.4, written here rather than
 * imported from the code under test: every line must be `# HELP name text`, `# TYPE name
 * type`, or `name{label="value",…} value`, else it throws naming the line.
 */

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface ParsedMetrics {
  samples: Sample[]
  types: Map<string, string>
  help: Map<string, string>
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(\\{(.*)\\})? (\\S+)$`)
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/
const VALUE = /^(NaN|[+-]Inf|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$/

export function parseMetrics(text: string): ParsedMetrics {
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline')
  const samples: Sample[] = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line)
      if (!m) throw new Error(`bad HELP line: ${line}`)
      help.set(m[1]!, m[2]!)
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line)
      if (!m) throw new Error(`bad TYPE line: ${line}`)
      if (types.has(m[1]!)) throw new Error(`TYPE given twice for ${m[1]}`)
      types.set(m[1]!, m[2]!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`)
    if (!VALUE.test(m[4]!)) throw new Error(`bad value in: ${line}`)
    const labels: Record<string, string> = {}
    let rest = m[3] ?? ''
    while (rest.length) {
      const l = LABEL.exec(rest)
      if (!l) throw new Error(`bad labels in: ${line}`)
      if (l[1]! in labels) throw new Error(`label ${l[1]} twice in: ${line}`)
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
      rest = rest.slice(l[0].length)
    }
    const raw = m[4]!
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw)
    samples.push({ name: m[1]!, labels, value })
  }
  return { samples, types, help }
}

/** The value of the one sample with this name and (at least) these labels; undefined when none. */
export function sampleValue(parsed: ParsedMetrics, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = parsed.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`)
  return found[0]?.value
}

/** The sum over every sample with this name and (at least) these labels. */
export function sampleSum(parsed: ParsedMetrics, name: string, labels: Record<string, string> = {}): number {
  return parsed.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0)
}

/** GET /metrics and parse it. */
export async function scrape(baseUrl: string): Promise<ParsedMetrics> {
  const res = await fetch(`${baseUrl}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  return parseMetrics(await res.text())
}
