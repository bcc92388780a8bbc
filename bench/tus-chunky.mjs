// The tus rows: the file through tus-js-client into chunky (R=1, one node), as the neighbour sends it
// to @tus/server (tusNeighbour in neighbours.mjs): 10 MiB PATCHes, or with `chunkSize` Infinity
// (tus-js-client's default) one PATCH for the whole file. Each run a new name, removed after.
import {MiB, startCluster, TOKEN} from './chunky.mjs'
import {tusUpload} from './lib.mjs'

export async function tusIntoChunky(work, file, size, runs, chunkSize = 10 * MiB) {
  const cluster = await startCluster(work, 'tus', {replicas: 1, minReplicas: 1, nodeCount: 1})
  try {
    return await tusIntoCluster(cluster, file, size, runs, chunkSize)
  } finally {
    await cluster.close()
  }
}

/** `runs` tus-js-client uploads of `file` into the cluster's node n1 (each from a process of its own); each run's seconds. */
export async function tusIntoCluster(cluster, file, size, runs, chunkSize) {
  const endpoint = `${cluster.nodes.get('n1').readyLine.split(' ').pop()}/tus/`
  const seconds = []
  for (let i = 0; i < runs; i++) {
    seconds.push(await tusUpload({endpoint, file, size, chunkSize, metadata: {name: `bench/tus-${i}.bin`}, token: TOKEN}))
    await cluster.cli(['rm', `bench/tus-${i}.bin`])
  }
  return seconds
}
