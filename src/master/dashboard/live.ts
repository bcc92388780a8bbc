import type {IncomingMessage, ServerResponse} from 'node:http'
import {ChunkyError} from '../../protocol/index.js'
import type {DashboardData} from './snapshot.js'

// GET /api/live: the dashboard's push channel, a text/event-stream read with fetch() (EventSource
// cannot send the Authorization header, and a token in the URL would end up in logs and history).
// Every TICK_MS the sections are built once for all streams; each stream is sent, as one `update`
// event, only the sections that changed since it last heard, plus the server's clock. Nothing
// changed: nothing is sent, except a comment line every KEEP_ALIVE_MS so proxies and the page know
// the stream is alive.

export interface LiveOptions {
  tickMs: number
  keepAliveMs: number
  /** Streams open at once on this master; one more is refused with 503. */
  maxStreams: number
  /** A stream whose client has not read what it was sent for this long is cut. */
  stuckMs: number
}

export const DEFAULT_LIVE: LiveOptions = {tickMs: 300, keepAliveMs: 15_000, maxStreams: 32, stuckMs: 60_000}

type Section = 'cluster' | 'nodes' | 'files' | 'repairs' | 'grid'

interface Stream {
  res: ServerResponse
  /** The file whose grid this stream follows, if any. */
  file: string | undefined
  /** JSON of each section as last sent. */
  sent: Map<Section, string>
  lastWriteMs: number
  /** Set while the socket's buffer is full: nothing more is queued until it drains. */
  blockedSinceMs: number | undefined
  /** The last problem sent, until an update clears it on the page. */
  problem: string | undefined
}

export class LiveStreams {
  private readonly streams = new Set<Stream>()
  private readonly opts: LiveOptions
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly data: DashboardData,
    opts: Partial<LiveOptions> = {},
  ) {
    this.opts = {...DEFAULT_LIVE, ...opts}
  }

  get size(): number {
    return this.streams.size
  }

  /** Starts a stream on an authorized request (the caller checked the credential and the file name). */
  open(req: IncomingMessage, res: ServerResponse, file: string | undefined): void {
    if (this.closed) throw new ChunkyError('BUSY', 'the master is shutting down')
    if (this.streams.size >= this.opts.maxStreams) {
      throw new ChunkyError('BUSY', `too many live dashboards on this master (${this.opts.maxStreams}): close one and reload`)
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no', // a proxy must pass each event on at once
      connection: 'close', // the socket ends with the stream (so a shutting-down master is not kept waiting)
      'x-content-type-options': 'nosniff',
    })
    res.flushHeaders()
    req.socket.setNoDelay(true)
    const stream: Stream = {res, file, sent: new Map(), lastWriteMs: Date.now(), blockedSinceMs: undefined, problem: undefined}
    this.streams.add(stream)
    res.on('drain', () => (stream.blockedSinceMs = undefined))
    res.on('close', () => this.drop(stream))
    res.on('error', () => this.drop(stream))
    this.timer ??= setInterval(() => this.tick(), this.opts.tickMs)
    this.tick([stream]) // the first update at once, not a tick later
  }

  /** Ends every stream (the master is shutting down). */
  closeAll(): void {
    this.closed = true
    for (const stream of this.streams) stream.res.end()
    this.streams.clear()
    this.stopTimer()
  }

  private drop(stream: Stream): void {
    this.streams.delete(stream)
    if (this.streams.size === 0) this.stopTimer()
  }

  private stopTimer(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private tick(streams: Iterable<Stream> = this.streams): void {
    const now = Date.now()
    let shared: Map<Section, string> | undefined
    let failure: unknown
    const grids = new Map<string, string>()
    try {
      shared = new Map<Section, string>([
        ['cluster', JSON.stringify(this.data.cluster())],
        ['nodes', JSON.stringify(this.data.nodes())],
        ['files', JSON.stringify(this.data.files())],
        ['repairs', JSON.stringify(this.data.repairs())],
      ])
    } catch (err) {
      failure = err
    }
    for (const stream of [...streams]) {
      if (stream.res.writableEnded || stream.res.destroyed) {
        this.drop(stream)
        continue
      }
      if (stream.blockedSinceMs !== undefined) {
        if (now - stream.blockedSinceMs > this.opts.stuckMs) stream.res.destroy() // 'close' drops it
        continue
      }
      if (!shared) {
        // Tell the page rather than the log: it stays up and tries again next tick.
        this.sendProblem(stream, failure, now)
        continue
      }
      const sections = new Map(shared)
      if (stream.file !== undefined) {
        try {
          let grid = grids.get(stream.file)
          if (grid === undefined) grids.set(stream.file, (grid = JSON.stringify(this.data.grid(stream.file))))
          sections.set('grid', grid)
        } catch (err) {
          this.sendProblem(stream, err, now)
          continue
        }
      }
      const changed: string[] = []
      for (const [section, json] of sections) {
        if (stream.sent.get(section) === json) continue
        stream.sent.set(section, json)
        changed.push(`"${section}":${json}`)
      }
      if (changed.length > 0 || stream.problem !== undefined) {
        stream.problem = undefined // any update hides the problem on the page
        const data = [`"serverTime":${this.data.now()}`, ...changed].join(',')
        this.write(stream, `event: update\ndata: {${data}}\n\n`, now)
      } else if (now - stream.lastWriteMs >= this.opts.keepAliveMs) {
        this.write(stream, ': keep-alive\n\n', now)
      }
    }
  }

  /** A problem event, once per distinct message (every tick would flood the page). */
  private sendProblem(stream: Stream, err: unknown, now: number): void {
    const text = `the master could not build the dashboard's data: ${err instanceof Error ? err.message : String(err)}`
    if (stream.problem !== text) {
      stream.problem = text
      this.write(stream, `event: problem\ndata: ${JSON.stringify(text)}\n\n`, now)
    } else if (now - stream.lastWriteMs >= this.opts.keepAliveMs) {
      this.write(stream, ': keep-alive\n\n', now)
    }
  }

  private write(stream: Stream, text: string, now: number): void {
    stream.lastWriteMs = now
    if (!stream.res.write(text)) stream.blockedSinceMs = now
  }
}
