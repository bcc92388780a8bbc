import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {masterApi} from '../../src/client/master-api.js'
import {ChunkyError} from '../../src/protocol/index.js'
import {fakeServer, json, type FakeServer} from './fake-http.js'

// Every way the master can answer becomes a ChunkyError whose message says what to do.
let master: FakeServer
let closedUrl: string

beforeAll(async () => {
  master = await fakeServer((req, res) => {
    if (req.headers.authorization !== 'Bearer right') return json(res, 401, {error: {code: 'UNAUTHORIZED', message: 'wrong credential'}})
    if (req.url === '/api/files/missing%2Fvideo.mp4') return json(res, 404, {error: {code: 'FILE_NOT_FOUND', message: 'no file named missing/video.mp4'}})
    if (req.url === '/api/nodes') return json(res, 200, {nodes: [{id: 'n1', url: 'http://127.0.0.1:1', zone: 'a', state: 'alive'}]})
    if (req.url === '/api/files') return json(res, 200, {files: [{name: 'x', size: -1}]}) // breaks the schema
    if (req.url === '/api/status') {
      res.writeHead(200, {'content-type': 'text/html'})
      return res.end('<html>not a chunky master</html>')
    }
    return json(res, 503, {error: {code: 'NO_NODES', message: 'no alive nodes to place chunk 0'}})
  })
  const closed = await fakeServer(() => {})
  closedUrl = closed.url
  await closed.close() // nothing listens there any more
})

afterAll(async () => {
  await master?.close()
})

describe('masterApi error mapping', () => {
  it('returns validated bodies', async () => {
    const {nodes} = await masterApi(master.url, 'right').nodes()
    expect(nodes[0]).toMatchObject({id: 'n1', state: 'alive'})
  })

  it('turns a closed port into MASTER_UNREACHABLE with the hint', async () => {
    const err = await masterApi(closedUrl, 'right').status().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ChunkyError)
    expect(err).toMatchObject({code: 'MASTER_UNREACHABLE'})
    expect((err as Error).message).toBe(
      `cannot reach the master at ${closedUrl} (ECONNREFUSED): is \`chunky master\` running? set --master, CHUNKY_MASTER or \`chunky config set master URL\``,
    )
  })

  it('turns 401 into a credential message that fits whether a token was sent', async () => {
    await expect(masterApi(master.url, 'wrong').nodes()).rejects.toThrow('the master refused the credential (401): check --token, CHUNKY_TOKEN or `chunky config set token`')
    await expect(masterApi(master.url, undefined).nodes()).rejects.toThrow(/requires a credential \(401\): pass --token, set CHUNKY_TOKEN or run `chunky config set token T`/)
  })

  it("keeps the server's code and message for an ErrorBody", async () => {
    await expect(masterApi(master.url, 'right').manifest('missing/video.mp4')).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
      message: 'no file named missing/video.mp4',
    })
    await expect(masterApi(master.url, 'right').commit('u1')).rejects.toMatchObject({code: 'NO_NODES', message: 'no alive nodes to place chunk 0'})
  })

  it('refuses answers that are not JSON or break the schema', async () => {
    await expect(masterApi(master.url, 'right').status()).rejects.toMatchObject({code: 'BAD_MESSAGE', message: expect.stringMatching(/is it a chunky master/)})
    await expect(masterApi(master.url, 'right').files()).rejects.toMatchObject({code: 'BAD_MESSAGE', message: expect.stringMatching(/unexpected answer/)})
  })
})
