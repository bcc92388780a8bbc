import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdir, open, readFile, rm, symlink, writeFile} from 'node:fs/promises'
import {createServer, request, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {killAll, runCli, sha256File, startCluster, type Cluster} from './harness.js'

// SPEC.md "Operating a cluster": `upload DIR --prefix P`, `sync DIR --prefix P [--delete] [--dry-run]`
// and `download --prefix P -o DIR`, against a real cluster. The client talks to the master through a
// pass-through proxy that only counts requests: a folder that did not change must cost a fixed
// number of master requests, not one per file.
const MiB = 1024 * 1024
let cluster: Cluster
let proxy: Server
let proxyUrl: string
const requests: string[] = []
let folder: string

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
  const target = new URL(cluster.master.url)
  proxy = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`)
    const upstream = request({host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers}, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`

  folder = join(cluster.dir, 'export')
  await mkdir(join(folder, 'sub', 'deeper'), {recursive: true})
  await writeFile(join(folder, 'a.bin'), randomBytes(2 * MiB + MiB / 2)) // 3 chunks of 1 MiB
  await writeFile(join(folder, 'sub', 'b.bin'), randomBytes(300 * 1024))
  await writeFile(join(folder, 'sub', 'deeper', 'c.txt'), 'a small text file\n')
  await writeFile(join(folder, 'empty.bin'), '')
  await symlink(join(folder, 'a.bin'), join(folder, 'link-to-a.bin')) // not a regular file: left out
})

afterAll(async () => {
  await new Promise((resolve) => proxy?.close(resolve))
  await cluster?.close()
  await killAll()
})

const env = () => ({...cluster.env, CHUNKY_MASTER: proxyUrl})
/** Runs a client command and returns its JSON document and the master requests it made. */
async function run(args: string[]): Promise<{doc: any; requests: string[]}> {
  requests.length = 0
  const result = await runCli([...args, '--json'], env())
  expect(result.code, result.stderr).toBe(0)
  return {doc: JSON.parse(result.stdout), requests: [...requests]}
}
const names = async () => ((await cluster.status()).files.map((f) => f.name)).sort()

describe.sequential('folders', () => {
  it('upload DIR --prefix: every regular file, subfolders and an empty file included', async () => {
    const {doc} = await run(['upload', folder, '--prefix', 'talks/2026', '--chunk-size', '1MiB'])
    expect(doc.files.map((f: {name: string}) => f.name)).toEqual(['talks/2026/a.bin', 'talks/2026/empty.bin', 'talks/2026/sub/b.bin', 'talks/2026/sub/deeper/c.txt'])
    expect(doc.files[0]).toMatchObject({size: 2.5 * MiB, chunks: 3, uploadedChunks: 3, skippedChunks: 0})
    expect(doc.files[1]).toMatchObject({size: 0, chunks: 0, uploadedChunks: 0, skippedChunks: 0})
    expect(doc).toMatchObject({uploadedChunks: 5, skippedChunks: 0})
    expect(await names()).toEqual(['talks/2026/a.bin', 'talks/2026/empty.bin', 'talks/2026/sub/b.bin', 'talks/2026/sub/deeper/c.txt'])
  })

  it('running it again sends no chunk, plans nothing, and asks the master twice whatever the number of files', async () => {
    const {doc, requests: made} = await run(['upload', folder, '--prefix', 'talks/2026', '--chunk-size', '1MiB'])
    expect(doc).toMatchObject({uploadedChunks: 0, skippedChunks: 5})
    expect(made).toEqual(['GET /api/nodes', `GET /api/files?prefix=${encodeURIComponent('talks/2026/')}&chunks=1`])
  })

  it('sync --dry-run --delete says what it would do and changes nothing', async () => {
    // a.bin: its middle chunk changes; sub/new.bin is new; sub/b.bin is gone
    const handle = await open(join(folder, 'a.bin'), 'r+')
    await handle.write(randomBytes(1000), 0, 1000, MiB + 10)
    await handle.close()
    await writeFile(join(folder, 'sub', 'new.bin'), randomBytes(MiB + 1)) // 2 chunks
    await rm(join(folder, 'sub', 'b.bin'))
    const before = await cluster.status()

    const {doc, requests: made} = await run(['sync', folder, '--prefix', 'talks/2026/', '--delete', '--dry-run', '--chunk-size', '1MiB'])
    expect(doc).toEqual({uploaded: ['talks/2026/a.bin', 'talks/2026/sub/new.bin'], unchanged: 2, deleted: ['talks/2026/sub/b.bin'],
      uploadedChunks: 3, skippedChunks: 3, dryRun: true})
    expect(made.filter((r) => !r.startsWith('GET '))).toEqual([])
    const after = await cluster.status()
    expect(after.files).toEqual(before.files)
  })

  it('sync --delete uploads the changed and new files (changed chunks only) and removes the missing one', async () => {
    const {doc, requests: made} = await run(['sync', folder, '--prefix', 'talks/2026', '--delete', '--chunk-size', '1MiB'])
    expect(doc).toEqual({uploaded: ['talks/2026/a.bin', 'talks/2026/sub/new.bin'], unchanged: 2, deleted: ['talks/2026/sub/b.bin'],
      uploadedChunks: 3, skippedChunks: 3, dryRun: false})
    expect(await names()).toEqual(['talks/2026/a.bin', 'talks/2026/empty.bin', 'talks/2026/sub/deeper/c.txt', 'talks/2026/sub/new.bin'])
    // two changed files: planned in one request and committed in one; one removal; nothing for the unchanged ones
    expect(made.filter((r) => r.startsWith('POST '))).toEqual(['POST /api/uploads/batch', 'POST /api/uploads/commit', 'POST /api/files/remove'])
    expect(made.filter((r) => r.startsWith('DELETE '))).toEqual([])
  })

  it('a first upload of 150 small files plans and commits them in batches: 3 requests each way, not 150', async () => {
    const many = join(cluster.dir, 'many')
    for (let i = 0; i < 150; i++) {
      await mkdir(join(many, `d${i % 3}`), {recursive: true})
      await writeFile(join(many, `d${i % 3}`, `f${i}.txt`), `file ${i}\n`)
    }
    const {doc, requests: made} = await run(['upload', many, '--prefix', 'many'])
    expect(doc.files).toHaveLength(150)
    expect(doc).toMatchObject({uploadedChunks: 150, skippedChunks: 0})
    expect(made.filter((r) => r.startsWith('POST '))).toEqual(Array.from({length: 3}, () => ['POST /api/uploads/batch', 'POST /api/uploads/commit']).flat())
    expect((await names()).filter((name) => name.startsWith('many/'))).toHaveLength(150)
    const back = join(cluster.dir, 'many-back')
    await run(['download', '--prefix', 'many', '-o', back])
    const diff = spawnSync('diff', ['-r', many, back], {encoding: 'utf8'})
    expect(diff.status, diff.stdout + diff.stderr).toBe(0)
    // removed again, so the tests below see only their own names
    await rm(many, {recursive: true})
    await mkdir(many)
    const removal = await run(['sync', many, '--prefix', 'many', '--delete'])
    expect(removal.doc.deleted).toHaveLength(150)
    // 150 removals in two requests of up to 100 names, not one each
    expect(removal.requests.filter((r) => r.startsWith('POST ') || r.startsWith('DELETE '))).toEqual(['POST /api/files/remove', 'POST /api/files/remove'])
    expect((await names()).filter((name) => name.startsWith('many/'))).toEqual([])
  })

  it('download --prefix gives back the folder, identical (diff -r), without the symbolic link', async () => {
    await rm(join(folder, 'link-to-a.bin'))
    const out = join(cluster.dir, 'restored')
    const {doc} = await run(['download', '--prefix', 'talks/2026', '-o', out])
    expect(doc.files).toHaveLength(4)
    const diff = spawnSync('diff', ['-r', folder, out], {encoding: 'utf8'})
    expect(diff.status, diff.stdout + diff.stderr).toBe(0)
    expect(await readFile(join(out, 'sub', 'deeper', 'c.txt'), 'utf8')).toBe('a small text file\n')
  })

  it('without --chunk-size a stored file keeps its chunk size: nothing to send (said in words)', async () => {
    const result = await runCli(['sync', folder, '--prefix', 'talks/2026', '--dry-run'], env())
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toBe('dry run, nothing changed: 0 to upload, 4 unchanged, 0 to remove; 0 chunks to send, 6 already stored\n')
  })

  it('download NAME -o DIR writes DIR/<last segment>', async () => {
    const dir = join(cluster.dir, 'into')
    await mkdir(dir)
    const {doc} = await run(['download', 'talks/2026/a.bin', '-o', `${dir}/`])
    expect(doc.output).toBe(join(dir, 'a.bin'))
    expect(await sha256File(join(dir, 'a.bin'))).toBe(await sha256File(join(folder, 'a.bin')))
  })

  it('refuses --name for a folder and --prefix for a file, before any work', async () => {
    const named = await runCli(['upload', folder, '--name', 'x'], env())
    expect(named.code).toBe(2)
    expect(named.stderr).toBe(`chunky: ${folder} is a folder: name where its files go with --prefix, not --name\n`)
    const prefixed = await runCli(['upload', join(folder, 'a.bin'), '--prefix', 'x'], env())
    expect(prefixed.code).toBe(2)
    const none = await runCli(['download', '--prefix', 'nothing/here', '-o', join(cluster.dir, 'none')], env())
    expect(none.code).toBe(1)
    expect(none.stderr).toBe('chunky: no files under nothing/here/ in the cluster (`./bin/run.js ls` lists them)\n')
  })
})
