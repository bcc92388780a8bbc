import {execFile} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'
import * as tus from 'tus-js-client'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {deriveCredentials} from '../../src/protocol/index.js'
import {chunkFilesOnDisk, killAll, runCli, startCluster, TOKEN, waitFor, type Cluster} from './harness.js'

// Issue 13: tus 1.0 on every node, into the chunky write path. Real tus clients (tus-js-client,
// Debian's tuspy) against a real 3-node cluster (R=3, W=2).
const MiB = 1024 * 1024
const CHUNK = 10 * MiB
const {rw, ro} = deriveCredentials(TOKEN)
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

let cluster: Cluster
const node = (id: string) => cluster.nodes.get(id)!.url

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

/** tus-js-client from Node; resolves with the upload URL once onSuccess fired. */
function tusUpload(data: Buffer, opts: Partial<tus.UploadOptions>): Promise<string> {
  return new Promise((resolve, reject) => {
    const upload: tus.Upload = new tus.Upload(data, {
      headers: {authorization: `Bearer ${rw}`},
      retryDelays: [],
      ...opts,
      onError: reject,
      onSuccess: () => resolve(upload.url!),
    })
    upload.start()
  })
}

async function downloaded(name: string): Promise<Buffer> {
  const output = join(cluster.dir, `${name.replaceAll('/', '_')}.copy`)
  const result = await runCli(['download', name, '-o', output], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  return readFile(output)
}

/** One raw tus request (the protocol's own statuses are what is checked). */
function tusRequest(url: string, method: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Response> {
  return fetch(url, {method, headers: {'tus-resumable': '1.0.0', ...headers}, body})
}

async function createRaw(length: number, name: string, auth = `Bearer ${rw}`, base = `${node('n1')}/tus/`): Promise<Response> {
  return tusRequest(base, 'POST', {authorization: auth, 'upload-length': String(length), 'upload-metadata': `name ${Buffer.from(name).toString('base64')}`})
}

describe('tus uploads', () => {
  it('tus-js-client uploads 50 MiB with metadata: committed, downloads byte-identical, R replicas at version 1; again: same versions', async () => {
    const data = randomBytes(50 * MiB + 4321)
    const url = await tusUpload(data, {endpoint: `${node('n1')}/tus/`, metadata: {name: 'tus/fifty.bin', filetype: 'application/octet-stream'}})
    expect(url).toMatch(new RegExp(`^${node('n1')}/tus/[0-9a-f]{32}$`))
    expect(sha256(await downloaded('tus/fifty.bin'))).toBe(sha256(data))
    const [file] = (await cluster.status('tus/fifty.bin')).files
    expect(file!.size).toBe(data.length)
    expect(file!.chunks).toHaveLength(6)
    for (const chunk of file!.chunks) {
      expect(chunk.version).toBe(1)
      expect(chunk.replicas.filter((r) => r.state === 'fresh' && r.version === 1)).toHaveLength(3)
    }
    // HEAD of the finished upload, on another node
    const head = await tusRequest(url.replace(node('n1'), node('n2')), 'HEAD', {authorization: `Bearer ${rw}`})
    expect(head.status).toBe(200)
    expect(head.headers.get('upload-offset')).toBe(String(data.length))

    // The same bytes again, in 4 MiB PATCHes through another node: unchanged chunks keep their version.
    await tusUpload(data, {endpoint: `${node('n2')}/tus/`, chunkSize: 4 * MiB, metadata: {filename: 'tus/fifty.bin'}})
    const [again] = (await cluster.status('tus/fifty.bin')).files
    expect(again!.chunks.map((c) => [c.id, c.version])).toEqual(file!.chunks.map((c) => [c.id, c.version]))
  })

  it("Debian's python3-tuspy uploads with sha1 checksums in 3 MiB PATCHes", async () => {
    const data = randomBytes(23 * MiB + 17)
    const path = join(cluster.dir, 'tuspy.bin')
    await writeFile(path, data)
    const script = [
      'import sys',
      'from tusclient import client',
      'c = client.TusClient(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})',
      'u = c.uploader(sys.argv[3], chunk_size=3 * 1024 * 1024, metadata={"name": "tus/tuspy.bin"}, upload_checksum=True)',
      'assert u.checksum_algorithm_name == "sha1", u.checksum_algorithm_name',
      'u.upload()',
      'print(u.url)',
    ].join('\n')
    const {stdout} = await promisify(execFile)('/usr/bin/python3', ['-c', script, `${node('n3')}/tus/`, rw, path], {timeout: 120_000})
    expect(stdout.trim()).toMatch(new RegExp(`^${node('n3')}/tus/[0-9a-f]{32}$`))
    expect(sha256(await downloaded('tus/tuspy.bin'))).toBe(sha256(data))
  })

  it('refuses what it must: 412, 401, 403, 460 with the offset unchanged, 409, 413, termination 204 then 404', async () => {
    expect((await fetch(`${node('n1')}/tus/`, {method: 'POST', headers: {authorization: `Bearer ${rw}`, 'upload-length': '5'}})).status).toBe(412)
    expect((await createRaw(5, 'tus/x.bin', '')).status).toBe(401)
    expect((await createRaw(5, 'tus/x.bin', 'Bearer rw-0000')).status).toBe(401)
    expect((await createRaw(5, 'tus/x.bin', `Bearer ${ro}`)).status).toBe(403)
    expect((await createRaw(5, 'tus/../x.bin')).status).toBe(400)

    const created = await createRaw(3 * MiB, 'tus/refusals.bin')
    expect(created.status).toBe(201)
    const url = created.headers.get('location')!
    expect(created.headers.get('upload-expires')).toBeTruthy()
    const auth = {authorization: `Bearer ${rw}`, 'content-type': 'application/offset+octet-stream'}
    const piece = randomBytes(MiB)
    const ok = await tusRequest(url, 'PATCH', {...auth, 'upload-offset': '0', 'upload-checksum': `sha256 ${createHash('sha256').update(piece).digest('base64')}`}, piece)
    expect(ok.status).toBe(204)
    expect(ok.headers.get('upload-offset')).toBe(String(MiB))
    const wrong = await tusRequest(url, 'PATCH', {...auth, 'upload-offset': String(MiB), 'upload-checksum': `sha1 ${createHash('sha1').update('other').digest('base64')}`}, piece)
    expect(wrong.status).toBe(460)
    expect((await tusRequest(url, 'HEAD', {authorization: `Bearer ${rw}`})).headers.get('upload-offset')).toBe(String(MiB))
    expect((await tusRequest(url, 'PATCH', {...auth, 'upload-offset': '0'}, piece)).status).toBe(409)
    expect((await tusRequest(url, 'PATCH', {...auth, 'upload-offset': String(MiB)}, randomBytes(2 * MiB + 1))).status).toBe(413)
    expect((await tusRequest(url, 'PATCH', {authorization: `Bearer ${rw}`, 'upload-offset': String(MiB)}, piece)).status).toBe(415)

    expect((await tusRequest(url, 'DELETE', {authorization: `Bearer ${rw}`})).status).toBe(204)
    expect((await tusRequest(url, 'HEAD', {authorization: `Bearer ${rw}`})).status).toBe(404)
    expect((await tusRequest(url.replace(node('n1'), node('n2')), 'HEAD', {authorization: `Bearer ${rw}`})).status).toBe(404)
  })

  it('creation-with-upload keeps the body sent with the POST; a deferred length is given with the last PATCH', async () => {
    const auth = {authorization: `Bearer ${rw}`}
    const body = randomBytes(MiB + 7)
    const created = await tusRequest(`${node('n2')}/tus/`, 'POST', {...auth, 'upload-defer-length': '1', 'content-type': 'application/offset+octet-stream',
      'upload-metadata': `filename ${Buffer.from('tus/deferred.bin').toString('base64')}`}, body.subarray(0, MiB))
    expect(created.status).toBe(201)
    expect(created.headers.get('upload-offset')).toBe(String(MiB))
    const url = created.headers.get('location')!
    const head = await tusRequest(url, 'HEAD', auth)
    expect(head.headers.get('upload-defer-length')).toBe('1')
    const last = await tusRequest(url, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(MiB), 'upload-length': String(body.length)}, body.subarray(MiB))
    expect(last.status).toBe(204)
    expect(last.headers.get('upload-offset')).toBe(String(body.length))
    expect(sha256(await downloaded('tus/deferred.bin'))).toBe(sha256(body))
  })

  it('a deferred length given with an empty last PATCH on a chunk boundary commits, the chunk before it stored or still on its way', async () => {
    const auth = {authorization: `Bearer ${rw}`}
    const patchAt = (url: string, offset: number, extra: Record<string, string>, body?: Buffer) =>
      tusRequest(url, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(offset), ...extra}, body)
    for (const [name, waitForW] of [['tus/boundary-stored.bin', true], ['tus/boundary-sent.bin', false]] as const) {
      const created = await tusRequest(`${node('n3')}/tus/`, 'POST', {...auth, 'upload-defer-length': '1', 'upload-metadata': `name ${Buffer.from(name).toString('base64')}`})
      expect(created.status).toBe(201)
      const url = created.headers.get('location')!
      const body = randomBytes(CHUNK)
      const first = await patchAt(url, 0, {}, body)
      expect(first.status).toBe(204)
      expect(first.headers.get('upload-offset')).toBe(String(CHUNK))
      // Another node answers the master's offset: the chunk is on W nodes.
      if (waitForW) await waitFor('the chunk on W nodes', async () => (await tusRequest(url.replace(node('n3'), node('n1')), 'HEAD', auth)).headers.get('upload-offset') === String(CHUNK), 30_000)
      const last = await patchAt(url, CHUNK, {'upload-length': String(CHUNK)})
      expect(last.status).toBe(204)
      expect(last.headers.get('upload-offset')).toBe(String(CHUNK))
      expect(sha256(await downloaded(name))).toBe(sha256(body))
    }
  })

  it('a signed upload link uploads its name without a credential and refuses another name or a larger size', async () => {
    const share = await runCli(['share', '--upload', 'tus/linked.bin', '--max-size', '2MiB', '--node', 'n2', '--json'], cluster.env)
    expect(share.code, share.stderr).toBe(0)
    const link = JSON.parse(share.stdout) as {url: string; expiresAt: string}
    expect(link.url).toMatch(new RegExp(`^${node('n2')}/tus/u/[^/]+/$`))
    expect(Date.parse(link.expiresAt) - Date.now()).toBeLessThanOrEqual(3600_000 + 5000)
    expect((await createRaw(MiB, 'tus/other.bin', '', link.url)).status).toBe(403)
    expect((await createRaw(3 * MiB, 'tus/linked.bin', '', link.url)).status).toBe(413)
    const forged = link.url.replace(/\.([^./]+)\/$/, '.AAAA$1/')
    expect((await createRaw(MiB, 'tus/linked.bin', '', forged)).status).toBe(403)

    const data = randomBytes(2 * MiB)
    const url = await tusUpload(data, {endpoint: link.url.replace(node('n2'), node('n3')), headers: {}, metadata: {name: 'tus/linked.bin'}})
    expect(url.startsWith(`${node('n3')}/tus/u/`)).toBe(true)
    expect(sha256(await downloaded('tus/linked.bin'))).toBe(sha256(data))
  })

  it('parallelUploads: 3 (concatenation) joins the partials without copying: byte-identical download, a range across a partial boundary, refusals', async () => {
    // Three parts of 11 MiB and a bit: each partial is a whole chunk and a short one, so the joined file has short chunks mid-file.
    const data = randomBytes(33 * MiB + 7)
    const partials: string[] = []
    let concat = ''
    const finalUrl = await tusUpload(data, {
      endpoint: `${node('n2')}/tus/`, parallelUploads: 3, metadata: {name: 'tus/parallel.bin'},
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'POST' && req.getHeader('Upload-Concat') === 'partial') partials.push(res.getHeader('Location')!)
        if (req.getMethod() === 'POST' && req.getHeader('Upload-Concat')?.startsWith('final;')) concat = req.getHeader('Upload-Concat')!
      },
    })
    expect(sha256(await downloaded('tus/parallel.bin'))).toBe(sha256(data))
    // HEAD of the final upload, through a node other than the one that took it, lists its partials in
    // order (tus: Upload-Concat: final;…), named on the node asked; a partial's HEAD says partial.
    const listed = concat.slice('final;'.length).split(' ')
    expect(listed.toSorted()).toEqual(partials.toSorted())
    expect(listed).toHaveLength(3)
    const finalHead = await tusRequest(finalUrl.replace(node('n2'), node('n3')), 'HEAD', {authorization: `Bearer ${rw}`})
    expect(finalHead.status).toBe(200)
    expect(finalHead.headers.get('upload-concat')).toBe(`final;${listed.map((url) => url.replace(node('n2'), node('n3'))).join(' ')}`)
    expect([finalHead.headers.get('upload-length'), finalHead.headers.get('upload-offset')]).toEqual([String(data.length), String(data.length)])
    const [file] = (await cluster.status('tus/parallel.bin')).files
    const part = Math.floor(data.length / 3)
    // The partials' own chunks, at their first versions: nothing re-cut or copied.
    expect(file!.chunks.map((c) => [c.size, c.version])).toEqual([[CHUNK, 1], [part - CHUNK, 1], [CHUNK, 1], [part - CHUNK, 1], [CHUNK, 1], [data.length - 2 * part - CHUNK, 1]])
    for (const chunk of file!.chunks) expect(chunk.replicas.filter((r) => r.state === 'fresh')).toHaveLength(3)
    const ranged = await fetch(`${node('n3')}/v1/files/tus/parallel.bin`, {headers: {authorization: `Bearer ${ro}`, range: `bytes=${part - 1000}-${part + 999}`}})
    expect(ranged.status).toBe(206)
    expect(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(part - 1000, part + 1000))).toBe(true)

    const auth = {authorization: `Bearer ${rw}`}
    // A final upload is whole once made: a PATCH to it is forbidden (tus: 403), on any node.
    const patchFinal = await tusRequest(finalUrl.replace(node('n2'), node('n3')), 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(data.length)}, Buffer.from('x'))
    expect(patchFinal.status).toBe(403)
    expect(await patchFinal.text()).toMatch(/final upload/)
    const final = (parts: string[], headers: Record<string, string> = auth, base = `${node('n1')}/tus/`) =>
      tusRequest(base, 'POST', {...headers, 'upload-concat': `final;${parts.join(' ')}`, 'upload-metadata': `name ${Buffer.from('tus/parallel.bin').toString('base64')}`})
    const partial = async (length: number, headers: Record<string, string> = auth, base = `${node('n1')}/tus/`) => {
      const created = await tusRequest(base, 'POST', {...headers, 'upload-concat': 'partial', 'upload-length': String(length)})
      expect(created.status).toBe(201)
      return created.headers.get('location')!
    }
    const unfinished = await partial(100)
    expect((await tusRequest(unfinished, 'HEAD', auth)).headers.get('upload-concat')).toBe('partial')
    const unfinishedFinal = await final([unfinished])
    expect(unfinishedFinal.status).toBe(400)
    expect(await unfinishedFinal.text()).toMatch(/not finished/)
    expect((await final([`${node('n1')}/tus/${'0'.repeat(32)}`])).status).toBe(404)
    const whole = (await createRaw(5, 'tus/whole.bin')).headers.get('location')!
    expect((await final([whole])).status).toBe(400) // not a partial upload
    const done = await partial(3)
    expect((await tusRequest(done, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0'}, Buffer.from('abc'))).status).toBe(204)
    const share = await runCli(['share', '--upload', 'tus/parallel.bin', '--json'], cluster.env)
    expect(share.code, share.stderr).toBe(0)
    const link = (JSON.parse(share.stdout) as {url: string}).url
    expect((await final([done], {}, link)).status).toBe(403) // made with a credential, not through this link
    expect((await final([done, done])).status).toBe(400)
    expect((await final([done])).status).toBe(201) // replaces the joined file above, whose chunks are dropped
    expect((await downloaded('tus/parallel.bin')).toString()).toBe('abc')
    expect((await final([done])).status).toBe(404) // joined once, gone
    // Through a signed link, HEAD names the partials under that link's endpoint, on the node asked.
    const viaLink = await partial(3, {}, link)
    expect(viaLink.startsWith(link)).toBe(true)
    expect((await tusRequest(viaLink, 'PATCH', {'content-type': 'application/offset+octet-stream', 'upload-offset': '0'}, Buffer.from('xyz'))).status).toBe(204)
    const joined = await final([viaLink], {}, link)
    expect(joined.status).toBe(201)
    const origin = new URL(link).origin
    const another = ['n1', 'n2', 'n3'].map(node).find((url) => url !== origin)!
    const linkedHead = await tusRequest(joined.headers.get('location')!.replace(origin, another), 'HEAD')
    expect(linkedHead.headers.get('upload-concat')).toBe(`final;${viaLink.replace(origin, another)}`)
    expect((await downloaded('tus/parallel.bin')).toString()).toBe('xyz')
  })

  it('resumes at the same path on another node after kill -9 of the entry node, from no more than was durable on W nodes', async () => {
    const data = randomBytes(45 * MiB)
    const held = async (id: string) => (await chunkFilesOnDisk(cluster.nodeDirs.get(id)!)).length
    const before = {n2: await held('n2'), n3: await held('n3')}
    let acked = 0
    let uploadUrl = ''
    // Past 25 MiB the client holds its next PATCH until the entry node is dead, so it cannot finish the
    // file first (on a fast machine it did while the test waited for W), and the entry node's tail
    // past its last whole chunk is in flight to nowhere but that node.
    let release = (): void => {}
    const nextPatch = new Promise<void>((resolve) => (release = resolve))
    const first = new tus.Upload(data, {
      endpoint: `${node('n1')}/tus/`,
      headers: {authorization: `Bearer ${rw}`},
      chunkSize: 3 * MiB,
      retryDelays: [],
      metadata: {name: 'tus/resumed.bin'},
      onUploadUrlAvailable: () => void (uploadUrl = first.url!),
      onChunkComplete: (_size, accepted) => void (acked = accepted),
      onBeforeRequest: async (req) => {
        if (req.getMethod() === 'PATCH' && acked >= 25 * MiB) await nextPatch
      },
      onError: () => {},
    })
    first.start()
    await waitFor('the entry node took 25 MiB', async () => acked >= 25 * MiB, 60_000)
    // A PATCH answers once its bytes are fsynced on the entry node; its chunks reach W nodes just after.
    await waitFor('two chunks durable on W nodes', async () => Number((await tusRequest(uploadUrl.replace(node('n1'), node('n2')), 'HEAD', {authorization: `Bearer ${rw}`})).headers.get('upload-offset')) >= 2 * CHUNK, 30_000)
    await cluster.nodes.get('n1')!.kill9()
    first.abort().catch(() => {})
    release()
    const ackedByEntry = acked

    const resumeAt = uploadUrl.replace(node('n1'), node('n2'))
    const head = await tusRequest(resumeAt, 'HEAD', {authorization: `Bearer ${rw}`})
    expect(head.status).toBe(200)
    const offset = Number(head.headers.get('upload-offset'))
    expect(offset % CHUNK).toBe(0) // whole chunks only: the entry node's tail died with it
    expect(offset).toBeGreaterThanOrEqual(2 * CHUNK)
    expect(offset).toBeLessThanOrEqual(ackedByEntry)
    // every byte below the offset is on both survivors (W = 2)
    for (const id of ['n2', 'n3'] as const) expect(await held(id)).toBeGreaterThanOrEqual(before[id] + offset / CHUNK)

    let resumedFrom = -1
    await new Promise<void>((resolve, reject) => {
      const second = new tus.Upload(data, {
        uploadUrl: resumeAt, // no endpoint: a failed resume must fail, not start over from 0
        headers: {authorization: `Bearer ${rw}`},
        chunkSize: 8 * MiB,
        retryDelays: [],
        onProgress: (sent) => void (resumedFrom < 0 && (resumedFrom = sent)),
        onError: reject,
        onSuccess: () => resolve(),
      })
      second.start()
    })
    expect(resumedFrom).toBeGreaterThanOrEqual(offset) // its progress counts from the offset on: it did not start at 0
    expect(resumedFrom).toBeLessThanOrEqual(offset + 8 * MiB)
    expect(sha256(await downloaded('tus/resumed.bin'))).toBe(sha256(data))
  })
})

describe('tus memory budget', () => {
  it('concurrent PATCHes on a node with --tus-memory 20MiB all finish, each holding its write batches and never a chunk, and nothing after', async () => {
    const small = await startCluster({nodes: 0, replicas: 1})
    try {
      const n1 = (await small.startNode('n1', undefined, ['--tus-memory', '20MiB'])).url
      await waitFor('the node alive', async () => (await small.status()).summary.aliveNodes === 1)
      const auth = {authorization: `Bearer ${rw}`}
      const scrape = async (metric: string) => {
        const text = await (await fetch(`${n1}/metrics`, {headers: auth})).text()
        return Number(new RegExp(`^${metric} (\\d+)$`, 'm').exec(text)?.[1])
      }
      // Four uploads of a chunk and a half each, at once: with chunks held in memory they would want six chunks of the budget.
      const bodies = Array.from({length: 4}, () => randomBytes(CHUNK + CHUNK / 2))
      const urls = await Promise.all(bodies.map(async (body, i) => {
        const created = await tusRequest(`${n1}/tus/`, 'POST', {...auth, 'upload-length': String(body.length), 'upload-metadata': `name ${Buffer.from(`tus/budget-${i}.bin`).toString('base64')}`})
        expect(created.status).toBe(201)
        return created.headers.get('location')!
      }))
      const patches = await Promise.all(urls.map((url, i) => tusRequest(url, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0'}, bodies[i])))
      expect(patches.map((res) => [res.status, res.headers.get('upload-offset')])).toEqual(bodies.map((body) => [204, String(body.length)]))
      const peak = await scrape('chunky_tus_memory_peak_bytes')
      expect(peak).toBeGreaterThanOrEqual(2 * MiB) // the gauge saw the uploads
      expect(peak).toBeLessThanOrEqual(bodies.length * 2 * MiB) // bytes go to disk as they arrive: no PATCH holds a chunk
      expect(await scrape('chunky_tus_memory_bytes')).toBe(0)
      const result = await runCli(['download', 'tus/budget-3.bin', '-o', join(small.dir, 'budget-3.copy')], small.env)
      expect(result.code, result.stderr).toBe(0)
      expect(sha256(await readFile(join(small.dir, 'budget-3.copy')))).toBe(sha256(bodies[3]!))
    } finally {
      await small.close()
    }
  })
})

describe('tus expiry', () => {
  it('an unfinished upload answers 410 after --upload-expiry, a finished partial can no longer be joined, and their chunks are deleted', async () => {
    const small = await startCluster({nodes: 1, replicas: 1, masterArgs: ['--upload-expiry', '4s']})
    try {
      const n1 = small.nodes.get('n1')!.url
      const auth = {authorization: `Bearer ${rw}`}
      // made first, so it expires no later than the upload below
      const partial = await tusRequest(`${n1}/tus/`, 'POST', {...auth, 'upload-concat': 'partial', 'upload-length': '3'})
      const partialUrl = partial.headers.get('location')!
      expect((await tusRequest(partialUrl, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0'}, Buffer.from('abc'))).status).toBe(204)
      const created = await tusRequest(`${n1}/tus/`, 'POST', {...auth, 'upload-length': String(CHUNK + 100), 'upload-metadata': `name ${Buffer.from('late.bin').toString('base64')}`})
      expect(created.status).toBe(201)
      const url = created.headers.get('location')!
      expect(Date.parse(created.headers.get('upload-expires')!)).toBeGreaterThan(Date.now() - 1000)
      const patch = await tusRequest(url, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0'}, randomBytes(CHUNK))
      expect(patch.status).toBe(204)
      // the whole first chunk (stored once the PATCH's bytes were fsynced) and the finished partial, pending versions
      await waitFor('two chunks on the node', async () => (await chunkFilesOnDisk(small.nodeDirs.get('n1')!)).length === 2, 15_000)
      await waitFor('the upload expired', async () => (await tusRequest(url, 'HEAD', auth)).status === 410, 15_000)
      const late = await tusRequest(url, 'PATCH', {...auth, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(CHUNK)}, randomBytes(100))
      expect(late.status).toBe(410)
      const lateFinal = await tusRequest(`${n1}/tus/`, 'POST', {...auth, 'upload-concat': `final;${partialUrl}`, 'upload-metadata': `name ${Buffer.from('late.bin').toString('base64')}`})
      expect(lateFinal.status).toBe(410) // a finished partial expires unjoined too
      await waitFor('their chunks deleted from the node', async () => (await chunkFilesOnDisk(small.nodeDirs.get('n1')!)).length === 0, 15_000)
    } finally {
      await small.close()
    }
  })
})
