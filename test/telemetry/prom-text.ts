// A small reader of the Prometheus text format (exposition format 0.0.4), enough for tests:
// `name{label="value",...} number` sample lines; `#` lines (HELP, TYPE) are kept as help texts.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Scrape {
  samples: Sample[]
  /** HELP text by metric name. */
  help: Map<string, string>
  /** Sum of the samples named `name` whose labels include `labels` (0 when there are none). */
  value(name: string, labels?: Record<string, string>): number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = []
  const help = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const helpLine = /^# HELP (\S+) (.*)$/.exec(line)
      if (helpLine) help.set(helpLine[1]!, helpLine[2]!)
      continue
    }
    const match = SAMPLE.exec(line)
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, raw] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = raw!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    const text = match[3]!.toLowerCase() // prom-client writes "Nan"
    const value = text === '+inf' ? Infinity : text === '-inf' ? -Infinity : text === 'nan' ? NaN : Number(text)
    if (Number.isNaN(value) && text !== 'nan') throw new Error(`not a number in: ${line}`)
    samples.push({name: match[1]!, labels, value})
  }
  return {
    samples,
    help,
    value(name, wanted = {}) {
      return samples
        .filter((s) => s.name === name && Object.entries(wanted).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0)
    },
  }
}
