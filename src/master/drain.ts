import type {NodeState} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {GRANT_TTL_MS} from './uploads.js'

// How far the drain of a node got (`chunky nodes drain`), and a node's state from it: the one place
// that decides alive, dead, draining or drained. The repair loop does the copying (a draining node's
// copies do not count toward R: repair.ts countsTowardR); this only looks.

export interface DrainProgress {
  startedMs: number
  /** Committed chunks with a fresh copy on the node and fewer than R fresh copies that count elsewhere. */
  chunksLeft: number
  /** Copies of uploads in flight on the node (stored, not committed yet): once committed they need copies too. */
  pendingCopies: number
  /** Uploads begun before the drain, still open, whose grants may name the node (until they expire). */
  uploadsInFlight: number
  /** Why it cannot finish now, when that is known. */
  waiting?: string
}

export class Drains {
  private readonly q

  constructor(private readonly ctx: MasterContext) {
    const db = ctx.db
    this.q = {
      // By the one rule (replica_states, replica-state.ts): fresh copies on the node whose chunk has fewer
      // than R fresh copies on the nodes that count toward R.
      chunksLeft: db.prepare(`SELECT count(*) FROM replica_states x
        WHERE x.node_id = @nodeId AND x.state = 'fresh'
          AND (SELECT count(*) FROM replica_states r WHERE r.chunk_id = x.chunk_id AND r.state = 'fresh'
            AND r.node_id IN (SELECT value FROM json_each(@counting))) < @R`).pluck(),
      pendingCopies: db.prepare("SELECT count(*) FROM replica_states WHERE node_id = ? AND state = 'pending'").pluck(),
      uploadsBefore: db.prepare('SELECT count(*) FROM uploads WHERE created_ms <= ?').pluck(),
    }
  }

  /** undefined when the node is not being drained. */
  progress(nodeId: string): DrainProgress | undefined {
    const {nodes, replicas: R} = this.ctx
    const startedMs = nodes.get(nodeId)?.drainStartedMs ?? null
    if (startedMs === null) return undefined
    const counting = nodes.aliveIds().filter((id) => !nodes.isDraining(id))
    return this.ctx.db.transaction(() => {
      const chunksLeft = this.q.chunksLeft.get({nodeId, counting: JSON.stringify(counting), R}) as number
      const pendingCopies = this.q.pendingCopies.get(nodeId) as number
      // Grants naming the node were all signed before the drain (placement skips draining nodes since),
      // so none is valid GRANT_TTL_MS after it began.
      const grantsMayWrite = this.ctx.clock.now() < startedMs + GRANT_TTL_MS
      const uploadsInFlight = grantsMayWrite ? (this.q.uploadsBefore.get(startedMs) as number) : 0
      const progress: DrainProgress = {startedMs, chunksLeft, pendingCopies, uploadsInFlight}
      const takers = nodes.placeable().length
      if (chunksLeft > 0 && takers < R) {
        progress.waiting = `only ${takers} node${takers === 1 ? '' : 's'} can take copies and R is ${R}: start another node or undrain one`
      } else if (uploadsInFlight > 0 || pendingCopies > 0) {
        const until = new Date(startedMs + GRANT_TTL_MS).toISOString()
        progress.waiting = `uploads begun before the drain may still write to it: until they commit or end (their grants expire by ${until})`
      }
      return progress
    })()
  }

  isDrained(progress: DrainProgress): boolean {
    return progress.chunksLeft === 0 && progress.pendingCopies === 0 && progress.uploadsInFlight === 0
  }

  /**
   * alive or dead by liveness; a node being drained is `draining` while alive and not done, `drained`
   * once done (also after it is stopped: it was taken out on purpose), and `dead` if it died before.
   */
  state(nodeId: string, progress = this.progress(nodeId)): NodeState {
    const alive = this.ctx.nodes.isAlive(nodeId)
    if (!progress) return alive ? 'alive' : 'dead'
    if (this.isDrained(progress)) return 'drained'
    return alive ? 'draining' : 'dead'
  }
}
