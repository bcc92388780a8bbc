import {randomBytes} from 'node:crypto'
import {mkdir, readFile} from 'node:fs/promises'
import {networkInterfaces} from 'node:os'
import {join} from 'node:path'
import {writeFileAtomic} from '../util/fs.js'

// What `chunky master` and `chunky node` need around the daemons themselves: the cluster token,
// the address to tell others, and waiting for a signal to stop.

export interface ResolvedToken {
  token: string
  /** Where it came from: --token/CHUNKY_TOKEN, DATA_DIR/token from an earlier run, or made just now. */
  source: 'flag' | 'file' | 'generated'
  path?: string
}

/** --token wins; else DATA_DIR/token; else 32 random bytes (hex) saved there with mode 0600. */
export async function resolveMasterToken(dataDir: string, given: string | undefined): Promise<ResolvedToken> {
  if (given !== undefined && given !== '') return {token: given, source: 'flag'}
  const path = join(dataDir, 'token')
  try {
    const saved = (await readFile(path, 'utf8')).trim()
    if (saved !== '') return {token: saved, source: 'file', path}
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, {recursive: true, mode: 0o700})
  const token = randomBytes(32).toString('hex')
  await writeFileAtomic(path, `${token}\n`, 0o600)
  return {token, source: 'generated', path}
}

/** The URL others should use: a wildcard bind address is replaced by this machine's first external IPv4. */
export function advertisedUrl(host: string, port: number): string {
  let shown = host
  if (host === '0.0.0.0' || host === '::' || host === '') {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && address.family === 'IPv4' && !address.internal)
    shown = external?.address ?? '127.0.0.1'
  }
  return listenUrl(shown, port)
}

/** `http://HOST:PORT`, with IPv6 literals in brackets. */
export function listenUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Resolves once the signal fires (Ctrl-C or SIGTERM, through the command's interrupt controller). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), {once: true}))
}
