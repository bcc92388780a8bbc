import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {chromium, type Browser} from 'playwright-core'
import {build} from 'vite'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {deriveCredentials} from '../../src/protocol/index.js'
import {killAll, MEDIA, ROOT, runCli, startCluster, TOKEN, waitFor, type Cluster} from './harness.js'

// tus-js-client and Uppy in headless Chromium (Debian's package, driven by playwright-core), on a
// page of another origin than the nodes, upload a real sample video through `chunky node
// --cors-origin`; a page of an origin not given is refused by the browser itself.
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SAMPLE = join(MEDIA, 'big-buck-bunny-1080p-30s.mp4') // 21.7 MiB: 3 chunks, sent in 5 MiB PATCHes as Uppy does
const TUS_BUNDLE = join(ROOT, 'node_modules/tus-js-client/dist/tus.min.js')
const UPPY_PAGE = join(ROOT, 'test/e2e/pages/uppy-upload.js') // the README's Uppy snippet
const MiB = 1024 * 1024
const {rw} = deriveCredentials(TOKEN)

/** The Uppy page code with @uppy/core and @uppy/tus, bundled (by the Vite that Vitest runs on) as one script defining `chunkyUppy`. */
async function uppyBundle(): Promise<Buffer> {
  const built = await build({
    configFile: false, root: ROOT, logLevel: 'warn',
    build: {write: false, lib: {entry: UPPY_PAGE, formats: ['iife'], name: 'chunkyUppy'}},
  })
  const output = (Array.isArray(built) ? built : [built]).flatMap((result) => ('output' in result ? result.output : []))
  const script = output.find((chunk) => chunk.type === 'chunk')
  if (!script || script.type !== 'chunk') throw new Error(`bundling ${UPPY_PAGE} gave no script`)
  return Buffer.from(script.code)
}

/** A page server of its own origin: the page, the tus-js-client and Uppy scripts, and the sample the page uploads. */
async function pageServer(uppy: Buffer): Promise<Server> {
  const files: Record<string, [string, Buffer]> = {
    '/': ['text/html', Buffer.from('<!doctype html><title>upload</title><script src="/tus.min.js"></script><script src="/uppy.js"></script>')],
    '/tus.min.js': ['text/javascript', await readFile(TUS_BUNDLE)],
    '/uppy.js': ['text/javascript', uppy],
    '/sample.mp4': ['video/mp4', await readFile(SAMPLE)],
  }
  const server = createServer((req, res) => {
    const file = files[req.url ?? '']
    if (!file) return void res.writeHead(404).end()
    res.writeHead(200, {'content-type': file[0], 'content-length': file[1].length}).end(file[1])
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}

/** Runs in the page: fetches the sample and uploads it with tus-js-client; resolves with the upload URL or the error's text. */
const UPLOAD_IN_PAGE = `(async ({endpoint, token, name}) => {
  const blob = await (await fetch('/sample.mp4')).blob()
  return await new Promise((resolve) => {
    const upload = new tus.Upload(blob, {
      endpoint, chunkSize: 5 * 1024 * 1024, retryDelays: [],
      headers: {Authorization: 'Bearer ' + token},
      metadata: {name, filetype: blob.type},
      onError: (err) => resolve('error: ' + err.message),
      onSuccess: () => resolve(upload.url),
    })
    upload.start()
  })
})`

/** Runs in the page: fetches the sample and uploads it with the README's Uppy code; resolves with the upload URL or the error's text. */
const UPPY_IN_PAGE = `(async (link) => chunkyUppy.uploadWithUppy(await (await fetch('/sample.mp4')).blob(), link))`

describe('tus-js-client and Uppy in headless Chromium from another origin', () => {
  let cluster: Cluster
  let browser: Browser | undefined
  const pages: Server[] = []
  let allowed = ''
  let other = ''

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser test needs Debian's chromium (apt-get install chromium; .ci/run does it)`)
    const uppy = await uppyBundle()
    pages.push(await pageServer(uppy), await pageServer(uppy))
    ;[allowed, other] = pages.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`) as [string, string]
    cluster = await startCluster({nodes: 0, replicas: 2})
    for (const id of ['n1', 'n2']) await cluster.startNode(id, undefined, ['--cors-origin', allowed])
    await waitFor('two nodes alive', async () => (await cluster.status()).summary.aliveNodes === 2)
    browser = await chromium.launch({executablePath: CHROMIUM, args: CHROMIUM_ARGS})
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    for (const server of pages) server.close()
    await cluster?.close()
    await killAll()
  })

  it('uploads a sample video through --cors-origin; the file downloads byte-identical; another origin is refused', async () => {
    const endpoint = `${cluster.nodes.get('n1')!.url}/tus/`
    const page = await browser!.newPage()
    await page.goto(`${allowed}/`)
    const url = await page.evaluate(`${UPLOAD_IN_PAGE}(${JSON.stringify({endpoint, token: rw, name: 'browser/bunny.mp4'})})`)
    expect(url).toMatch(new RegExp(`^${endpoint}[0-9a-f]{32}$`))

    const output = join(cluster.dir, 'bunny.copy')
    const download = await runCli(['download', 'browser/bunny.mp4', '-o', output], cluster.env)
    expect(download.code, download.stderr).toBe(0)
    const sha = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex')
    expect(await sha(output)).toBe(await sha(SAMPLE))

    const stranger = await browser!.newPage()
    await stranger.goto(`${other}/`)
    const refused = await stranger.evaluate(`${UPLOAD_IN_PAGE}(${JSON.stringify({endpoint, token: rw, name: 'browser/stranger.mp4'})})`)
    expect(String(refused)).toMatch(/^error: /)
    expect((await cluster.status()).files.map((f) => f.name)).not.toContain('browser/stranger.mp4')
  })
  it('Uppy (@uppy/core, @uppy/tus) uploads a sample video in 5 MiB PATCHes through a signed upload link; the file downloads byte-identical', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    const snippet = /\/\/ README begin\n([\s\S]*?)\n\s*\/\/ README end/.exec(await readFile(UPPY_PAGE, 'utf8'))![1]!
    const trimmed = (text: string) => text.split('\n').map((line) => line.trim()).join('\n')
    expect(trimmed(readme), 'README shows the Uppy code this test runs').toContain(trimmed(snippet))

    const share = await runCli(['share', '--upload', 'browser/uppy.mp4', '--node', 'n2', '--json'], cluster.env)
    expect(share.code, share.stderr).toBe(0)
    const link = JSON.parse(share.stdout) as {name: string; url: string}
    const page = await browser!.newPage()
    const patches: number[] = []
    page.on('request', (request) => {
      if (request.method() === 'PATCH') patches.push(Number(request.headers()['upload-offset']))
    })
    await page.goto(`${allowed}/`)
    const url = await page.evaluate(`${UPPY_IN_PAGE}(${JSON.stringify(link)})`)
    expect(url).toMatch(new RegExp(`^${link.url}[0-9a-f]{32}$`))
    // Uppy's pieces end mid-chunk (5 and 15 MiB into 10 MiB chunks), and each advanced the offset.
    const size = (await readFile(SAMPLE)).length
    expect(patches).toEqual(Array.from({length: Math.ceil(size / (5 * MiB))}, (_, i) => i * 5 * MiB))

    const output = join(cluster.dir, 'uppy.copy')
    const download = await runCli(['download', 'browser/uppy.mp4', '-o', output], cluster.env)
    expect(download.code, download.stderr).toBe(0)
    const sha = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex')
    expect(await sha(output)).toBe(await sha(SAMPLE))
    const [file] = (await cluster.status('browser/uppy.mp4')).files
    expect(file!.chunks.map((chunk) => chunk.replicas.filter((r) => r.state === 'fresh').length)).toEqual([2, 2, 2])
  })
})
