import {open} from 'node:fs/promises'

/** Inverts one stored byte in place: rot a replica the way a bad disk would. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+')
  try {
    const one = Buffer.alloc(1)
    await handle.read(one, 0, 1, offset)
    one[0] = one[0]! ^ 0xff
    await handle.write(one, 0, 1, offset)
  } finally {
    await handle.close()
  }
}
