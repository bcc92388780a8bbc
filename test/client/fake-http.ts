import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

// A tiny real HTTP server on 127.0.0.1 port 0, for playing the master or a node in client tests.

export interface FakeServer {
  url: string
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => unknown

export async function fakeServer(handler: Handler): Promise<FakeServer> {
  const server = createServer(async (req, res) => {
    const parts: Buffer[] = []
    try {
      for await (const part of req as AsyncIterable<Buffer>) parts.push(part)
    } catch {
      return // the client gave up mid-body (as a client may): nothing to answer
    }
    try {
      await handler(req, res, Buffer.concat(parts))
    } catch (err) {
      json(res, 500, {error: {code: 'INTERNAL', message: String(err)}})
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, {'content-type': 'application/json'})
  res.end(JSON.stringify(body))
}
