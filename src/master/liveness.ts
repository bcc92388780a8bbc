import type {Clock} from '../util/clock.js'

/** Which nodes have been heard from within the timeout. Plain state over an injected clock. */
export class NodeLiveness {
  private readonly lastSeen = new Map<string, number>()

  constructor(
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {}

  /** Returns true when the node was not alive before this touch (it joined or came back). */
  touch(nodeId: string): boolean {
    const wasAlive = this.lastSeen.has(nodeId)
    this.lastSeen.set(nodeId, this.clock.now())
    return !wasAlive
  }

  /** The node said it is leaving: dead now, not after the timeout. Returns true when it was alive. */
  forget(nodeId: string): boolean {
    return this.lastSeen.delete(nodeId)
  }

  isAlive(nodeId: string): boolean {
    return this.lastSeen.has(nodeId)
  }

  alive(): string[] {
    return [...this.lastSeen.keys()]
  }

  /** Forgets and returns every node silent for longer than timeoutMs (each reported once). */
  sweep(): string[] {
    const deadline = this.clock.now() - this.timeoutMs
    const dead: string[] = []
    for (const [id, seen] of this.lastSeen) if (seen < deadline) dead.push(id)
    for (const id of dead) this.lastSeen.delete(id)
    return dead
  }
}
