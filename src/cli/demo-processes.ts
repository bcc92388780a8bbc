import {spawn, type ChildProcess} from 'node:child_process'
import {createInterface} from 'node:readline'

// The demo's daemons are real child processes of the same binary: `chunky master|node … --port 0`,
// ready once they print `listening on URL` (SPEC.md).

export interface DaemonProcess {
  name: string
  url: string
  port: number
  child: ChildProcess
  /** Called with every later line the daemon prints on stdout (its event log). */
  onLine: (listener: ((line: string) => void) | undefined) => void
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  stop(graceMs?: number): Promise<void>
}

export async function startDaemonProcess(
  bin: string,
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
  timeoutMs = 20_000,
): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [bin, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env})
  const abort = () => child.kill('SIGKILL') // Ctrl-C while it starts: the wait below ends with an error
  signal?.addEventListener('abort', abort, {once: true})
  let stderr = ''
  child.stderr!.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-4000)
  })
  const stop = (graceMs = 5_000) => stopProcess(child, graceMs)
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  let listener: ((line: string) => void) | undefined
  const lines = createInterface({input: child.stdout!})
  try {
    const url = await new Promise<string>((resolve, reject) => {
      lines.on('line', (line) => {
        const match = /^listening on (\S+)$/.exec(line)
        if (match) resolve(match[1]!)
        else listener?.(line)
      })
      child.once('error', reject)
      child.once('exit', (code, signal) => {
        const why = stderr.trim().split('\n').slice(-3).join(' | ')
        reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before listening${why ? `: ${why}` : ''}`))
      })
    })
    return {name, url, port: Number(new URL(url).port), child, onLine: (l) => (listener = l), stop}
  } catch (err) {
    await stop(0)
    throw err
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', abort)
  }
}

export async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
