import {open, rename, rm, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'

/** fsync the data, rename it into place, fsync the directory: the name appears only with all its bytes. */
export async function commitFile(tmp: string, final: string): Promise<void> {
  const file = await open(tmp, 'r+')
  try {
    await file.sync() // the data reaches the disk before the name does
  } finally {
    await file.close()
  }
  await rename(tmp, final)
  await fsyncDir(dirname(final)) // and the rename itself survives a crash
}

export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return // directories cannot be fsynced there
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Write a small file atomically (config, ids, secrets). */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
  try {
    await writeFile(tmp, data, {mode, flag: 'wx'})
    await commitFile(tmp, path)
  } catch (err) {
    await rm(tmp, {force: true})
    throw err
  }
}
