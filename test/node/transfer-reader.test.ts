import {createHash, randomBytes} from 'node:crypto'
import {createServer, type Server, type Socket} from 'node:net'
import {afterEach, expect, it} from 'vitest'
import {pullTransfer, type ReplicaBody} from '../../src/node/transfer-reader.js'
import {encodeTransferFrame, TRANSFER_CONTENT_TYPE, type TransferFrame} from '../../src/protocol/index.js'

// The pulling end of a transfer against a hand-made source, so that the bytes arrive split in ways a
// real source rarely produces: the response head and the first frames in one piece, empty and tiny
// replicas, a replica far larger than the read buffers, a consumer slower than the socket.

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const frameOf = (chunkId: string, bytes: Buffer): TransferFrame => ({chunkId, version: 1, size: bytes.length, sha256: sha256(bytes)})
const OK_HEAD = `HTTP/1.1 200 OK\r\ncontent-type: ${TRANSFER_CONTENT_TYPE}\r\nconnection: close\r\n\r\n`

let server: Server | undefined
afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
  server = undefined
})

/** A source that reads one request, checks it, then lets `answer` write to the socket. */
async function source(answer: (socket: Socket) => void): Promise<URL> {
  server = createServer((socket) => {
    let seen = ''
    socket.on('data', (part: Buffer) => {
      seen += part.toString('latin1')
      const end = seen.indexOf('\r\n\r\n')
      const length = Number(/content-length: (\d+)/i.exec(seen)?.[1] ?? -1)
      if (end < 0 || seen.length < end + 4 + length) return
      socket.removeAllListeners('data')
      expect(seen).toMatch(/^POST \/transfer HTTP\/1\.1\r\n/)
      expect(seen).toContain('authorization: Bearer t0ken\r\n')
      answer(socket)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  const address = server.address() as {port: number}
  return new URL(`http://127.0.0.1:${address.port}/transfer`)
}

const request = {replicas: [{chunkId: 'a'.repeat(24), version: 1}]}

/** Reads a body to its end the way a store does: each piece copied before the next is asked for, now and then after a pause. */
async function collect(body: ReplicaBody, slow: boolean): Promise<Buffer> {
  const parts: Buffer[] = []
  let n = 0
  for await (const piece of body) {
    parts.push(Buffer.from(piece))
    if (slow && n++ % 3 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  return Buffer.concat(parts)
}

it('hands over every replica whole, however the bytes are split, and resolves at the end frame', async () => {
  const replicas = [Buffer.alloc(0), randomBytes(5), randomBytes(3 * 1024 * 1024 + 7), randomBytes(100), randomBytes(2 * 1024 * 1024)]
  const frames = replicas.map((bytes, i) => Buffer.concat([encodeTransferFrame(frameOf(String(i).repeat(24), bytes)), bytes]))
  const url = await source((socket) => {
    // the head, the first three frames and part of the fourth in one write; the rest in small pieces
    const all = Buffer.concat([Buffer.from(OK_HEAD), ...frames, encodeTransferFrame()])
    const cut = OK_HEAD.length + frames[0]!.length + frames[1]!.length + 1000
    socket.write(all.subarray(0, cut))
    for (let at = cut; at < all.length; at += 50_000) socket.write(all.subarray(at, at + 50_000))
    socket.end()
  })
  const received: Promise<{frame: TransferFrame; bytes: Buffer}>[] = []
  await pullTransfer(url, {token: 't0ken'}, request, new AbortController().signal, (frame, body) => {
    received.push(collect(body, received.length % 2 === 0).then((bytes) => ({frame, bytes})))
  })
  const got = await Promise.all(received)
  expect(got.map((r) => r.frame.chunkId)).toEqual(replicas.map((_, i) => String(i).repeat(24)))
  for (const [i, r] of got.entries()) {
    expect(r.bytes.length).toBe(replicas[i]!.length)
    expect(sha256(r.bytes)).toBe(r.frame.sha256)
  }
})

it('fails the transfer and the replica being received when the source goes away before the end frame', async () => {
  const bytes = randomBytes(4 * 1024 * 1024)
  const url = await source((socket) => {
    socket.write(Buffer.concat([Buffer.from(OK_HEAD), encodeTransferFrame(frameOf('b'.repeat(24), bytes)), bytes.subarray(0, 1024 * 1024)]))
    setImmediate(() => socket.destroy())
  })
  let reading: Promise<Buffer> | undefined
  const pulled = pullTransfer(url, {token: 't0ken'}, request, new AbortController().signal, (_frame, body) => {
    reading = collect(body, false)
  })
  await expect(pulled).rejects.toMatchObject({code: 'NODE_UNREACHABLE'})
  await expect(reading).rejects.toThrow(/closed/)
})

it('a source that ends at a frame boundary without the end frame is a broken transfer, not a short one', async () => {
  const bytes = randomBytes(1000)
  const url = await source((socket) => socket.end(Buffer.concat([Buffer.from(OK_HEAD), encodeTransferFrame(frameOf('c'.repeat(24), bytes)), bytes])))
  const pulled = pullTransfer(url, {token: 't0ken'}, request, new AbortController().signal, (_frame, body) => void collect(body, false))
  await expect(pulled).rejects.toThrow('the source closed the transfer before its end')
})

it('says why a source refused', async () => {
  const url = await source((socket) => {
    const body = JSON.stringify({error: {code: 'FORBIDDEN', message: 'the transfer grant is for source n9, not this node (n1)'}})
    socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
  })
  const pulled = pullTransfer(url, {token: 't0ken'}, request, new AbortController().signal, () => {
    throw new Error('no replica expected')
  })
  await expect(pulled).rejects.toThrow('source refused the transfer: FORBIDDEN: the transfer grant is for source n9, not this node (n1)')
})

it('stops at once when aborted', async () => {
  const url = await source((socket) => socket.write(OK_HEAD)) // and then nothing
  const abort = new AbortController()
  const pulled = pullTransfer(url, {token: 't0ken'}, request, abort.signal, () => {})
  setImmediate(() => abort.abort(new Error('the link to the target closed')))
  await expect(pulled).rejects.toThrow('the link to the target closed')
})
