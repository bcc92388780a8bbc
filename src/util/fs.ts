import {type FileHandle, open, rename, rm, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'

/** fsync the data, rename it into place, fsync the directory: the name appears only with all its bytes. */
export async function commitFile(tmp: string, final: string): Promise<void> {
  await commitFiles(dirname(final), [{tmp, final}])
}

/**
 * commitFile for several files of one directory: every file's data is fsynced at once (concurrent
 * fsyncs share the file system's journal commits, where one after the other each waits for its own),
 * then each is renamed in the order given, then the directory is fsynced once for all the names.
 * A file marked `fsync: false` is renamed without its data fsynced here: one its writer fsynced
 * already, or a cache its reader checks and can rebuild (after a crash it may be there under its
 * name, empty or torn).
 */
export async function commitFiles(dir: string, files: readonly {tmp: string; final: string; fsync?: boolean}[]): Promise<void> {
  await Promise.all(files.filter((f) => f.fsync !== false).map(({tmp}) => fsyncFile(tmp))) // the data reaches the disk before any name does
  for (const {tmp, final} of files) await rename(tmp, final)
  await fsyncDir(dir) // and the renames themselves survive a crash
}

async function fsyncFile(path: string): Promise<void> {
  const file = await open(path, 'r+')
  try {
    await file.sync()
  } finally {
    await file.close()
  }
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
export async function writeFileAtomic(path: string, data: string | Buffer | readonly Buffer[], mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
  try {
    await writeFile(tmp, data, {mode, flag: 'wx'})
    await commitFile(tmp, path)
  } catch (err) {
    await rm(tmp, {force: true})
    throw err
  }
}

/** writev until every byte is written (a short write is legal, if rare on regular files), at `position` on or at the file's position. */
export async function writeAll(handle: FileHandle, buffers: Buffer[], position?: number): Promise<void> {
  let rest = buffers
  let at = position
  while (rest.length > 0) {
    let {bytesWritten} = await handle.writev(rest, at)
    if (at !== undefined) at += bytesWritten
    while (rest.length > 0 && bytesWritten >= rest[0]!.length) {
      bytesWritten -= rest[0]!.length
      rest = rest.slice(1)
    }
    if (bytesWritten > 0) rest = [rest[0]!.subarray(bytesWritten), ...rest.slice(1)]
  }
}
