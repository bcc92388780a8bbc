import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

// Runs the built binary (`npm run build` first: `npm test` does) as a separate process.
export const ROOT = resolve(import.meta.dirname, '../..')
export const BIN = join(ROOT, 'bin/run.js')
export const NO_CONFIG_HOME = join(tmpdir(), `chunky-test-no-config-${process.pid}`)

export function assertBuilt(): void {
  if (!existsSync(join(ROOT, 'dist/commands/upload.js'))) throw new Error('dist/ is missing: run `npm run build` before these tests')
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((done, fail) => {
    const base: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
    delete base.CHUNKY_MASTER
    delete base.CHUNKY_TOKEN
    delete base.CHUNKY_SECRET
    delete base.CHUNKY_NODE_TOKEN
    delete base.CHUNKY_ZONE
    delete base.CHUNKY_CONFIG_DIR
    base.XDG_CONFIG_HOME = NO_CONFIG_HOME // chunky's config file: never the real home's
    const child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env: {...base, ...env}})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', fail)
    child.on('close', (code) => {
      clearTimeout(timer)
      done({code, stdout, stderr})
    })
  })
}
