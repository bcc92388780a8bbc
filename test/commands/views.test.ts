import {describe, expect, it} from 'vitest'
import {describeFailure, UsageError, usageMessage} from '../../src/cli/failure.js'
import {renderNodes} from '../../src/cli/nodes-view.js'
import {renderFiles, renderGrid, renderSummary, replicaCell} from '../../src/cli/status-view.js'
import {table} from '../../src/cli/table.js'
import {InterruptedError} from '../../src/client/index.js'
import {ChunkyError, type NodeInfo, type StatusDoc} from '../../src/protocol/index.js'

const sha = 'a'.repeat(64)
const doc: StatusDoc = {
  nodes: [
    {id: 'n1', url: 'http://127.0.0.1:1', zone: 'a', state: 'alive', lastHeartbeatMsAgo: 100, chunks: 2, bytes: 20},
    {id: 'n2', url: 'http://127.0.0.1:2', zone: 'b', state: 'alive', lastHeartbeatMsAgo: 100, chunks: 2, bytes: 20},
    {id: 'n3', url: 'http://127.0.0.1:3', zone: 'c', state: 'dead', lastHeartbeatMsAgo: 9000, chunks: 2, bytes: 20},
  ],
  files: [
    {
      name: 'talk.mp4',
      size: 20,
      chunkSize: 10,
      chunks: [
        {index: 0, id: '0'.repeat(24), version: 1, size: 10, sha256: sha, replicas: [
          {node: 'n1', version: 1, state: 'fresh'}, {node: 'n2', version: 1, state: 'corrupt'}, {node: 'n3', version: 1, state: 'fresh'}]},
        {index: 1, id: '1'.repeat(24), version: 2, size: 10, sha256: sha, replicas: [
          {node: 'n1', version: 2, state: 'fresh'}, {node: 'n2', version: 2, state: 'fresh'}, {node: 'n2', version: 1, state: 'stale'}, {node: 'n3', version: 1, state: 'stale'}]},
      ],
    },
  ],
  summary: {nodes: 3, aliveNodes: 2, files: 1, chunks: 2, underReplicated: 2, stale: 2, corrupt: 1},
  replicas: 3,
}

describe('status rendering', () => {
  it('marks each replica fresh, stale, corrupt or missing, newest first when a node holds two', () => {
    const [c0, c1] = doc.files[0]!.chunks
    expect(['n1', 'n2', 'n3', 'n4'].map((n) => replicaCell(c0!, n))).toEqual(['v1', 'v1 CORRUPT', 'v1', '-'])
    expect(['n1', 'n2', 'n3'].map((n) => replicaCell(c1!, n))).toEqual(['v2', 'v2 + v1 stale', 'v1 stale'])
  })

  it('draws a chunk-by-node grid with dead nodes marked', () => {
    const grid = renderGrid(doc, doc.files[0]!).split('\n')
    expect(grid[0]).toBe('talk.mp4: 20 B in 2 chunks of 10 B')
    expect(grid[1]).toMatch(/^CHUNK\s+VERSION\s+SIZE\s+n1\s+n2\s+n3 \(dead\)$/)
    expect(grid[3]).toMatch(/^1\s+v2\s+10 B\s+v2\s+v2 \+ v1 stale\s+v1 stale$/)
  })

  it('says "up to" the chunk size when a chunk before the last is short (a file joined from tus partial uploads)', () => {
    const file = doc.files[0]!
    const lastShort = {...file, size: 17, chunks: [file.chunks[0]!, {...file.chunks[1]!, size: 7}]}
    expect(renderGrid(doc, lastShort).split('\n')[0]).toBe('talk.mp4: 17 B in 2 chunks of 10 B')
    const joined = {...file, size: 17, chunks: [{...file.chunks[0]!, size: 7}, file.chunks[1]!]}
    expect(renderGrid(doc, joined).split('\n')[0]).toBe('talk.mp4: 17 B in 2 chunks of up to 10 B')
  })

  it('counts fresh copies on alive nodes only, against R', () => {
    expect(renderFiles(doc)).toMatch(/talk\.mp4\s+20 B\s+2\s+1\/3/) // chunk 0: n1 fresh, n2 corrupt, n3 dead
  })

  it('summarises what needs repair', () => {
    expect(renderSummary(doc)).toBe('summary: 2/3 nodes alive, 1 file, 2 chunks; 2 under-replicated, 2 stale, 1 corrupt')
  })

  it('aligns table columns', () => {
    expect(table([['a', 'bb'], ['ccc', 'd']])).toBe('a    bb\nccc  d')
  })
})

describe('failures', () => {
  it('maps errors to exit codes and one line', () => {
    expect(describeFailure(new UsageError('bad'))).toEqual({exitCode: 2, code: 'USAGE', message: 'bad'})
    expect(describeFailure(new ChunkyError('NO_NODES', 'none\nalive'))).toEqual({exitCode: 1, code: 'NO_NODES', message: 'none alive'})
    expect(describeFailure(new InterruptedError()).exitCode).toBe(130)
    const inUse = Object.assign(new Error('listen EADDRINUSE'), {code: 'EADDRINUSE', address: '127.0.0.1', port: 7400})
    expect(describeFailure(inUse).message).toBe('cannot listen on 127.0.0.1:7400: the address is in use (EADDRINUSE): stop the other process or pick another --port')
  })

  it('an unreadable file is a permission problem on that file, not a port to change', () => {
    const unreadable = Object.assign(new Error("EACCES: permission denied, open 'talk.mp4'"), {code: 'EACCES', syscall: 'open', path: 'talk.mp4'})
    expect(describeFailure(unreadable).message).toBe('permission denied: talk.mp4 (EACCES): check that you can read or write it (ls -l)')
    const lowPort = Object.assign(new Error('listen EACCES'), {code: 'EACCES', syscall: 'listen', address: '0.0.0.0', port: 80})
    expect(describeFailure(lowPort).message).toBe('permission denied to listen on 0.0.0.0:80 (EACCES): pick a port above 1023')
  })

  it("rewrites oclif's flag parse errors as one line pointing at --help", () => {
    const err = new Error('Parsing --chunk-size \n\t"x" is not a size\nSee more help with --help')
    expect(usageMessage(err, 'upload')).toBe('bad value for --chunk-size: "x" is not a size (see `chunky upload --help`)')
  })

  it('names the missing arguments once each, in capitals, with what they are', () => {
    const args = [{name: 'key', description: 'which setting', options: ['master', 'token', 'zone']}, {name: 'value', description: 'its value'}]
    const err = Object.assign(new Error('Missing 2 required args:\nkey (master|token|zone) which setting\nvalue                   its value\nSee more help with --help'), {args})
    expect(usageMessage(err, 'config set')).toBe('missing KEY: which setting, one of master, token, zone; VALUE: its value (see `chunky config set --help`)')
  })
})

describe('nodes rendering', () => {
  const node = (id: string, alive: boolean, reachable: boolean): NodeInfo => ({
    id, url: `http://127.0.0.1:740${id.slice(1)}`, zone: '', state: alive ? 'alive' : 'dead', alive,
    lastHeartbeatMsAgo: 500, chunks: 2, bytes: 2048, freeBytes: 4096, reachable,
  })

  it('says whether an alive node can be copied from, and nothing of the kind for a dead one', () => {
    const rows = renderNodes([node('n1', true, true), node('n2', true, false), node('n3', false, true)]).split('\n')
    expect(rows[0]).toBe('nodes: 3, 2 alive')
    expect(rows.slice(2).map((row) => row.split(/ +/).at(-2))).toEqual(['yes', 'NO', '-'])
  })
})
