import {spawn, type ChildProcess} from 'node:child_process'
import {createWriteStream, readFileSync, type WriteStream} from 'node:fs'
import {join, resolve} from 'node:path'
import {createInterface} from 'node:readline'

// Processes of the built binary, started the way a user would (`node bin/run.js …`), every one tracked
// by pid so the campaign can kill exactly what it started, and tell a crash from a kill of its own.

export const ROOT = resolve(import.meta.dirname, '../..')
export const BIN = join(ROOT, 'bin/run.js')

export interface ProcEnv {
  /** bin/run.js of the build under test. */
  bin: string
  /** Working directory of every process: an empty folder of the run (checked to stay empty). */
  cwd: string
  env: NodeJS.ProcessEnv
}

/** The environment of every process: no chunky settings from outside, home and temp inside the run's folder. */
export function campaignEnv(dir: string): NodeJS.ProcessEnv {
  const env = {...process.env}
  for (const key of Object.keys(env)) if (key.startsWith('CHUNKY_')) delete env[key]
  env.NO_COLOR = '1'
  env.XDG_CONFIG_HOME = join(dir, 'xdg-config') // never created: no config file applies, and none may appear
  env.HOME = join(dir, 'home')
  env.TMPDIR = join(dir, 'proc-tmp')
  return env
}

const started = new Set<ChildProcess>()

/** Every process this module started that has not exited yet. */
export function liveProcesses(): ChildProcess[] {
  return [...started].filter((c) => c.exitCode === null && c.signalCode === null)
}

/** SIGCONT then SIGKILL to every process still running, by pid. */
export async function killEverything(): Promise<void> {
  await Promise.all(
    liveProcesses().map(async (child) => {
      const exited = new Promise<void>((done) => child.once('exit', () => done()))
      try {
        child.kill('SIGCONT')
        child.kill('SIGKILL')
      } catch {
        return
      }
      await Promise.race([exited, new Promise((done) => setTimeout(done, 5000).unref())])
    }),
  )
}

export class StartTimeout extends Error {
  override name = 'StartTimeout'
}

export interface DaemonExit {
  key: string
  pid: number
  code: number | null
  signal: NodeJS.Signals | null
  expected: boolean
  logTail: string
}

/**
 * One daemon (master or node) across its incarnations: each start appends to the same log file.
 * `onExit` hears every exit, with `expected` false when the campaign did not ask for it.
 */
export class Daemon {
  child: ChildProcess | undefined
  /** The real URL it printed in its `listening on` line. */
  url = ''
  /** What the master printed before `listening on` (join command, credentials). */
  banner: string[] = []
  paused = false
  /** Called with every line the daemon prints on standard output after its `listening on` line. */
  readonly lineListeners = new Set<(line: string) => void>()
  private expectExit = false
  private readonly log: WriteStream
  private logClosed = false
  starts = 0

  constructor(
    readonly key: string,
    private readonly args: () => string[],
    readonly logPath: string,
    private readonly procEnv: ProcEnv,
    private readonly onExit: (exit: DaemonExit) => void,
  ) {
    this.log = createWriteStream(logPath, {flags: 'a'})
  }

  private write(text: string | Buffer): void {
    if (!this.logClosed) this.log.write(text)
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  /**
   * Starts it and resolves with the URL once it prints `listening on URL`. Killed after timeoutMs: the
   * error then says `StartTimeout` (a box too busy to start a process), else the daemon exited by itself.
   */
  async start(timeoutMs = 60_000): Promise<string> {
    if (this.running) throw new Error(`${this.key} is already running`)
    const args = this.args()
    const child = spawn(process.execPath, [this.procEnv.bin, ...args], {cwd: this.procEnv.cwd, env: this.procEnv.env, stdio: ['ignore', 'pipe', 'pipe']})
    this.child = child
    this.starts++
    this.expectExit = false
    this.paused = false
    started.add(child)
    this.write(`=== ${new Date().toISOString()} start #${this.starts} pid ${child.pid}: chunky ${args.join(' ')}\n`)
    child.stderr!.on('data', (d: Buffer) => this.write(d))
    child.on('exit', (code, signal) => {
      started.delete(child)
      this.write(`=== ${new Date().toISOString()} pid ${child.pid} exited code=${code} signal=${signal}\n`)
      const expected = this.expectExit || this.child !== child
      this.onExit({key: this.key, pid: child.pid ?? -1, code, signal, expected, logTail: expected ? '' : this.tail(40)})
    })
    const banner: string[] = []
    let listening = false
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      this.expectExit = true
      child.kill('SIGKILL')
    }, timeoutMs)
    try {
      return await new Promise<string>((done, fail) => {
        const lines = createInterface({input: child.stdout!})
        lines.on('line', (line) => {
          this.write(line + '\n')
          if (listening) {
            for (const listener of this.lineListeners) listener(line)
            return
          }
          const url = /^listening on (\S+)$/.exec(line)?.[1]
          if (!url) return void banner.push(line)
          listening = true
          this.url = url
          this.banner = banner
          done(url)
        })
        lines.on('close', () => {
          if (!listening && timedOut) fail(new StartTimeout(`${this.key} printed no \`listening on\` line within ${timeoutMs} ms (killed); see ${this.logPath}`))
          else if (!listening) fail(new Error(`${this.key} exited before listening; see ${this.logPath}`))
        })
      })
    } finally {
      clearTimeout(timer)
    }
  }

  /** kill -9, and waits for the exit. */
  async kill9(): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    this.expectExit = true
    const exited = new Promise<void>((done) => child.once('exit', () => done()))
    child.kill('SIGKILL')
    await exited
    this.paused = false
  }

  /** SIGTERM (after SIGCONT), SIGKILL after timeoutMs; resolves with the exit code. */
  async stop(timeoutMs = 10_000): Promise<{code: number | null; signal: NodeJS.Signals | null} | undefined> {
    const child = this.child
    if (!child || !this.running) return undefined
    this.expectExit = true
    const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((done) => child.once('exit', (code, signal) => done({code, signal})))
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    const result = await exited
    clearTimeout(timer)
    return result
  }

  pause(): void {
    if (!this.running || this.paused) return
    this.child!.kill('SIGSTOP')
    this.paused = true
  }

  resume(): void {
    if (!this.running || !this.paused) return
    this.child!.kill('SIGCONT')
    this.paused = false
  }

  note(text: string): void {
    this.write(`=== ${new Date().toISOString()} campaign: ${text}\n`)
  }

  tail(lines: number): string {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines - 1).join('\n')
    } catch {
      return ''
    }
  }

  async closeLog(): Promise<void> {
    if (this.logClosed) return
    this.logClosed = true
    await new Promise<void>((done) => this.log.end(() => done()))
  }
}

export interface ClientResult {
  args: string[]
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  start: number
  end: number
  /** Killed by the campaign (on purpose, or because it ran past its deadline). */
  killed: 'no' | 'on-purpose' | 'deadline'
}

/**
 * Runs a client command to its end; kill -9 after `killAfterMs` (a killed client, on purpose) or
 * after `deadlineMs` (it hung). `start` is taken just before the spawn, `end` at its exit.
 */
export async function runClient(args: string[], procEnv: ProcEnv, opts: {deadlineMs: number; killAfterMs?: number}): Promise<ClientResult> {
  const start = Date.now()
  const child = spawn(process.execPath, [procEnv.bin, ...args], {cwd: procEnv.cwd, env: procEnv.env, stdio: ['ignore', 'pipe', 'pipe']})
  started.add(child)
  let stdout = ''
  let stderr = ''
  let killed: ClientResult['killed'] = 'no'
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)))
  const timers: NodeJS.Timeout[] = []
  if (opts.killAfterMs !== undefined) {
    timers.push(setTimeout(() => {
      killed = 'on-purpose'
      child.kill('SIGKILL')
    }, opts.killAfterMs))
  }
  timers.push(setTimeout(() => {
    if (killed === 'no') killed = 'deadline'
    child.kill('SIGKILL')
  }, opts.deadlineMs))
  const {code, signal} = await new Promise<{code: number | null; signal: NodeJS.Signals | null}>((done) => {
    child.on('error', () => done({code: null, signal: null}))
    child.on('close', (c, s) => done({code: c, signal: s}))
  })
  for (const t of timers) clearTimeout(t)
  started.delete(child)
  if (signal !== 'SIGKILL' && killed !== 'no') killed = 'no' // it exited by itself before the kill landed
  return {args, code, signal, stdout, stderr, start, end: Date.now(), killed}
}
