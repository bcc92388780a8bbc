import {Flags} from '@oclif/core'
import {DEFAULT_MASTER_URL, fileNameProblem, Zone} from '../protocol/index.js'
import {LOG_LEVELS, type LogLevel, parseLogLevel} from '../util/log.js'
import {formatBytes, parseDuration, parseSize} from '../util/parse.js'

// Flags shared by several commands. Durations and sizes are parsed by src/util/parse.ts; a bad value
// is a usage error (exit 2) carrying the parser's message.

/** A duration flag (`500ms`, `2s`, `10m`, `24h`) whose value is milliseconds; help shows the default as written. */
export function durationFlag(opts: {default: string; description: string; env?: string}) {
  return Flags.custom<number>({
    parse: async (input) => parseDuration(input),
    helpValue: '<duration>',
    env: opts.env,
  })({description: opts.description, default: parseDuration(opts.default), defaultHelp: async () => opts.default})
}

/** A size flag (`10MiB`, `10MB` = 10,000,000, or plain bytes) whose value is bytes. */
export function sizeFlag(opts: {default: string; description: string; min?: number; max?: number}) {
  const parse = async (input: string) => {
    const bytes = parseSize(input)
    if (opts.min !== undefined && bytes < opts.min) throw new Error(`"${input}" is too small: at least ${formatBytes(opts.min)}`)
    if (opts.max !== undefined && bytes > opts.max) throw new Error(`"${input}" is too big: at most ${formatBytes(opts.max)}`)
    return bytes
  }
  return Flags.custom<number>({parse, helpValue: '<size>'})({
    description: opts.description,
    default: parseSize(opts.default),
    defaultHelp: async () => opts.default,
  })
}

/** `--log-level` of the daemons (then CHUNKY_LOG_LEVEL): what the structured log shows, default info. */
export const logLevelFlag = Flags.custom<LogLevel>({
  parse: async (input) => parseLogLevel(input),
  helpValue: `<${LOG_LEVELS.join('|')}>`,
  env: 'CHUNKY_LOG_LEVEL',
})({description: 'least severe log lines to print; they are JSON lines on stdout unless it is a terminal', default: 'info'})

export function httpUrl(input: string): string {
  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw new Error(`"${input}" is not a URL: use something like http://127.0.0.1:7400`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${input}" is not an http:// or https:// URL`)
  return input.replace(/\/+$/, '')
}

/** One master URL or several, comma-separated (`A,B`: one leads, the others stand by): each must be an http(s) URL. */
export function httpUrls(input: string): string {
  const urls = input.split(',').map((url) => url.trim()).filter((url) => url !== '')
  if (urls.length === 0) throw new Error(`"${input}" names no master: use something like http://127.0.0.1:7400`)
  return urls.map(httpUrl).join(',')
}

// No defaults on the client flags: "not given" must stay visible so that the config file can fill in
// (flag, then environment, then `chunky config set`, then the built-in default). See ChunkyCommand.clientSettings.
export const masterFlag = Flags.string({
  description: `address of the master, or of several (A,B: the leader is found and followed) (then CHUNKY_MASTER, then \`chunky config set master\`) [default: ${DEFAULT_MASTER_URL}]`,
  env: 'CHUNKY_MASTER',
  helpValue: '<url[,url]>',
  parse: async (input) => httpUrls(input),
})

export const tokenFlag = Flags.string({
  description: 'cluster credential, printed by `chunky master` (then CHUNKY_TOKEN, then `chunky config set token`)',
  env: 'CHUNKY_TOKEN',
  helpValue: '<token>',
})

export const zoneFlag = Flags.string({
  description: 'your zone: among nodes with near-equal round trips (within 20%), prefer one in this zone (then CHUNKY_ZONE, then `chunky config set zone`)',
  env: 'CHUNKY_ZONE',
  helpValue: '<zone>',
  parse: async (input) => {
    const result = Zone.safeParse(input)
    if (!result.success) throw new Error(`"${input}" is not a zone: ${result.error.issues[0]?.message ?? 'bad zone'}`)
    return input
  },
})

/** A private CA to trust for HTTPS masters and nodes (ChunkyCommand.parse applies it). */
export const caFlag = Flags.string({
  description: 'trust this CA certificate (PEM) for an https:// master and nodes, besides the system\'s (then CHUNKY_CA)',
  env: 'CHUNKY_CA',
  helpValue: '<file>',
})

/** Whether the user typed `--NAME` (oclif fills in defaults, so the parsed value cannot tell). */
export function flagGiven(argv: string[], name: string): boolean {
  return argv.some((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`))
}

/** The flags every client command takes. */
export const clientFlags = {master: masterFlag, token: tokenFlag, ca: caFlag}

export async function fileName(input: string): Promise<string> {
  const problem = fileNameProblem(input)
  if (problem) throw new Error(`"${input}" is not a valid name: ${problem}`)
  return input
}
