import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {chromium, type Browser} from 'playwright-core'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {deriveCredentials} from '../../src/protocol/index.js'
import {killAll, MEDIA, ROOT, runCli, startCluster, TOKEN, waitFor, type Cluster} from './harness.js'

// tus-js-client in headless Chromium (Debian's package, driven by playwright-core), on a page of
// another origin than the nodes, uploads a real sample video through `chunky node --cors-origin`;
// a page of an origin not given is refused by the browser itself.
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SAMPLE = join(MEDIA, 'big-buck-bunny-1080p-30s.mp4') // 21.7 MiB: 3 chunks, sent in 5 MiB PATCHes as Uppy does
const TUS_BUNDLE = join(ROOT, 'node_modules/tus-js-client/dist/tus.min.js')
const {rw} = deriveCredentials(TOKEN)

/** A page server of its own origin: the page, the tus-js-client bundle, and the sample the page uploads. */
async function pageServer(): Promise<Server> {
  const files: Record<string, [string, Buffer]> = {
    '/': ['text/html', Buffer.from('<!doctype html><title>upload</title><script src="/tus.min.js"></script>')],
    '/tus.min.js': ['text/javascript', await readFile(TUS_BUNDLE)],
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

describe('tus-js-client in headless Chromium from another origin', () => {
  let cluster: Cluster
  let browser: Browser | undefined
  const pages: Server[] = []
  let allowed = ''
  let other = ''

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser test needs Debian's chromium (apt-get install chromium; .ci/run does it)`)
    pages.push(await pageServer(), await pageServer())
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
})
