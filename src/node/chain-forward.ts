import {request, type ClientRequest, type IncomingMessage} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {ErrorBody, HEADER_CHAIN, HEADER_GRANT, type Target, WriteResult} from '../protocol/index.js'

export interface ChainForwardOptions {
  /** The nodes after this one; chain[0] receives from us and forwards to the rest. */
  chain: Target[]
  /** `/chunks/<id>/<version>` */
  path: string
  grant: string
  size: number
  token: string
  /** CA certificates to trust for an https:// next node (undefined: the system's). */
  ca?: string[]
  /** Silence on the downstream socket longer than this fails it (it was killed, or hangs). */
  idleTimeoutMs?: number
}

const MAX_RESULT_BYTES = 64 * 1024

/**
 * The GFS chain push: the bytes this node receives go on to the next node as they arrive. `write`
 * hands back a promise only when the downstream wants us to wait (backpressure); a downstream that
 * dies is dropped and written off: `result` then lists every chain node as failed, and never rejects.
 */
export class ChainForwarder {
  readonly result: Promise<WriteResult>
  private readonly req: ClientRequest
  private stopped = false
  private drainWaiters: Array<() => void> = []
  private settleResult!: (result: WriteResult) => void
  private settled = false

  constructor(private readonly opts: ChainForwardOptions) {
    this.result = new Promise((resolve) => (this.settleResult = resolve))
    const next = opts.chain[0]!
    const url = new URL(opts.path, next.url)
    const send = url.protocol === 'https:' ? httpsRequest : request
    this.req = send(url, {
      method: 'PUT',
      ...(opts.ca ? {ca: opts.ca} : {}),
      headers: {
        authorization: `Bearer ${opts.token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(opts.size),
        [HEADER_GRANT]: opts.grant,
        [HEADER_CHAIN]: JSON.stringify(opts.chain.slice(1)),
      },
    })
    this.req.setTimeout(opts.idleTimeoutMs ?? 60_000, () => this.req.destroy(new Error('downstream node timed out')))
    this.req.on('error', (err: NodeJS.ErrnoException) => this.fail(`${next.id} failed: ${err.code ?? err.message}`))
    this.req.on('drain', () => this.wake())
    this.req.on('response', (res) => this.onResponse(res))
  }

  /** Passes one buffer on; a promise means "wait for it before sending more". */
  write(buf: Buffer): Promise<void> | undefined {
    if (this.stopped) return undefined
    if (this.req.write(buf)) return undefined
    return new Promise((resolve) => this.drainWaiters.push(resolve))
  }

  end(): void {
    if (!this.stopped) this.req.end()
  }

  /** Cuts the downstream off (our client went away): it removes its temp file and answers nobody. */
  abort(reason = 'the upstream write was aborted'): void {
    this.fail(reason)
  }

  private onResponse(res: IncomingMessage): void {
    const parts: Buffer[] = []
    let seen = 0
    res.on('data', (part: Buffer) => {
      seen += part.length
      if (seen > MAX_RESULT_BYTES) res.destroy(new Error('downstream answer too large'))
      else parts.push(part)
    })
    res.on('error', (err) => this.fail(`${this.opts.chain[0]!.id} failed: ${err.message}`))
    res.on('close', () => this.fail(`${this.opts.chain[0]!.id} closed the connection before answering`)) // no-op after 'end'
    res.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8')
      const parsed = res.statusCode === 200 ? parseJson(WriteResult, text) : undefined
      if (parsed) {
        this.finish(parsed)
        return
      }
      const error = parseJson(ErrorBody, text)?.error
      this.fail(error ? `${error.code}: ${error.message}` : `HTTP ${res.statusCode} from ${this.opts.chain[0]!.id}`, error?.code)
    })
    // An early answer (an error before the body was sent) means it will not take more bytes.
    if (res.statusCode !== 200) this.stopFeeding()
  }

  /** `code`: the error code the next node answered with (the nodes after it were not reached). */
  private fail(reason: string, code?: string): void {
    if (this.settled) return // the downstream already answered: keep its socket for reuse
    this.finish({stored: [], failed: this.opts.chain.map((t, i) => ({node: t.id, error: reason, ...(i === 0 && code ? {code} : {})}))})
    this.stopFeeding()
    this.req.destroy()
  }

  private finish(result: WriteResult): void {
    if (this.settled) return
    this.settled = true
    this.settleResult(result)
  }

  private stopFeeding(): void {
    this.stopped = true
    this.wake()
  }

  private wake(): void {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const wake of waiters) wake()
  }
}

function parseJson<T>(schema: {safeParse(v: unknown): {success: true; data: T} | {success: false}}, text: string): T | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}
