import {afterAll, beforeAll, expect, it} from 'vitest'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {type Db, openDatabase} from '../../src/master/db.js'
import {replicaState, type ReplicaState} from '../../src/master/replica-state.js'
import {judgeReplica} from '../../src/master/report.js'

// The one rule of what makes a replica fresh, stale, corrupt, pending or unreferenced lives twice: as
// a TypeScript function (reports, `stored`) and as the SQL view every query reads. Every combination
// of the facts it depends on goes through both, and they must agree.

let dir: string
let db: Db
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-state-'))
  db = openDatabase(dir)
})
afterAll(async () => {
  db?.close()
  await rm(dir, {recursive: true, force: true})
})

const SHA = {committed: 'c'.repeat(64), planned: 'p'.repeat(64), other: 'o'.repeat(64)}

it('the TypeScript rule and the SQL view agree on every combination', () => {
  const chunkCases = [
    {label: 'no chunk row', chunk: undefined},
    {label: 'never committed (or retired)', chunk: {committedVersion: 0, sha256: ''}},
    {label: 'committed at v2', chunk: {committedVersion: 2, sha256: SHA.committed}},
  ] as const
  const plannedCases = [undefined, SHA.planned, SHA.committed] as const
  const versions = [1, 2, 3]
  const shas = [SHA.committed, SHA.planned, SHA.other]
  const insertChunk = db.prepare('INSERT INTO chunks (chunk_id, committed_version, max_version, size, sha256) VALUES (?, ?, 5, 10, ?)')
  const insertPlanned = db.prepare("INSERT INTO planned (chunk_id, version, size, sha256, upload_id) VALUES (?, ?, 10, ?, 'u')")
  const insertReplica = db.prepare("INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen) VALUES (?, 'n1', ?, ?, ?, 'test')")
  const stateOf = db.prepare("SELECT state FROM replica_states WHERE chunk_id = ? AND node_id = 'n1' AND version = ?").pluck()

  const seen = new Set<ReplicaState>()
  let n = 0
  for (const {chunk} of chunkCases) {
    for (const planned of plannedCases) {
      for (const version of versions) {
        for (const sha256 of shas) {
          for (const corrupt of [false, true]) {
            const chunkId = (n++).toString(16).padStart(24, '0')
            if (chunk) insertChunk.run(chunkId, chunk.committedVersion, chunk.sha256)
            if (planned) insertPlanned.run(chunkId, version, planned)
            insertReplica.run(chunkId, version, sha256, corrupt ? 1 : 0)
            const expected = replicaState({version, sha256, corrupt}, chunk, planned ? {sha256: planned} : undefined)
            const fromSql = stateOf.get(chunkId, version)
            expect(fromSql, JSON.stringify({chunk, planned, version, sha256: sha256.slice(0, 1), corrupt})).toBe(expected)
            seen.add(expected)
          }
        }
      }
    }
  }
  expect([...seen].sort()).toEqual(['corrupt', 'fresh', 'pending', 'stale', 'unreferenced'])
})

it('a copy known to be corrupt counts as corrupt whatever its version (reports and status agree)', () => {
  const chunk = {committedVersion: 3, maxVersion: 3, size: 10, sha256: SHA.committed}
  expect(replicaState({version: 2, sha256: SHA.other, corrupt: true}, chunk, undefined)).toBe('corrupt')
  expect(judgeReplica({chunkId: 'a'.repeat(24), version: 2, size: 10, sha256: SHA.other}, {chunk, planned: undefined, knownCorrupt: true})).toBe('corrupt')
  expect(judgeReplica({chunkId: 'a'.repeat(24), version: 2, size: 10, sha256: SHA.other}, {chunk, planned: undefined, knownCorrupt: false})).toBe('stale')
})
