import {hostname} from 'node:os'
import pino from 'pino'
import {formatLogRecord, type Logger, type LogLevel} from '../util/log.js'

// The daemons' logger: pino, writing JSON lines to standard output when it is not a terminal (a log
// shipper, a file, a test), readable lines when it is. Formatting happens in this process (no worker
// transport), and lines are held back until the daemon printed its `listening on` line (SPEC.md:
// that line and the ones before it are plain text, logs come after).

export interface DaemonLoggerOptions {
  level: LogLevel
  /** Fields on every line, e.g. {role: 'master'}. */
  base?: Record<string, unknown>
  /** Default: JSON unless standard output is a terminal. */
  format?: 'json' | 'pretty'
  /** Where finished lines go; default standard output. */
  write?: (text: string) => void
}

export interface DaemonLogger {
  log: Logger
  /** Lets the held lines out, in order, and every later line at once. */
  release(): void
}

export function createDaemonLogger(opts: DaemonLoggerOptions): DaemonLogger {
  const write = opts.write ?? ((text: string) => void process.stdout.write(text))
  const pretty = (opts.format ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'pretty'
  let held: string[] | undefined = []
  const out = (line: string) => {
    const text = pretty ? `${prettyLine(line)}\n` : line
    if (held) held.push(text)
    else write(text)
  }
  const log = pino(
    {
      level: opts.level,
      base: {pid: process.pid, hostname: hostname(), ...opts.base},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {level: (label) => ({level: label})},
    },
    {write: out},
  )
  return {
    log,
    release() {
      const lines = held ?? []
      held = undefined
      if (lines.length > 0) write(lines.join(''))
    },
  }
}

function prettyLine(json: string): string {
  try {
    return formatLogRecord(JSON.parse(json) as Record<string, unknown>)
  } catch {
    return json.trimEnd()
  }
}

