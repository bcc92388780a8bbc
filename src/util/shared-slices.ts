// Pieces of one block of memory shared with the hashing thread (file-digest.ts) and aligned to the
// memory page, as O_DIRECT writes need: a writer fills a slice, writes it to its file and has it hashed
// from the same memory, and only then takes it back for the next bytes. A fixed pool bounds the memory
// and holds writers back (backpressure) while every slice is in use.

export const SLICE_BYTES = 1024 * 1024
const SLICES = 16
const WASM_PAGE = 64 * 1024

export interface SharedSlice {
  /** Where the slice starts in sharedMemory(). */
  offset: number
  bytes: Buffer
}

type SharedWasmMemory = new (descriptor: {initial: number; maximum: number; shared: true}) => {buffer: SharedArrayBuffer}

let memory: SharedArrayBuffer | undefined
const free: SharedSlice[] = []
const waiting: ((slice: SharedSlice) => void)[] = []

/**
 * The pool's memory: a shared WebAssembly memory, whose start is page-aligned (a Buffer's memory is
 * not), allocated on first use.
 */
export function sharedMemory(): SharedArrayBuffer {
  if (!memory) {
    const {Memory} = (globalThis as unknown as {WebAssembly: {Memory: SharedWasmMemory}}).WebAssembly
    const pages = (SLICES * SLICE_BYTES) / WASM_PAGE
    memory = new Memory({initial: pages, maximum: pages, shared: true}).buffer
    for (let i = 0; i < SLICES; i++) free.push({offset: i * SLICE_BYTES, bytes: Buffer.from(memory, i * SLICE_BYTES, SLICE_BYTES)})
  }
  return memory
}

/** A free slice, waiting for one while all are in use. */
export function acquireSlice(): Promise<SharedSlice> {
  sharedMemory()
  const slice = free.pop()
  if (slice) return Promise.resolve(slice)
  return new Promise((resolve) => waiting.push(resolve))
}

/** Gives a slice back; the caller must not touch its bytes any more. */
export function releaseSlice(slice: SharedSlice): void {
  const next = waiting.shift()
  if (next) next(slice)
  else free.push(slice)
}
