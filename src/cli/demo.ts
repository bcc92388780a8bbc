import {createHash, randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {copyFile, mkdtemp, open, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {downloadFile, getStatus, InterruptedError, uploadFile, type TransferView} from '../client/index.js'
import {DEFAULT_CHUNK_SIZE, deriveCredentials, fileNameProblem, MIN_CHUNK_SIZE, type StatusDoc} from '../protocol/index.js'
import {logLineMessage} from '../util/log.js'
import {formatBytes} from '../util/parse.js'
import {untilAborted} from './daemon.js'
import {startDaemonProcess, type DaemonProcess} from './demo-processes.js'
import {renderGrid, renderSummary, replicaCell} from './status-view.js'

// `chunky demo`: the whole story on one machine. A master and three nodes as child processes, an
// upload, the version report, a verified download; then a node misses a change, comes back with a
// stale copy, and the cluster finds it, deletes it and puts the current version in its place.

export interface DemoOptions {
  /** bin/run.js of this package: the daemons are started from the same binary. */
  bin: string
  /** The user's file (copied, never changed); default: 25 MiB of pseudo-random bytes. */
  file?: string
  say: (text: string) => void
  view: () => TransferView
  signal: AbortSignal
  /** Pause this long before each step after the first, so a person can follow along in the dashboard. */
  paceMs?: number
  /** After the story, leave the cluster running until Ctrl-C (then clean up as usual). */
  keep?: boolean
}

const MiB = 1024 * 1024
const SAMPLE_SIZE = 25 * MiB
/** Timings that make the story take seconds rather than minutes. */
const MASTER_TIMING = ['--node-timeout', '2s', '--repair-interval', '500ms']
const NODE_TIMING = ['--heartbeat-interval', '200ms']
const NODES = [
  {id: 'n1', zone: 'a'},
  {id: 'n2', zone: 'b'},
  {id: 'n3', zone: 'c'},
] as const
/** The node the story takes down, and the chunk that changes while it is away. */
const AWAY = 'n3'
const CHANGED_CHUNK = 1

export async function runDemo(opts: DemoOptions): Promise<void> {
  if (opts.file) {
    // Refuse a missing or tiny file before starting anything.
    const info = await stat(opts.file).catch(() => {
      throw new Error(`cannot read ${opts.file}: no such file`)
    })
    if (!info.isFile()) throw new Error(`${opts.file} is not a regular file`)
    demoChunkSize(info.size)
  }
  const dir = await mkdtemp(join(tmpdir(), 'chunky-demo-'))
  const daemons: DaemonProcess[] = []
  try {
    await story(opts, dir, daemons)
  } finally {
    await Promise.all(daemons.map((daemon) => daemon.stop()))
    await rm(dir, {recursive: true, force: true})
    opts.say(`\nstopped the master and the nodes, removed ${dir}`)
  }
}

async function story(opts: DemoOptions, dir: string, daemons: DaemonProcess[]): Promise<void> {
  const {say, signal} = opts
  const token = randomBytes(16).toString('hex')
  // The master's secret and the nodes' credential each through its own variable (the same value:
  // the cluster secret is valid for everything); CHUNKY_TOKEN is the clients', which run in this process.
  const env: NodeJS.ProcessEnv = {...process.env, CHUNKY_SECRET: token, CHUNKY_NODE_TOKEN: token}
  delete env.CHUNKY_MASTER
  delete env.CHUNKY_TOKEN
  let stepNo = 0
  const step = async (text: string) => {
    if (stepNo > 0 && opts.paceMs) await pause(opts.paceMs, signal)
    say(`\n${++stepNo}. ${text}`)
  }
  const detail = (text: string) => say(text.replace(/^/gm, '   '))

  say(`chunky demo: a master and three storage nodes on this machine, in ${dir}`)

  await step('starting the master: R=3 copies of every chunk, W=2 needed before an upload succeeds, a node silent for 2s is dead, repairs every 500ms')
  const master = await startDaemonProcess(opts.bin, 'master', ['master', '--port', '0', '--data-dir', join(dir, 'master'), '--replicas', '3', ...MASTER_TIMING], env, signal)
  daemons.push(master)
  detail(`master listening on ${master.url}`)
  // The read-only credential in the fragment: the page reads it, forgets the fragment, and never sends it elsewhere.
  // The cluster, and so this page, lives only as long as the demo: say how to keep it longer.
  const lasts = opts.keep ? 'it stays up after the story until Ctrl-C' : 'it stops when the demo ends: add --keep to keep it up, --pace 3s to slow the story down'
  detail(`dashboard: ${master.url}/#token=${deriveCredentials(token).ro}  (open it in a browser to watch the story; ${lasts})`)
  const conn = {master: master.url, token, signal}
  const status = (name?: string) => getStatus(conn, name)

  await step('starting three storage nodes, in zones a, b and c')
  const ports = new Map<string, number>()
  const startNode = async (id: string, zone: string) => {
    const node = await startDaemonProcess(
      opts.bin,
      id,
      ['node', '--master', master.url, '--port', String(ports.get(id) ?? 0), '--id', id, '--zone', zone, '--data-dir', join(dir, id), ...NODE_TIMING],
      env,
      signal,
    )
    ports.set(id, node.port)
    daemons.push(node)
    return node
  }
  for (const {id, zone} of NODES) detail(`${id} (zone ${zone}) listening on ${(await startNode(id, zone)).url}`)
  await waitUntil('the three nodes to register with the master', signal, 15_000, async () => (await status()).summary.aliveNodes === 3)
  detail('all three registered with the master')

  const sample = join(dir, 'sample.bin')
  if (opts.file) await copyFile(opts.file, sample)
  else await writeSample(sample, SAMPLE_SIZE)
  const size = (await stat(sample)).size
  const chunkSize = demoChunkSize(size)
  const name = sampleName(opts.file)
  const chunks = Math.ceil(size / chunkSize)

  await step(`uploading ${opts.file ? opts.file : 'a sample'} as ${name}: ${formatBytes(size)}, ${chunks} chunks of ${formatBytes(chunkSize)}`)
  const first = await withView(opts, (view) => uploadFile({path: sample, name, chunkSize, master: master.url, token, signal}, view))
  detail(`committed in ${first.seconds}s through ${first.entryNode} (the nearest node): ${first.uploadedChunks} chunks sent, each stored on 3 nodes`)

  await step('the version report: every chunk at version 1 on every node')
  const before = await status(name)
  showGrid(before, detail)
  check(fileOf(before).chunks.every((c) => c.version === 1 && c.replicas.filter((r) => r.state === 'fresh').length === 3), 'every chunk should be at version 1 with 3 fresh copies')

  await step('downloading it and comparing the bytes')
  await verifyDownload(opts, name, sample, join(dir, 'copy-1.bin'), master.url, token, detail)

  await step(`stopping ${AWAY}: it will miss the next change`)
  const away = daemons.find((d) => d.name === AWAY)!
  await away.stop()
  daemons.splice(daemons.indexOf(away), 1)
  const stoppedAt = Date.now()
  await waitUntil(`the master to mark ${AWAY} dead`, signal, 15_000, async () => (await status()).nodes.find((n) => n.id === AWAY)?.state === 'dead')
  detail(`${AWAY} stopped; the master marked it dead after ${seconds(Date.now() - stoppedAt)}`)

  await step(`changing bytes inside chunk ${CHANGED_CHUNK} of the sample and uploading it again`)
  await changeBytes(sample, CHANGED_CHUNK * chunkSize + 1000, 64)
  const second = await withView(opts, (view) => uploadFile({path: sample, name, chunkSize, master: master.url, token, signal}, view))
  detail(`${second.uploadedChunks} chunk sent, ${second.skippedChunks} already stored at their current version (skipped)`)
  check(second.uploadedChunks === 1 && second.skippedChunks === chunks - 1, `only chunk ${CHANGED_CHUNK} should be sent again`)
  const changed = await status(name)
  showGrid(changed, detail)
  const versions = fileOf(changed).chunks.map((c) => c.version)
  check(versions.every((v, i) => v === (i === CHANGED_CHUNK ? 2 : 1)), `chunk ${CHANGED_CHUNK} should be at version 2 and the others at 1, got ${versions.join(',')}`)
  detail(`chunk ${CHANGED_CHUNK} got version 2 on the nodes that were up; ${AWAY} still holds version 1 on its disk`)

  await step(`starting ${AWAY} again on the same data directory and port`)
  const cellOf = (doc: StatusDoc) => replicaCell(fileOf(doc).chunks[CHANGED_CHUNK]!, AWAY)
  const events: string[] = []
  const interesting = (who: string) => (line: string) => {
    const message = logLineMessage(line) // the daemons log JSON lines: show their sentence only
    if (events.length < 12 && /stale|delet|repair|replicat|copied|excess|unreferenced/i.test(message)) events.push(`${who}: ${message}`)
  }
  master.onLine(interesting('master'))
  const back = await startNode(AWAY, NODES[2].zone)
  back.onLine(interesting(AWAY))
  const returnedAt = Date.now()
  detail(`${AWAY} is back and reports every chunk it holds with its version; the master compares them with its own`)
  let lastCell = ''
  const healed = await waitUntil(`${AWAY}'s copy of chunk ${CHANGED_CHUNK} to be replaced by version 2`, signal, 30_000, async () => {
    const doc = await status(name)
    for (const event of events.splice(0)) detail(`  ${event}`)
    const cell = cellOf(doc)
    if (cell !== lastCell) {
      detail(`after ${seconds(Date.now() - returnedAt).padStart(5)}: ${AWAY}'s copy of chunk ${CHANGED_CHUNK} is ${describeCell(cell)}`)
      lastCell = cell
    }
    const s = doc.summary
    return cell === 'v2' && s.stale === 0 && s.underReplicated === 0 && s.aliveNodes === 3 && doc
  })
  master.onLine(undefined)
  back.onLine(undefined)
  detail(`healed ${seconds(Date.now() - returnedAt)} after ${AWAY} came back, without anyone running a command:`)
  showGrid(healed, detail)

  await step('downloading it again and comparing with the changed sample')
  await verifyDownload(opts, name, sample, join(dir, 'copy-2.bin'), master.url, token, detail)

  say('\nall checks passed: durable upload, verified download, stale copy found, deleted and replaced')
  if (opts.keep) {
    const credentials = deriveCredentials(token)
    say(`\nthe cluster keeps running (--keep): dashboard ${master.url}/#token=${credentials.ro}; press Ctrl-C to stop it and clean up`)
    say(`to use it from another shell: export CHUNKY_MASTER=${master.url} CHUNKY_TOKEN=${credentials.rw}, then \`chunky status\` or \`chunky upload FILE\``)
    await untilAborted(signal)
  }
}

/** Waits `ms`; Ctrl-C ends the wait as an interruption. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, {signal})
  } catch {
    throw new InterruptedError()
  }
}


function describeCell(cell: string): string {
  if (cell === '-') return 'gone (deleted; waiting for a fresh copy)'
  if (cell.endsWith('stale')) return `${cell} (older than the master's version 2)`
  if (cell === 'v2') return 'v2, fresh (copied from another node)'
  return cell
}

function showGrid(doc: StatusDoc, detail: (text: string) => void): void {
  detail(renderGrid(doc, fileOf(doc)))
  detail(renderSummary(doc))
}

function fileOf(doc: StatusDoc): StatusDoc['files'][number] {
  const file = doc.files[0]
  if (!file) throw new Error('the master does not list the demo file')
  return file
}

async function verifyDownload(
  opts: DemoOptions,
  name: string,
  expected: string,
  output: string,
  master: string,
  token: string,
  detail: (text: string) => void,
): Promise<void> {
  const result = await withView(opts, (view) => downloadFile({name, output, master, token, signal: opts.signal}, view))
  const [want, got] = await Promise.all([sha256File(expected), sha256File(output)])
  check(want === got, `the download differs from the sample (sha256 ${got.slice(0, 16)}… vs ${want.slice(0, 16)}…)`)
  detail(`downloaded in ${result.seconds}s, every chunk verified; sha256 ${want.slice(0, 16)}… on both sides: byte-identical`)
}

async function withView<T>(opts: DemoOptions, work: (view: TransferView) => Promise<T>): Promise<T> {
  const view = opts.view()
  try {
    return await work(view)
  } finally {
    view.stop()
  }
}

/** 10 MiB chunks (25 MiB: 3 chunks), or smaller ones so that even a small file of the user's has 3. */
export function demoChunkSize(size: number): number {
  if (size <= 2 * MIN_CHUNK_SIZE) {
    throw new Error(`the demo needs a file over ${formatBytes(2 * MIN_CHUNK_SIZE)} (so it has a chunk 1 to change); this one is ${formatBytes(size)}`)
  }
  if (size > 2 * DEFAULT_CHUNK_SIZE) return DEFAULT_CHUNK_SIZE
  return Math.max(MIN_CHUNK_SIZE, Math.ceil(size / 3))
}

function sampleName(file: string | undefined): string {
  const name = file ? `demo/${basename(file)}` : 'demo/sample.bin'
  return fileNameProblem(name) ? 'demo/sample.bin' : name
}

async function writeSample(path: string, size: number): Promise<void> {
  const handle = await open(path, 'wx')
  try {
    for (let written = 0; written < size; written += MiB) await handle.write(randomBytes(Math.min(MiB, size - written)))
  } finally {
    await handle.close()
  }
}

/** Flips `length` bytes at `offset` (XOR 0xff), so they are certain to differ. */
async function changeBytes(path: string, offset: number, length: number): Promise<void> {
  const handle = await open(path, 'r+')
  try {
    const buffer = Buffer.alloc(length)
    const {bytesRead} = await handle.read(buffer, 0, length, offset)
    for (let i = 0; i < bytesRead; i++) buffer[i] = buffer[i]! ^ 0xff
    await handle.write(buffer, 0, bytesRead, offset)
  } finally {
    await handle.close()
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const part of createReadStream(path)) hash.update(part as Buffer)
  return hash.digest('hex')
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo check failed: ${what}`)
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`

/** Polls `probe` until it returns something truthy; errors count as "not yet" until the deadline. */
async function waitUntil<T>(what: string, signal: AbortSignal, timeoutMs: number, probe: () => Promise<T | false | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError = ''
  while (Date.now() < deadline) {
    if (signal.aborted) throw new InterruptedError()
    try {
      const value = await probe()
      if (value) return value
    } catch (err) {
      if (err instanceof InterruptedError) throw err
      lastError = err instanceof Error ? err.message : String(err)
    }
    await sleep(100, undefined, {signal}).catch(() => {})
  }
  throw new Error(`demo check failed: timed out after ${timeoutMs / 1000}s waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`)
}
