import {readFile} from 'node:fs/promises'
import {globalAgent} from 'node:https'
import {rootCertificates} from 'node:tls'
import {UsageError} from './failure.js'

// TLS material from files named on the command line: a daemon's certificate and key, and a private
// CA that clients and nodes should trust besides the system's. Verification is never turned off.

/** Reads --tls-cert/--tls-key; both or neither. */
export async function readTlsFiles(cert: string | undefined, key: string | undefined): Promise<{cert: Buffer; key: Buffer} | undefined> {
  if (cert === undefined && key === undefined) return undefined
  if (cert === undefined || key === undefined) throw new UsageError('--tls-cert and --tls-key go together: pass both (PEM files) or neither')
  return {cert: await readPem(cert, '--tls-cert'), key: await readPem(key, '--tls-key')}
}

/** Reads a --ca file (PEM). */
export async function readCa(path: string): Promise<string> {
  return (await readPem(path, '--ca')).toString('utf8')
}

/**
 * Trusts `pem` for every HTTPS request of this process made through Node's global agent (the
 * client's requests use it), on top of the system's CAs. A CLI process talks to one cluster, so
 * process-wide is right.
 */
export function trustCa(pem: string): void {
  globalAgent.options.ca = [...rootCertificates, pem]
}

async function readPem(path: string, flag: string): Promise<Buffer> {
  let text: Buffer
  try {
    text = await readFile(path)
  } catch (err) {
    throw new UsageError(`${flag} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (!text.includes('-----BEGIN ')) throw new UsageError(`${flag} ${path}: not a PEM file (expected "-----BEGIN ...")`)
  return text
}
