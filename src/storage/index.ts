export * from './chunk-store.js'
export {FileChunkStore, type FileChunkStoreOptions} from './file-chunk-store.js'
export {MemoryChunkStore} from './memory-chunk-store.js'
export {parseReplicaFileName, replicaFileName, prefixDir} from './replica-names.js'
