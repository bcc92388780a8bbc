import {readFile} from 'node:fs/promises'
import {Flags} from '@oclif/core'
import {z} from 'zod'
import {UsageError} from './failure.js'
import {flagGiven} from './flags.js'

// `chunky master --config FILE` and `chunky node --config FILE`: the daemons' flags from a JSON file
// (for a service: one file under /etc instead of a long command line). Each setting comes from its
// flag, else its environment variable, else the file, else the default: a file setting is passed to
// oclif as the flag it names only when neither the flag nor its variable is given, so oclif checks the
// value exactly as it checks a typed one.

export const configFlag = Flags.string({
  description: 'read settings from this JSON file: {"flag-name": value, …}; a flag or its environment variable wins over the file, the file over the default',
  helpValue: '<file>',
})

/** What the file may hold for one flag: its type as oclif declares it. */
interface FlagShape {
  type: 'boolean' | 'option'
  multiple?: boolean
  allowNo?: boolean
  env?: string
}

/**
 * Flags that are ways of giving one setting (`--secret`, `--secret-file`, `--token` and CHUNKY_SECRET):
 * when any of them is on the command line, or `env` is set, the file's values for all of them are left out.
 */
export interface SettingGroup {
  flags: readonly string[]
  env?: string
}

/** `argv` with the file's settings added as flags (those not given on the command line or in the environment). */
export async function argvWithConfigFile(argv: string[], flags: Record<string, FlagShape>, groups: readonly SettingGroup[] = [], env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const path = configFileArg(argv)
  if (path === undefined) return argv
  const settings = await readSettings(path, flags)
  const onCommandLine = (name: string) => flagGiven(argv, name) || Boolean(flags[name]?.allowNo && flagGiven(argv, `no-${name}`))
  const added: string[] = []
  for (const [name, value] of Object.entries(settings)) {
    const flag = flags[name]!
    if (onCommandLine(name)) continue
    if (flag.env !== undefined && env[flag.env] !== undefined) continue
    const group = groups.find((g) => g.flags.includes(name))
    if (group && (group.flags.some(onCommandLine) || (group.env !== undefined && env[group.env] !== undefined))) continue
    if (flag.type === 'boolean') added.push(value ? `--${name}` : `--no-${name}`)
    else for (const one of Array.isArray(value) ? value : [value]) added.push(`--${name}=${String(one)}`)
  }
  return [...argv, ...added]
}

/** A usage error about a flag the config file set says so, so the user looks in the right place. */
export function inConfigFile(err: unknown, argv: readonly string[]): unknown {
  const path = configFileArg(argv)
  if (path === undefined || !(err instanceof UsageError)) return err
  return new UsageError(`${err.message.replace(/ \(see `[^`]*`\)$/, '')} (flags not on the command line come from the config file ${path})`)
}

export function configFileArg(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') break
    if (argv[i] === '--config') return argv[i + 1]
    if (argv[i]!.startsWith('--config=')) return argv[i]!.slice('--config='.length)
  }
  return undefined
}

async function readSettings(path: string, flags: Record<string, FlagShape>): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the config file ${path} (--config): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`the config file ${path} is not JSON (${(err as Error).message}): write {"flag-name": value, …}`)
  }
  const scalar = z.union([z.string(), z.number()])
  const shape: Record<string, z.ZodType> = {}
  for (const [name, flag] of Object.entries(flags)) {
    if (name === 'config' || name === 'help' || name === 'json') continue
    shape[name] = (flag.type === 'boolean' ? z.boolean() : flag.multiple ? z.union([scalar, z.array(scalar)]) : scalar).optional()
  }
  const result = z.strictObject(shape).safeParse(parsed)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const where = issue.path.length > 0 ? `"${issue.path.join('.')}"` : 'the file'
    const what = issue.code === 'unrecognized_keys' ? `unknown setting${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((k) => `"${k}"`).join(', ')}: the keys are the command's flag names (see --help)` : `${where}: ${issue.message}`
    throw new UsageError(`the config file ${path}: ${what}`)
  }
  return Object.fromEntries(Object.entries(result.data as Record<string, unknown>).filter(([, value]) => value !== undefined))
}
