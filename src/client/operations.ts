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

export function listFiles(conn: MasterConnection): Promise<z.infer<typeof FileList>> {
  return masterApi(conn.master, conn.token, {signal: conn.signal}).files()
}

export function removeFile(conn: MasterConnection, name: string): Promise<z.infer<typeof RemoveResult>> {
  return masterApi(conn.master, conn.token, {signal: conn.signal})
    .remove(name)
    .catch((err: unknown) => {
      throw notFoundNamed(err, name)
    })
}
