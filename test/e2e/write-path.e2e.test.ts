import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, MEDIA, runCli, sha256File, startCluster, TOKEN, type Cluster} from './harness.js'

// Issue 2: the write path, end to end, with the built binary as separate processes.
const VIDEO = join(MEDIA, 'big-buck-bunny-1080p-30s.mp4') // 22,718,509 bytes: 3 chunks of 10 MiB, the last short
const CHUNK = 10 * 1024 * 1024

let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

describe('upload, status and download of a real video with R=3', () => {
  let uploaded: Record<string, unknown>

  it('uploads with --json: one document on stdout, exit 0', async () => {
    const result = await runCli(['upload', VIDEO, '--name', 'films/bunny.mp4', '--json'], cluster.env)
    expect(result.code, result.stderr).toBe(0)
    uploaded = JSON.parse(result.stdout) // throws if anything else is on stdout
    const size = (await stat(VIDEO)).size
    expect(uploaded).toMatchObject({name: 'films/bunny.mp4', size, chunks: 3, uploadedChunks: 3, skippedChunks: 0})
    expect(['n1', 'n2', 'n3']).toContain(uploaded.entryNode)
    expect(typeof uploaded.seconds).toBe('number')
  })

  it('status --json shows every chunk at version 1 with three fresh replicas on three nodes', async () => {
    const status = await cluster.status('films/bunny.mp4')
    expect(status.files).toHaveLength(1)
    const file = status.files[0]!
    expect(file).toMatchObject({name: 'films/bunny.mp4', size: 22_718_509, chunkSize: CHUNK})
    expect(file.chunks.map((c) => c.size)).toEqual([CHUNK, CHUNK, 22_718_509 - 2 * CHUNK])
    for (const chunk of file.chunks) {
      expect(chunk.version).toBe(1)
      expect(chunk.replicas.map((r) => r.node).sort()).toEqual(['n1', 'n2', 'n3'])
      expect(chunk.replicas.every((r) => r.version === 1 && r.state === 'fresh')).toBe(true)
    }
    expect(status.summary).toMatchObject({nodes: 3, aliveNodes: 3, files: 1, chunks: 3, underReplicated: 0, stale: 0, corrupt: 0})
    for (const node of status.nodes) {
      expect(node).toMatchObject({state: 'alive'})
      expect(node.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(node.lastHeartbeatMsAgo).toBeLessThan(5_000)
    }
  })

  it('keeps each chunk on every node disk under its id, version and SHA-256, with the right bytes', async () => {
    const status = await cluster.status('films/bunny.mp4')
    const video = await readFile(VIDEO)
    for (const [id, dir] of cluster.nodeDirs) {
      const files = await chunkFilesOnDisk(dir)
      for (const chunk of status.files[0]!.chunks) {
        const name = `${chunk.id}.1.${chunk.sha256}`
        expect(files, `node ${id}`).toContain(name)
        const bytes = await readFile(join(dir, 'chunks', chunk.id.slice(0, 2), name))
        expect(bytes.equals(video.subarray(chunk.index * CHUNK, chunk.index * CHUNK + chunk.size))).toBe(true)
      }
    }
  })

  it('downloads byte-identical', async () => {
    const output = join(cluster.dir, 'bunny-copy.mp4')
    const result = await runCli(['download', 'films/bunny.mp4', '-o', output, '--json'], cluster.env)
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({name: 'films/bunny.mp4', size: 22_718_509})
    expect(await sha256File(output)).toBe(await sha256File(VIDEO))
  })

  it('round-trips the two other sample videos (a 2-chunk file and a 1-chunk file shorter than a chunk)', async () => {
    for (const sample of ['fillets-ng-intro.mpg', 'forensics-movie-hello.mp4']) {
      const up = await runCli(['upload', join(MEDIA, sample), '--json'], cluster.env)
      expect(up.code, up.stderr).toBe(0)
      expect(JSON.parse(up.stdout).name).toBe(sample)
      const output = join(cluster.dir, `copy-${sample}`)
      const down = await runCli(['download', sample, '-o', output], cluster.env)
      expect(down.code, down.stderr).toBe(0)
      expect(await sha256File(output)).toBe(await sha256File(join(MEDIA, sample)))
    }
    const status = await cluster.status()
    expect(status.files.map((f) => f.name).sort()).toEqual(['fillets-ng-intro.mpg', 'films/bunny.mp4', 'forensics-movie-hello.mp4'])
    expect(status.summary).toMatchObject({files: 3, chunks: 6, underReplicated: 0})
  })
})

describe('refusals from the outside', () => {
  it('a wrong token is refused with exit 1 and a one-line reason', async () => {
    const result = await runCli(['status', '--json'], {...cluster.env, CHUNKY_TOKEN: 'not-the-token'})
    expect(result.code).toBe(1)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toMatch(/token|credential/i)
  })

  it('a bad file name is refused and nothing is committed', async () => {
    const result = await runCli(['upload', join(MEDIA, 'forensics-movie-hello.mp4'), '--name', 'a/../b.mp4'], cluster.env)
    expect(result.code).not.toBe(0)
    expect(result.stderr).toMatch(/\.\./)
    const status = await cluster.status()
    expect(status.files.map((f) => f.name)).not.toContain('a/../b.mp4')
  })

  it('a download of a name that does not exist fails with exit 1', async () => {
    const result = await runCli(['download', 'no/such/video.mp4', '-o', join(cluster.dir, 'x')], cluster.env)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/no\/such\/video\.mp4/)
  })

  it('the node refuses a chunk write without the token (401)', async () => {
    const node = cluster.nodes.get('n1')!
    const response = await fetch(`${node.url}/chunks/${'a'.repeat(24)}/1`, {method: 'PUT', body: 'x'})
    expect(response.status).toBe(401)
    const withToken = await fetch(`${node.url}/chunks/${'a'.repeat(24)}/1`, {
      method: 'PUT',
      body: 'x',
      headers: {authorization: `Bearer ${TOKEN}`},
    })
    expect(withToken.status).toBe(403) // the token alone is not enough: no write grant from the master
  })
})
