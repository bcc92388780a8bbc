import {randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {NodeId} from '../protocol/index.js'
import {writeFileAtomic} from '../util/fs.js'

/** This node's id: the one kept in DATA_DIR/node-id, or a new `node-<6 hex>` persisted there. */
export async function loadOrCreateNodeId(dataDir: string): Promise<string> {
  const file = join(dataDir, 'node-id')
  try {
    const saved = (await readFile(file, 'utf8')).trim()
    const parsed = NodeId.safeParse(saved)
    if (parsed.success) return parsed.data
    throw new Error(`${file} holds an invalid node id: fix or delete it`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = `node-${randomBytes(3).toString('hex')}`
  await writeFileAtomic(file, `${id}\n`, 0o644)
  return id
}
