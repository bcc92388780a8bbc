import {readFile, rm, mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {z} from 'zod'
import {Zone} from '../protocol/index.js'
import {writeFileAtomic} from '../util/fs.js'
import {httpUrls} from './flags.js'

// The user's config file (`chunky config set …`): the fallback after flags and environment for the
// master, the token and the zone. It lives in oclif's config.configDir (XDG_CONFIG_HOME/chunky or
// ~/.config/chunky; CHUNKY_CONFIG_DIR overrides), is JSON, written atomically and readable by its
// owner only (it holds the cluster credential).

export const CONFIG_KEYS = ['master', 'token', 'zone'] as const
export type ConfigKey = (typeof CONFIG_KEYS)[number]

export const ConfigFile = z.object({
  master: z.string().optional(),
  token: z.string().optional(),
  zone: z.string().optional(),
})
export type ConfigFile = z.infer<typeof ConfigFile>

export const CONFIG_FILE_NAME = 'config.json'

export function configPath(configDir: string): string {
  return join(configDir, CONFIG_FILE_NAME)
}

/** The file's settings; {} when there is none. A file that is not ours to read is an error that names it. */
export async function readConfig(configDir: string): Promise<ConfigFile> {
  const path = configPath(configDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new Error(`${path} is not JSON: fix it or remove it (\`chunky config path\` shows where it is)`)
  }
  const result = ConfigFile.safeParse(parsed)
  if (!result.success) throw new Error(`${path} has unexpected settings: ${z.prettifyError(result.error).replace(/\s+/g, ' ')}`)
  for (const key of CONFIG_KEYS) {
    const value = result.data[key]
    if (value === undefined) continue
    try {
      checkConfigValue(key, value)
    } catch (err) {
      throw new Error(`${path}: bad ${key}: ${(err as Error).message} (fix it with \`chunky config set ${key} …\`)`)
    }
  }
  return result.data
}

export async function writeConfig(configDir: string, config: ConfigFile): Promise<void> {
  await mkdir(configDir, {recursive: true, mode: 0o700})
  const path = configPath(configDir)
  const empty = Object.values(config).every((value) => value === undefined)
  if (empty) {
    await rm(path, {force: true})
    return
  }
  await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, 0o600)
}

/** Checks a value before it is written, so a typo fails now rather than at the next upload. */
export function checkConfigValue(key: ConfigKey, value: string): string {
  switch (key) {
    case 'master':
      return httpUrls(value)
    case 'token':
      if (value.length === 0 || /\s/.test(value)) throw new Error('a token is one word with no spaces')
      return value
    case 'zone':
      if (!Zone.safeParse(value).success) throw new Error('a zone is up to 64 letters, digits, ".", "_" or "-"')
      return value
  }
}

export function isConfigKey(key: string): key is ConfigKey {
  return (CONFIG_KEYS as readonly string[]).includes(key)
}
