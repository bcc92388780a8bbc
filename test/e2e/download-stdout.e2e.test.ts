import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {copyFile, open, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, MEDIA, flipByte, killAll, runCli, sha256File, startCluster, type Cluster} from './harness.js'

// Issue 12: `chunky download NAME -o -` writes the file, verified, to standard output and nothing
// else: piped into sha256sum and ffprobe, a rotten copy skipped for a good one, a chunk with no good
// copy never reaching the reader.
const VIDEO = 'big-buck-bunny-1080p-30s.mp4'
const NAME = `stdout/${VIDEO}`

let cluster: Cluster
let file: string

/** `chunky download NAME -o -` into a shell pipeline; its stdout, stderr and exit status (the pipeline's). */
function pipeInto(command: string): Promise<{code: number | null; stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const script = `set -o pipefail; "${process.execPath}" "${BIN}" download '${NAME}' -o - | ${command}`
    const child = spawn('bash', ['-c', script], {env: {...process.env, ...cluster.env, NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
  })
}

/** The raw bytes `chunky download NAME -o -` writes, and how it exits. */
async function rawStdout(): Promise<{code: number | null; bytes: Buffer; stderr: string}> {
  const child = spawn(process.execPath, [BIN, 'download', NAME, '-o', '-'], {env: {...process.env, ...cluster.env, NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
  const parts: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => parts.push(d))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  clearTimeout(timer)
  return {code, bytes: Buffer.concat(parts), stderr}
}

describe('chunky download NAME -o -', () => {
  beforeAll(async () => {
    cluster = await startCluster({nodes: 2, replicas: 2, minReplicas: 2})
    file = join(cluster.dir, VIDEO)
    await copyFile(join(MEDIA, VIDEO), file)
    const up = await runCli(['upload', file, '--name', NAME, '--chunk-size', '1MiB', '--json'], cluster.env)
    expect(up.code, up.stderr).toBe(0)
  })

  afterAll(async () => {
    await cluster?.close()
    await killAll()
  })

  it('pipes the exact bytes into sha256sum, and nothing else on stdout or (not a terminal) stderr', async () => {
    const {code, stdout, stderr} = await pipeInto('sha256sum')
    expect(code, stderr).toBe(0)
    expect(stdout.split(' ')[0]).toBe(await sha256File(file))
    expect(stderr).toBe('')
  })

  it('ffprobe reads the video from the pipe: the same duration as the local file', async () => {
    const probe = (input: string) => `ffprobe -v error -show_entries format=duration -of csv=p=0 ${input}`
    const piped = await pipeInto(probe('-i -'))
    expect(piped.code, piped.stderr).toBe(0)
    const local = await new Promise<string>((resolve, reject) => {
      const child = spawn('bash', ['-c', probe(`'${file}'`)], {stdio: ['ignore', 'pipe', 'inherit']})
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.on('error', reject)
      child.on('close', () => resolve(out))
    })
    expect(Number(local)).toBeGreaterThan(29)
    expect(Number(piped.stdout)).toBeCloseTo(Number(local), 2)
  })

  it('refuses --json (whose answer goes to stdout) and --prefix with -o -', async () => {
    const json = await runCli(['download', NAME, '-o', '-', '--json'], cluster.env)
    expect(json.code).toBe(2)
    expect(JSON.parse(json.stdout).error).toMatchObject({code: 'USAGE', message: expect.stringMatching(/--json/)})
    const prefix = await runCli(['download', '--prefix', 'stdout', '-o', '-'], cluster.env)
    expect(prefix.code).toBe(2)
    expect(prefix.stdout).toBe('')
    expect(prefix.stderr).toMatch(/--prefix/)
  })

  it('a rotten copy is skipped for the good one; a chunk with no good copy never reaches the reader', async () => {
    const chunks = (await cluster.status(NAME)).files[0]!.chunks
    expect(chunks.length).toBeGreaterThan(3)
    const pathOf = (node: string, c: {id: string; version: number; sha256: string}) =>
      join(cluster.nodeDirs.get(node)!, 'chunks', c.id.slice(0, 2), `${c.id}.${c.version}.${c.sha256}`)
    // chunk 0 rotten on n1 only (n2 holds it good), whichever node the reader tries first
    await flipByte(pathOf('n1', chunks[0]!), 100)
    const oneRotten = await rawStdout()
    expect(oneRotten.code, oneRotten.stderr).toBe(0)
    expect(oneRotten.bytes.length).toBe((await stat(file)).size)
    expect(createHash('sha256').update(oneRotten.bytes).digest('hex')).toBe(await sha256File(file))

    // chunk 2 rotten on both nodes: the download fails, and what came out is only whole, good chunks before it
    await flipByte(pathOf('n1', chunks[2]!), 100)
    await flipByte(pathOf('n2', chunks[2]!), 100)
    const noGood = await rawStdout()
    expect(noGood.code).not.toBe(0)
    expect(noGood.stderr).toMatch(/chunk 2/)
    const chunkSize = 1024 * 1024
    expect(noGood.bytes.length % chunkSize).toBe(0)
    expect(noGood.bytes.length).toBeLessThanOrEqual(2 * chunkSize)
    const original = await open(file, 'r')
    try {
      const head = Buffer.alloc(noGood.bytes.length)
      await original.read(head, 0, head.length, 0)
      expect(noGood.bytes.equals(head)).toBe(true)
    } finally {
      await original.close()
    }
  })
})
