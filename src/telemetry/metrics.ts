import type {ServerResponse} from 'node:http'
import {collectDefaultMetrics, Counter, Gauge, Histogram, Registry} from 'prom-client'

// Prometheus metrics of one daemon, in a registry of its own (tests run a master and nodes in one
// process: never prom-client's global registry). Counters and histograms move where things happen
// (one inc/observe there); gauges are read at scrape time from the daemon's state, through the
// sources it attaches once it is built.

const SECONDS_BUCKETS_CHUNK = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const SECONDS_BUCKETS_UPLOAD = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

/** What the master's gauges read at scrape time (attached once the master is wired). */
export interface MasterGaugeSources {
  nodes(): {alive: number; dead: number}
  /** Seconds since each node's last heartbeat (null: never heard from). */
  heartbeatAges(): {nodeId: string; seconds: number | null}[]
  /** The cluster summary `chunky status` shows (views.ts caches it; recomputed only when that is cheap). */
  cluster(): {files: number; chunks: number; underReplicated: number; stale: number; corrupt: number}
  repair(): {queued: number; running: number; looking: boolean}
}

export class MasterMetrics {
  readonly registry = new Registry()
  private sources: MasterGaugeSources | undefined
  private readonly registers = [this.registry]

  readonly versionsHandedOut = new Counter({name: 'chunky_versions_handed_out_total', help: 'Chunk versions the master handed out for writes (one per changed chunk per upload plan)', registers: this.registers})
  readonly uploadsCommitted = new Counter({name: 'chunky_uploads_committed_total', help: 'Uploads committed (a new manifest became visible)', registers: this.registers})
  readonly uploadBytes = new Counter({name: 'chunky_upload_bytes_total', help: 'Bytes of new chunk versions committed by uploads (unchanged chunks that were skipped not counted)', registers: this.registers})
  readonly tusSessions = new Counter({name: 'chunky_tus_sessions_total', help: 'tus uploads by what happened to them: created, finished (committed), terminated, expired', labelNames: ['event'] as const, registers: this.registers})
  readonly uploadSeconds = new Histogram({name: 'chunky_upload_duration_seconds', help: 'Time from upload plan to commit, per committed upload', buckets: SECONDS_BUCKETS_UPLOAD, registers: this.registers})
  readonly deletesSent = new Counter({name: 'chunky_deletes_sent_total', help: 'Delete commands sent to nodes, by reason', labelNames: ['reason'] as const, registers: this.registers})
  readonly repairTransfers = new Counter({name: 'chunky_repair_transfers_total', help: 'Repair transfers (one source node to one target node, several chunks) by what happened: started, finished, timed_out', labelNames: ['event'] as const, registers: this.registers})
  readonly repairedChunks = new Counter({name: 'chunky_repaired_chunks_total', help: 'Replicas copied by repair transfers and recorded fresh', registers: this.registers})
  readonly repairedBytes = new Counter({name: 'chunky_repaired_bytes_total', help: 'Bytes copied by repair transfers and recorded fresh', registers: this.registers})
  readonly repairRoundSeconds = new Histogram({name: 'chunky_repair_round_duration_seconds', help: 'Time the event loop spent in each slice of a repair round (rounds run in slices of about 20 ms)', buckets: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5], registers: this.registers})
  readonly nodeLinks = new Counter({name: 'chunky_node_links_accepted_total', help: 'WebSocket links from nodes accepted (each connect and reconnect of a node)', registers: this.registers})
  readonly requestErrors = new Counter({name: 'chunky_request_errors_total', help: 'HTTP requests answered with an error, by status and error code', labelNames: ['status', 'code'] as const, registers: this.registers})

  constructor() {
    collectDefaultMetrics({register: this.registry})
    const metrics = this
    new Gauge({
      name: 'chunky_nodes', help: 'Nodes the master knows, by state (alive: heartbeating within --node-timeout)', labelNames: ['state'] as const, registers: this.registers,
      collect() {
        const nodes = metrics.sources?.nodes()
        if (!nodes) return
        this.set({state: 'alive'}, nodes.alive)
        this.set({state: 'dead'}, nodes.dead)
      },
    })
    new Gauge({
      name: 'chunky_node_heartbeat_age_seconds', help: 'Seconds since the last heartbeat (or any message) of each node', labelNames: ['node'] as const, registers: this.registers,
      collect() {
        const ages = metrics.sources?.heartbeatAges()
        if (!ages) return
        this.reset()
        for (const {nodeId, seconds} of ages) if (seconds !== null) this.set({node: nodeId}, seconds)
      },
    })
    // One read of the cluster summary per scrape, shared by the three gauges below.
    const cluster = oncePerScrape(() => metrics.sources?.cluster())
    new Gauge({
      name: 'chunky_files', help: 'Committed files', registers: this.registers,
      collect() {
        const summary = cluster()
        if (summary) this.set(summary.files)
      },
    })
    new Gauge({
      name: 'chunky_chunks', help: 'Committed chunks by state: fresh (R fresh replicas on alive nodes) or under_replicated (fewer)', labelNames: ['state'] as const, registers: this.registers,
      collect() {
        const summary = cluster()
        if (!summary) return
        this.set({state: 'fresh'}, summary.chunks - summary.underReplicated)
        this.set({state: 'under_replicated'}, summary.underReplicated)
      },
    })
    new Gauge({
      name: 'chunky_replicas', help: 'Replicas on record that need a repair, by state: stale (older version) or corrupt (bytes do not match)', labelNames: ['state'] as const, registers: this.registers,
      collect() {
        const summary = cluster()
        if (!summary) return
        this.set({state: 'stale'}, summary.stale)
        this.set({state: 'corrupt'}, summary.corrupt)
      },
    })
    new Gauge({
      name: 'chunky_repair_queue_chunks', help: 'Chunks below R fresh replicas at the last repair round and not yet in a transfer', registers: this.registers,
      collect() {
        const repair = metrics.sources?.repair()
        if (repair) this.set(repair.queued)
      },
    })
    new Gauge({
      name: 'chunky_repair_transfers_running', help: 'Repair transfers under way', registers: this.registers,
      collect() {
        const repair = metrics.sources?.repair()
        if (repair) this.set(repair.running)
      },
    })
    new Gauge({
      name: 'chunky_repair_looking', help: 'Whether the repair loop still has chunks to look at after a start, a death or other changes (1) or has looked at everything (0): until 0, the chunk counts are its estimate', registers: this.registers,
      collect() {
        const repair = metrics.sources?.repair()
        if (repair) this.set(repair.looking ? 1 : 0)
      },
    })
  }

  /** Where the gauges read from; set once the master is wired. */
  attach(sources: MasterGaugeSources): void {
    this.sources = sources
  }
}

/** What a node's gauges read at scrape time. */
export interface NodeGaugeSources {
  connected(): boolean
  usage(): Promise<{freeBytes: number; usedBytes: number; chunkCount: number}>
  tusMemory(): {held: number; peak: number}
}

export class NodeMetrics {
  readonly registry = new Registry()
  private sources: NodeGaugeSources | undefined
  private readonly registers = [this.registry]

  readonly chunkWriteSeconds = new Histogram({name: 'chunky_chunk_write_duration_seconds', help: 'Time to receive, check, fsync and record one chunk write (PUT), chain forwarding included', buckets: SECONDS_BUCKETS_CHUNK, registers: this.registers})
  readonly chunkReadSeconds = new Histogram({name: 'chunky_chunk_read_duration_seconds', help: 'Time to serve one chunk read (GET) to the end', buckets: SECONDS_BUCKETS_CHUNK, registers: this.registers})
  readonly tusBytes = new Counter({name: 'chunky_tus_received_bytes_total', help: 'Bytes of tus PATCH (and creation-with-upload) bodies taken in and made durable', registers: this.registers})
  readonly storedBytes = new Counter({name: 'chunky_stored_bytes_total', help: 'Bytes of chunks written durably here (uploads and repair copies)', registers: this.registers})
  readonly downloadBytes = new Counter({name: 'chunky_download_bytes_total', help: 'Bytes of chunks served to readers (GET /chunks)', registers: this.registers})
  readonly transferBytes = new Counter({name: 'chunky_transfer_bytes_served_total', help: 'Bytes of chunks served to other nodes for repairs', registers: this.registers})
  readonly deletedChunks = new Counter({name: 'chunky_chunks_deleted_total', help: 'Chunk replicas deleted on the master\'s command, by reason', labelNames: ['reason'] as const, registers: this.registers})
  readonly scrubbedBytes = new Counter({name: 'chunky_scrub_bytes_total', help: 'Bytes re-hashed by the scrubber', registers: this.registers})
  readonly scrubbedChunks = new Counter({name: 'chunky_scrub_chunks_total', help: 'Replicas re-hashed by the scrubber', registers: this.registers})
  readonly scrubCorrupt = new Counter({name: 'chunky_scrub_corrupt_total', help: 'Replicas the scrubber found corrupt', registers: this.registers})
  readonly scrubPasses = new Counter({name: 'chunky_scrub_passes_total', help: 'Scrub passes completed', registers: this.registers})
  readonly scrubLastPass = new Gauge({name: 'chunky_scrub_last_pass_timestamp_seconds', help: 'When the last scrub pass completed (Unix time; 0: none yet)', registers: this.registers})
  readonly masterReconnects = new Counter({name: 'chunky_master_reconnects_total', help: 'Times the link to the master was established again after it was lost', registers: this.registers})
  readonly requestErrors = new Counter({name: 'chunky_request_errors_total', help: 'HTTP requests answered with an error, by status and error code', labelNames: ['status', 'code'] as const, registers: this.registers})
  // Playing files straight from the node (GET/HEAD /v1/files, share links; src/node/serve-files.ts)
  readonly fileRequests = new Counter({name: 'chunky_file_requests_total', help: 'File reads (GET/HEAD /v1/files and share links) by status answered', labelNames: ['status'] as const, registers: this.registers})
  readonly fileBytesServed = new Counter({name: 'chunky_file_bytes_served_total', help: 'Bytes of files sent to readers by file reads (ranged or whole)', registers: this.registers})
  readonly fileReadsAborted = new Counter({name: 'chunky_file_reads_aborted_total', help: 'File reads the reader closed before the last byte (players seeking)', registers: this.registers})
  readonly fileDiskBytes = new Counter({name: 'chunky_file_disk_read_bytes_total', help: 'Bytes read from this node\'s disk for file reads, its own and those of other nodes it serves blocks to', registers: this.registers})
  readonly filePeerBytes = new Counter({name: 'chunky_file_peer_bytes_total', help: 'Bytes of file reads fetched from other nodes (chunks this node does not hold fresh)', registers: this.registers})
  readonly blockChecksumFailures = new Counter({name: 'chunky_block_checksum_failures_total', help: 'Blocks read for a file read that did not match their checksum (the replica is reported corrupt)', registers: this.registers})

  constructor() {
    collectDefaultMetrics({register: this.registry})
    const metrics = this
    new Gauge({
      name: 'chunky_master_connected', help: '1 while the link to the master is up (welcomed), else 0', registers: this.registers,
      collect() {
        const sources = metrics.sources
        if (sources) this.set(sources.connected() ? 1 : 0)
      },
    })
    new Gauge({
      name: 'chunky_tus_memory_bytes', help: 'Bytes of tus PATCH bodies held in memory now (chunks filling and being written)', registers: this.registers,
      collect() {
        const sources = metrics.sources
        if (sources) this.set(sources.tusMemory().held)
      },
    })
    new Gauge({
      name: 'chunky_tus_memory_peak_bytes', help: 'The most bytes of tus PATCH bodies ever held in memory at once since the node started', registers: this.registers,
      collect() {
        const sources = metrics.sources
        if (sources) this.set(sources.tusMemory().peak)
      },
    })
    // One look at the store per scrape, shared by the three gauges below.
    const usage = oncePerScrape(() => metrics.sources?.usage().catch(() => undefined))
    new Gauge({
      name: 'chunky_node_used_bytes', help: 'Bytes of chunk replicas held on this node', registers: this.registers,
      async collect() {
        const now = await usage()
        if (now) this.set(now.usedBytes)
      },
    })
    new Gauge({
      name: 'chunky_node_free_bytes', help: 'Free bytes on the disk of the data directory', registers: this.registers,
      async collect() {
        const now = await usage()
        if (now) this.set(now.freeBytes)
      },
    })
    new Gauge({
      name: 'chunky_node_chunks', help: 'Chunk replicas held on this node', registers: this.registers,
      async collect() {
        const now = await usage()
        if (now) this.set(now.chunkCount)
      },
    })
  }

  attach(sources: NodeGaugeSources): void {
    this.sources = sources
  }
}

/**
 * `read()` once per scrape: prom-client calls every collect() of a scrape in one synchronous loop, so
 * the gauges of one scrape share one reading, and the next scrape (a later event-loop turn) reads anew.
 */
function oncePerScrape<T>(read: () => T): () => T {
  let reading: {value: T} | undefined
  return () => {
    if (!reading) {
      reading = {value: read()}
      setImmediate(() => (reading = undefined))
    }
    return reading.value
  }
}

/** GET /metrics: the registry in Prometheus text format (the caller checked the credential). */
export async function sendMetrics(res: ServerResponse, registry: Registry): Promise<void> {
  const text = await registry.metrics()
  res.writeHead(200, {'content-type': registry.contentType, 'content-length': Buffer.byteLength(text)})
  res.end(text)
}
