// The bare floor: a plain Node http server that takes PUT /chunks/<i> (pipeline(req, file write stream),
// fsynced, then answered) and serves GET /file (the benchmark's source file, for the curl download floor).
// Usage: node sink-server.mjs DIR SOURCE_FILE [--batch]   (--batch: write in 4 MiB pieces)
import {createReadStream, createWriteStream} from 'node:fs'
import {open, stat} from 'node:fs/promises'
import {createServer} from 'node:http'
import {pipeline} from 'node:stream/promises'
import {join} from 'node:path'

const [dir, source, mode] = process.argv.slice(2)
const BATCH = 4 * 1024 * 1024

async function receive(req, path) {
  if (mode !== '--batch') {
    // the plain floor: the stream machinery's own write path (a write per piece, queued while one is in
    // flight); `flush` fsyncs the file before the stream closes, and pipeline resolves once it has closed
    await pipeline(req, createWriteStream(path, {flush: true}))
    return
  }
  const file = await open(path, 'w')
  try {
    let pending = []
    let size = 0
    for await (const part of req) {
      pending.push(part)
      size += part.length
      if (size >= BATCH) {
        await file.write(Buffer.concat(pending, size))
        pending = []
        size = 0
      }
    }
    if (size > 0) await file.write(Buffer.concat(pending, size))
    await file.sync()
  } finally {
    await file.close()
  }
}

const server = createServer(async (req, res) => {
  try {
    const m = /^\/chunks\/(\d+)$/.exec(req.url ?? '')
    if (req.method === 'PUT' && m) {
      await receive(req, join(dir, `chunk-${m[1]}`))
      res.end('{"ok":true}')
    } else if (req.method === 'GET' && req.url === '/file') {
      const {size} = await stat(source)
      res.writeHead(200, {'content-length': size, 'content-type': 'application/octet-stream'})
      createReadStream(source, {highWaterMark: 1024 * 1024}).pipe(res)
    } else {
      res.writeHead(404).end()
    }
  } catch (err) {
    if (!res.headersSent) res.writeHead(500)
    res.end(String(err))
  }
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
