import {Errors} from '@oclif/core'
import {InterruptedError} from '../client/index.js'
import {ChunkyError} from '../protocol/index.js'

// How a failure reaches the user: one line on standard error that says what to do, and an exit code
// (SPEC.md: 1 failure, 2 bad usage). Stack traces only for the unexpected, and only with DEBUG set.

/** Bad usage: unknown flag, missing argument, bad flag value. Exit 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export interface Failure {
  exitCode: number
  /** Stable machine-readable code for --json (a ChunkyError code, USAGE, INTERRUPTED or ERROR). */
  code: string
  /** One line, no trailing period needed. */
  message: string
}

export function describeFailure(err: unknown): Failure {
  if (err instanceof UsageError) return {exitCode: 2, code: 'USAGE', message: oneLine(err.message)}
  if (err instanceof InterruptedError) return {exitCode: 130, code: 'INTERRUPTED', message: oneLine(err.message)}
  if (err instanceof ChunkyError) return {exitCode: 1, code: err.code, message: oneLine(err.message)}
  if (err instanceof Errors.CLIError) {
    const exit = err.oclif?.exit ?? 1
    return {exitCode: exit, code: exit === 2 ? 'USAGE' : 'ERROR', message: oneLine(err.message)}
  }
  const system = systemErrorMessage(err)
  if (system) return {exitCode: 1, code: (err as {code: string}).code, message: system}
  const message = err instanceof Error ? err.message : String(err)
  return {exitCode: 1, code: 'ERROR', message: oneLine(message) || 'unexpected error'}
}

/** oclif's parse errors, rewritten as one line that points at --help. */
export function usageMessage(err: unknown, commandId: string | undefined, bin = 'chunky'): string {
  let message = err instanceof Error ? err.message : String(err)
  message = message.replace(/\s*See more help with --help\s*$/, '').replace(/^The following errors? occurred:\s*/, '')
  const flag = /^Parsing --(\S+)\s*\n\s*([\s\S]*)$/.exec(message)
  if (flag) message = `bad value for --${flag[1]}: ${flag[2]}`
  const missing = missingArgs(err)
  if (missing) message = missing
  const help = commandId ? `${bin} ${commandId} --help` : `${bin} --help`
  return `${oneLine(message)} (see \`${help}\`)`
}

/** oclif's "Missing 1 required arg: id id of the node" as `missing ID: id of the node`. */
function missingArgs(err: unknown): string | undefined {
  const args = (err as {args?: unknown}).args
  if (!(err instanceof Error) || !err.message.startsWith('Missing ') || !Array.isArray(args) || args.length === 0) return undefined
  const said = (args as {name?: string; description?: string; options?: string[]}[]).map((arg) => {
    const what = [arg.description, arg.options ? `one of ${arg.options.join(', ')}` : undefined].filter(Boolean).join(', ')
    return `${(arg.name ?? 'an argument').toUpperCase()}${what ? `: ${what}` : ''}`
  })
  return `missing ${said.join('; ')}`
}

export function oneLine(text: string): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .join(' ')
    .replace(/[ \t]{2,}/g, ' ')
}

/** Errors from the operating system that users meet in practice, said with what to do about them. */
function systemErrorMessage(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException & {address?: string; port?: number}
  if (!(err instanceof Error) || typeof e.code !== 'string') return undefined
  const where = e.address !== undefined ? `${e.address}:${e.port}` : e.path
  switch (e.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: the address is in use (EADDRINUSE): stop the other process or pick another --port`
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: no such address on this machine (EADDRNOTAVAIL): check --host`
    case 'EACCES':
    case 'EPERM':
      // a port below 1024 (listen) and an unreadable file or unwritable directory need different fixes
      if (e.port !== undefined || e.syscall === 'listen' || e.syscall === 'bind') {
        return `permission denied to listen on ${where ?? 'that port'} (${e.code}): pick a port above 1023`
      }
      if (e.path !== undefined) return `permission denied: ${e.path} (${e.code}): check that you can ${e.syscall === 'open' || e.syscall === 'read' ? 'read or write it' : 'use it'} (ls -l)`
      return `permission denied (${e.code}): ${e.message}`
    case 'ENOENT':
      return `no such file or directory: ${where ?? e.message}`
    case 'ENOSPC':
      return `no space left on the device${where ? ` (${where})` : ''}: free some space`
    default:
      return undefined
  }
}
