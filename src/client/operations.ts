import type {z} from 'zod'
import type {FileList, RemoveResult, StatusDoc} from '../protocol/index.js'
import {notFoundNamed} from './download.js'
import {masterApi} from './master-api.js'

// The small read/remove calls behind `status`, `ls` and `rm`.

export interface MasterConnection {
  master: string
  token?: string
  signal?: AbortSignal
}

export function getStatus(conn: MasterConnection, name?: string): Promise<StatusDoc> {
  return masterApi(conn.master, conn.token, {signal: conn.signal})
    .status(name)
    .catch((err: unknown) => {
      throw name === undefined ? err : notFoundNamed(err, name)
    })
}

/**
 * `chunky ls --json`. `lowestFreshReplicas` is the lowest count of fresh copies on alive nodes over the
 * file's chunks (the master's list calls it minReplicas, a name `status --json` uses for W); `replicas`
 * is R, so "2/3" can be shown.
 */
export interface FileListing {
  files: Array<{name: string; size: number; chunks: number; committedAt: string; lowestFreshReplicas: number}>
  replicas?: number
}

export async function listFiles(conn: MasterConnection): Promise<FileListing> {
  const list: z.infer<typeof FileList> = await masterApi(conn.master, conn.token, {signal: conn.signal}).files()
  return {
    files: list.files.map((f) => ({name: f.name, size: f.size, chunks: f.chunks, committedAt: f.committedAt, lowestFreshReplicas: f.minReplicas})),
    ...(list.replicas === undefined ? {} : {replicas: list.replicas}),
  }
}

export function removeFile(conn: MasterConnection, name: string): Promise<z.infer<typeof RemoveResult>> {
  return masterApi(conn.master, conn.token, {signal: conn.signal})
    .remove(name)
    .catch((err: unknown) => {
      throw notFoundNamed(err, name)
    })
}
