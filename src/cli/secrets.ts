import {readFile} from 'node:fs/promises'
import {ChunkyError} from '../protocol/index.js'
import {resolveMasterToken, type ResolvedToken} from './daemon.js'

// Which secret each daemon uses, kept apart (SPEC.md "Operating a cluster"):
//   master  --secret, --secret-file, CHUNKY_SECRET (or --token, as before); else DATA_DIR/token
//   node    --token, --token-file, CHUNKY_NODE_TOKEN
//   clients --token, CHUNKY_TOKEN, the config file
// The master never reads CHUNKY_TOKEN: a shell that exported a client credential for `chunky upload`
// used to re-key the whole cluster when the master was restarted in it.

/** `rw-…`, `ro-…` or `node-…`: what `chunky master` derives from its secret and prints. */
export function derivedKindOf(value: string): 'rw' | 'ro' | 'node' | undefined {
  return /^(rw|ro|node)-/.exec(value)?.[1] as 'rw' | 'ro' | 'node' | undefined
}

/** The first line of a secret file, trimmed; a missing, unreadable or empty file is a clear failure. */
export async function readSecretFile(path: string, flag: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : code
    throw new ChunkyError('BAD_REQUEST', `cannot read ${flag} ${path}: ${why}`)
  }
  const value = text.split('\n')[0]!.trim()
  if (value === '') throw new ChunkyError('BAD_REQUEST', `${flag} ${path} is empty: put the secret on its first line`)
  return value
}

export interface MasterSecretInput {
  dataDir: string
  /** --secret */
  secret?: string
  secretFile?: string
  /** --token: the old name of --secret, still accepted. */
  token?: string
  /** CHUNKY_SECRET: used when no flag gives a secret. */
  envSecret?: string
}

/** The master's cluster secret: a given one (refused when it is a derived credential), else DATA_DIR/token. */
export async function resolveMasterSecret(input: MasterSecretInput): Promise<ResolvedToken & {via?: string}> {
  let given: string | undefined
  let via: string | undefined
  if (input.secretFile !== undefined) {
    given = await readSecretFile(input.secretFile, '--secret-file')
    via = `--secret-file ${input.secretFile}`
  } else if (input.secret !== undefined && input.secret !== '') {
    given = input.secret
    via = '--secret'
  } else if (input.token !== undefined && input.token !== '') {
    given = input.token
    via = '--token'
  } else if (input.envSecret !== undefined && input.envSecret !== '') {
    given = input.envSecret
    via = 'CHUNKY_SECRET'
  }
  if (given !== undefined) {
    const kind = derivedKindOf(given)
    if (kind) {
      throw new ChunkyError(
        'BAD_REQUEST',
        `${via} is a ${kind === 'node' ? 'node' : 'client'} credential (${kind}-…), not a cluster secret: ` +
          'a master keyed with it would derive new credentials and lock every node and client out; ' +
          'give the master its own secret (--secret-file, CHUNKY_SECRET) or none to use the one in its data dir',
      )
    }
    return {token: given, source: 'flag', via}
  }
  return resolveMasterToken(input.dataDir, undefined)
}

/** A node's credential from --token (or CHUNKY_NODE_TOKEN) or --token-file; undefined when none is given. */
export async function resolveNodeToken(input: {token?: string; tokenFile?: string}): Promise<string | undefined> {
  const token = input.tokenFile !== undefined ? await readSecretFile(input.tokenFile, '--token-file') : input.token
  if (token === undefined || token === '') return undefined
  const kind = derivedKindOf(token)
  if (kind === 'rw' || kind === 'ro') {
    throw new ChunkyError(
      'FORBIDDEN',
      `this is a client credential (${kind}-…): nodes join with the node credential (node-…) from the join command \`chunky master\` prints`,
    )
  }
  return token
}
