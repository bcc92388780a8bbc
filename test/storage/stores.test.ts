import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll} from 'vitest'
import {FileChunkStore, MemoryChunkStore, prefixDir, replicaFileName} from '../../src/storage/index.js'
import {flipByte} from '../chaos/flip-byte.js'
import {describeChunkStore} from './chunk-store.contract.js'

const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, {recursive: true, force: true})
})

describeChunkStore('FileChunkStore', {
  async create() {
    const dir = await mkdtemp(join(tmpdir(), 'chunky-store-'))
    dirs.push(dir)
    return FileChunkStore.open(dir)
  },
  async flipByte(store, chunkId, version) {
    await flipByte(join(store.dir, prefixDir(chunkId), replicaFileName(store.get(chunkId, version)!)), 100)
  },
})

describeChunkStore('MemoryChunkStore', {
  create: async () => new MemoryChunkStore(),
  flipByte: async (store, chunkId, version) => store.flipByte(chunkId, version, 100),
})
