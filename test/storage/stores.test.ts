import {open} from 'node:fs/promises'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll} from 'vitest'
import {FileChunkStore, MemoryChunkStore, prefixDir, replicaFileName} from '../../src/storage/index.js'
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
    const replica = store.get(chunkId, version)!
    const file = await open(join(store.dir, prefixDir(chunkId), replicaFileName(replica)), 'r+')
    try {
      const byte = Buffer.alloc(1)
      await file.read(byte, 0, 1, 100)
      byte[0] = byte[0]! ^ 0xff
      await file.write(byte, 0, 1, 100)
    } finally {
      await file.close()
    }
  },
})

describeChunkStore('MemoryChunkStore', {
  create: async () => new MemoryChunkStore(),
  flipByte: async (store, chunkId, version) => store.flipByte(chunkId, version, 100),
})
