import type {Update} from './types.js'

// The live stream: GET api/live read with fetch(), because EventSource cannot send an Authorization
// header (and a token in the URL would land in logs and history). The body is text/event-stream:
// `update` events (JSON), `problem` events (a message to show), and keep-alive comments. When the
// stream ends or goes silent, it is opened again with a growing delay; the master sends every
// section again on a new stream, so nothing is lost.

export type LiveState = 'connecting' | 'live' | 'reconnecting'

export interface LiveHandlers {
  onUpdate(update: Update): void
  onProblem(message: string): void
  onState(state: LiveState, detail?: string): void
  /** 401/403: the credential is no longer accepted; the stream stops. */
  onRefused(message: string): void
}

/** The master sends a keep-alive comment every 15 s; silence this long means the link is gone. */
const SILENCE_MS = 35_000
const MAX_RETRY_MS = 10_000

/** Opens the stream (following `file`'s grid, if given); returns a function that closes it for good. */
export function connectLive(token: string, file: string | undefined, handlers: LiveHandlers): () => void {
  let stopped = false
  let current: AbortController | undefined
  const url = `api/live${file === undefined ? '' : `?file=${encodeURIComponent(file)}`}`

  const run = async () => {
    let retryMs = 500
    while (!stopped) {
      handlers.onState(retryMs === 500 ? 'connecting' : 'reconnecting')
      const abort = (current = new AbortController())
      let watchdog: ReturnType<typeof setTimeout> | undefined
      const stillThere = () => {
        clearTimeout(watchdog)
        watchdog = setTimeout(() => abort.abort(), SILENCE_MS)
      }
      let why = 'the stream ended'
      try {
        stillThere()
        const res = await fetch(url, {headers: {authorization: `Bearer ${token}`}, cache: 'no-store', signal: abort.signal})
        if (res.status === 401 || res.status === 403) {
          stopped = true
          handlers.onRefused(await errorMessage(res))
          return
        }
        if (!res.ok || !res.body) throw new Error(await errorMessage(res))
        for await (const event of readEvents(res.body, stillThere)) {
          retryMs = 500
          handlers.onState('live')
          if (event.type === 'update') handlers.onUpdate(JSON.parse(event.data) as Update)
          else if (event.type === 'problem') handlers.onProblem(JSON.parse(event.data) as string)
        }
      } catch (err) {
        if (stopped) return
        why = abort.signal.aborted ? 'no word from the master for a while' : err instanceof Error ? err.message : String(err)
      } finally {
        clearTimeout(watchdog)
      }
      if (stopped) return
      handlers.onState('reconnecting', `${why}; trying again in ${(retryMs / 1000).toFixed(1)}s`)
      await new Promise((resolve) => setTimeout(resolve, retryMs))
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
    }
  }
  void run()
  return () => {
    stopped = true
    current?.abort()
  }
}

interface StreamEvent {
  type: string
  data: string
}

/** Splits a text/event-stream body into events; comments only call `onBytes`. */
async function* readEvents(body: ReadableStream<Uint8Array>, onBytes: () => void): AsyncGenerator<StreamEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  try {
    for (;;) {
      const {done, value} = await reader.read()
      if (done) return
      onBytes()
      buffer += decoder.decode(value, {stream: true})
      let end: number
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let type = 'message'
        const data: string[] = []
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) type = line.slice(6).trim()
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
        }
        if (data.length > 0) yield {type, data: data.join('\n')}
      }
    }
  } finally {
    reader.releaseLock()
  }
}

/** The master's error message from a JSON error body, else the HTTP status. */
export async function errorMessage(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as {error?: {message?: string}}
    if (body.error?.message) return body.error.message
  } catch {
    // not JSON: fall through
  }
  return `the master answered ${res.status} ${res.statusText}`.trim()
}
