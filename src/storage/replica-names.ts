import {ChunkId, Sha256Hex, Version} from '../protocol/index.js'

// On disk a replica is `<first 2 hex of id>/<chunkId>.<version>.<sha256>`: the version and checksum
// live in the name, so one rename makes bytes and metadata visible together.

export interface ReplicaName {
  chunkId: string
  version: number
  sha256: string
}

export function replicaFileName(r: ReplicaName): string {
  return `${r.chunkId}.${r.version}.${r.sha256}`
}

export function prefixDir(chunkId: string): string {
  return chunkId.slice(0, 2)
}

/** Undefined for anything that is not exactly a replica name (temp files, strays). */
export function parseReplicaFileName(name: string): ReplicaName | undefined {
  const match = /^([0-9a-f]{24})\.([1-9][0-9]{0,15})\.([0-9a-f]{64})$/.exec(name)
  if (!match) return undefined
  const chunkId = ChunkId.safeParse(match[1])
  const version = Version.safeParse(Number(match[2]))
  const sha256 = Sha256Hex.safeParse(match[3])
  if (!chunkId.success || !version.success || !sha256.success) return undefined
  return {chunkId: chunkId.data, version: version.data, sha256: sha256.data}
}
