// Daemons log structured events: one line per event that matters, with an `event` name and the ids
// involved as fields, and today's human sentence as the message. The shape is pino's calling
// convention (src/telemetry/logger.ts makes the real one), so this file needs no dependency.

export type LogFields = Record<string, unknown>

export interface LogFn {
  (fields: LogFields, message: string): void
  (message: string): void
}

export interface Logger {
  trace: LogFn
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
}

/** A logger that adds `fields` to every line (a node's id, so lines from many nodes can be told apart). */
export function withFields(log: Logger, fields: LogFields): Logger {
  // Called through `log` each time: pino's methods need it as `this`.
  const level = (name: keyof Logger): LogFn =>
    ((first: LogFields | string, message?: string) =>
      typeof first === 'string' ? log[name]({...fields}, first) : log[name]({...fields, ...first}, message ?? '')) as LogFn
  return {trace: level('trace'), debug: level('debug'), info: level('info'), warn: level('warn'), error: level('error')}
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** `--log-level` (and CHUNKY_LOG_LEVEL): one of LOG_LEVELS, any case; anything else is an error saying which. */
export function parseLogLevel(input: string): LogLevel {
  const level = input.trim().toLowerCase()
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel
  throw new Error(`"${input}" is not a log level: use one of ${LOG_LEVELS.join(', ')}`)
}

const nothing: LogFn = () => {}

export const silentLogger: Logger = {trace: nothing, debug: nothing, info: nothing, warn: nothing, error: nothing}

/**
 * A logger that hands each message (the human sentence, without fields) to `write`, at every level.
 * Tests use it to look for a sentence; `onFields` sees the structured part too.
 */
export function messageLogger(write: (message: string) => void, onFields?: (fields: LogFields, message: string) => void): Logger {
  const fn: LogFn = (first: LogFields | string, message?: string) => {
    if (typeof first === 'string') return write(first)
    write(message ?? '')
    onFields?.(first, message ?? '')
  }
  return {trace: fn, debug: fn, info: fn, warn: fn, error: fn}
}

const HIDDEN_FIELDS = new Set(['time', 'level', 'msg', 'pid', 'hostname', 'role'])
const MAX_VALUE_CHARS = 120

/**
 * The readable form of one JSON log record, for a terminal: `HH:MM:SS.mmm INFO message key=value …`
 * (local time; long values are cut with "…"; strings with spaces are quoted).
 */
export function formatLogRecord(record: Record<string, unknown>): string {
  const time = typeof record.time === 'number' || typeof record.time === 'string' ? new Date(record.time) : new Date()
  const clock = Number.isNaN(time.getTime())
    ? '--:--:--.---'
    : [time.getHours(), time.getMinutes(), time.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':') +
      `.${String(time.getMilliseconds()).padStart(3, '0')}`
  const level = String(record.level ?? 'info').toUpperCase().padEnd(5)
  const fields = Object.entries(record)
    .filter(([key, value]) => !HIDDEN_FIELDS.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${formatValue(value)}`)
  return [clock, level, String(record.msg ?? ''), ...fields].join(' ').trimEnd()
}

function formatValue(value: unknown): string {
  let text = typeof value === 'string' ? (/[\s"=]/.test(value) || value === '' ? JSON.stringify(value) : value) : JSON.stringify(value)
  if (text === undefined) text = String(value)
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text
}

/**
 * The human part of one line a daemon printed: the message of a JSON log record, or the line itself
 * (the `listening on` line and the ones before it are plain text). The demo shows these.
 */
export function logLineMessage(line: string): string {
  if (!line.startsWith('{')) return line
  try {
    const record = JSON.parse(line) as {msg?: unknown}
    return typeof record.msg === 'string' ? record.msg : line
  } catch {
    return line
  }
}

/** The JSON record of one line a daemon printed, or undefined for plain text. */
export function parseLogLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const record: unknown = JSON.parse(line)
    return record && typeof record === 'object' && !Array.isArray(record) ? (record as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
