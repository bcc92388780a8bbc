import {connect, createServer, type AddressInfo, type Server, type Socket} from 'node:net'

// A TCP proxy on 127.0.0.1 that the campaign controls: it stands in front of the master (one per node,
// for the node's link, and one for clients) and in front of each node's data port (its --public-url).
//
// - `pass`: bytes go through, each held `delayMs` (latency), in order;
// - `refuse`: every open connection is reset, and so is every new one as soon as it is accepted (as
//   from a host whose process is gone). The same happens while there is no target (the server behind
//   it is down). The port stays ours throughout: closed, another process on the machine (a test running
//   beside the campaign) could take it before the proxy listens again;
// - `blackhole`: nothing moves in either direction and new connections hang unanswered, like a cable
//   pulled out; when it goes back to `pass` the held bytes flow again, as TCP would retransmit them.

export type ProxyMode = 'pass' | 'refuse' | 'blackhole'

const HIGH_WATER = 1024 * 1024

interface Piece {
  due: number
  data?: Buffer
  end?: boolean
}

class Direction {
  private queue: Piece[] = []
  private queuedBytes = 0
  private lastDue = 0
  private timer: NodeJS.Timeout | undefined
  private waitingDrain = false

  constructor(
    private readonly proxy: TcpProxy,
    private readonly from: Socket,
    private readonly to: Socket,
  ) {
    from.on('data', (data: Buffer) => {
      this.push({due: 0, data})
      if (this.queuedBytes > HIGH_WATER) from.pause()
    })
    from.on('end', () => this.push({due: 0, end: true}))
  }

  private push(piece: Piece): void {
    piece.due = Math.max(Date.now() + this.proxy.delayMs, this.lastDue)
    this.lastDue = piece.due
    this.queue.push(piece)
    this.queuedBytes += piece.data?.length ?? 0
    this.flush()
  }

  flush(): void {
    if (this.timer || this.waitingDrain) return
    while (this.queue.length > 0 && this.proxy.mode === 'pass') {
      const head = this.queue[0]!
      const wait = head.due - Date.now()
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined
          this.flush()
        }, wait)
        return
      }
      this.queue.shift()
      this.queuedBytes -= head.data?.length ?? 0
      if (this.to.destroyed) return
      if (head.end) {
        this.to.end()
        continue
      }
      if (!this.to.write(head.data!)) {
        this.waitingDrain = true
        this.to.once('drain', () => {
          this.waitingDrain = false
          this.flush()
        })
        return
      }
    }
    if (this.queuedBytes <= HIGH_WATER && this.proxy.mode === 'pass' && this.from.isPaused()) this.from.resume()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }
}

interface Link {
  client: Socket
  upstream?: Socket
  directions: Direction[]
}

export class TcpProxy {
  mode: ProxyMode = 'pass'
  delayMs = 0
  private target: number | undefined
  private readonly links = new Set<Link>()
  private server: Server | undefined
  /** Listening or closing in order, one change at a time. */
  private listening: Promise<void> = Promise.resolve()
  port = 0

  private constructor(readonly label: string) {}

  /** A proxy listening on a free port, with no target yet (refusing connections until it has one). */
  static async start(label: string): Promise<TcpProxy> {
    const proxy = new TcpProxy(label)
    const server = await proxy.listen(0)
    proxy.port = (server.address() as AddressInfo).port // kept: connections are refused one by one until a target
    return proxy
  }

  private listen(port: number): Promise<Server> {
    const server = createServer({allowHalfOpen: true, pauseOnConnect: true}, (client) => this.accept(client))
    return new Promise<Server>((done, fail) => {
      server.once('error', fail)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', fail)
        this.server = server
        done(server)
      })
    })
  }

  private async closeServer(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((done) => server.close(() => done()))
  }

  /** Listens once there is a target, and keeps the port from then on (refusing is done per connection). */
  private sync(): Promise<void> {
    this.listening = this.listening.then(async () => {
      const want = this.target !== undefined || this.server !== undefined
      if (want && !this.server) {
        for (let attempt = 1; ; attempt++) {
          try {
            await this.listen(this.port)
            return
          } catch (err) {
            if (attempt >= 50) throw new Error(`proxy ${this.label} cannot listen on ${this.port} again: ${(err as Error).message}`)
            await new Promise((done) => setTimeout(done, 100))
          }
        }
      }
      if (!want && this.server) await this.closeServer()
    })
    return this.listening
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** Where connections go; undefined while the server behind is down (open connections are reset). */
  async setTarget(port: number | undefined): Promise<void> {
    this.target = port
    if (port === undefined) for (const link of [...this.links]) this.drop(link)
    await this.sync()
  }

  async setMode(mode: ProxyMode): Promise<void> {
    if (mode === this.mode) return
    this.mode = mode
    if (mode === 'refuse') {
      for (const link of [...this.links]) this.drop(link)
    } else if (mode === 'blackhole') {
      for (const link of this.links) {
        link.client.pause()
        link.upstream?.pause()
      }
    } else {
      for (const link of [...this.links]) {
        if (!link.upstream) this.connectUpstream(link)
        else {
          link.client.resume()
          link.upstream.resume()
          for (const d of link.directions) d.flush()
        }
      }
    }
    await this.sync()
  }

  private accept(client: Socket): void {
    client.on('error', () => {})
    if (this.mode === 'refuse' || this.target === undefined) return void client.resetAndDestroy()
    const link: Link = {client, directions: []}
    this.links.add(link)
    client.on('close', () => this.drop(link))
    if (this.mode === 'pass') this.connectUpstream(link)
    // blackhole: the connection stays accepted and paused, as if the SYN-ACK were on its way
  }

  private connectUpstream(link: Link): void {
    if (this.target === undefined || link.client.destroyed) return this.drop(link)
    const upstream = connect({port: this.target, host: '127.0.0.1', allowHalfOpen: true})
    link.upstream = upstream
    upstream.on('error', () => this.drop(link))
    upstream.on('close', () => this.drop(link))
    link.directions = [new Direction(this, link.client, upstream), new Direction(this, upstream, link.client)]
    link.client.resume()
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return
    for (const d of link.directions) d.stop()
    if (!link.client.destroyed) link.client.resetAndDestroy()
    if (link.upstream && !link.upstream.destroyed) link.upstream.resetAndDestroy()
  }

  async close(): Promise<void> {
    this.target = undefined
    for (const link of [...this.links]) this.drop(link)
    this.listening = this.listening.catch(() => {}).then(() => this.closeServer())
    await this.listening
  }
}
