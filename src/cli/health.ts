import type {StatusDoc} from '../protocol/index.js'

// `chunky status --check`: the cluster's health as an exit code and one line, for cron, monitors
// (Nagios-style: 0 ok, 3 not) and scripts. Unhealthy: a dead node, or any chunk under-replicated,
// stale or corrupt (SPEC.md "Operating a cluster"). A drained node that was stopped is not dead: it
// was taken out on purpose, and every chunk it held has its copies elsewhere.

export const UNHEALTHY_EXIT = 3

export interface Health {
  healthy: boolean
  /** One line: what is wrong, or what was checked. */
  line: string
}

export function checkHealth(doc: StatusDoc): Health {
  const s = doc.summary
  const dead = doc.nodes.filter((node) => node.state === 'dead' && node.drain !== 'drained').map((node) => node.id)
  const problems: string[] = []
  if (dead.length > 0) problems.push(`${dead.length} node${dead.length === 1 ? '' : 's'} dead (${dead.slice(0, 5).join(', ')}${dead.length > 5 ? ', …' : ''})`)
  if (s.underReplicated > 0) problems.push(`${s.underReplicated} chunk${s.underReplicated === 1 ? '' : 's'} under-replicated`)
  if (s.stale > 0) problems.push(`${s.stale} stale cop${s.stale === 1 ? 'y' : 'ies'}`)
  if (s.corrupt > 0) problems.push(`${s.corrupt} corrupt cop${s.corrupt === 1 ? 'y' : 'ies'}`)
  const counts = `${s.aliveNodes}/${s.nodes} nodes alive, ${s.files} file${s.files === 1 ? '' : 's'}, ${s.chunks} chunk${s.chunks === 1 ? '' : 's'}`
  if (problems.length === 0) return {healthy: true, line: `healthy: ${counts}, every chunk has its fresh copies`}
  return {healthy: false, line: `unhealthy: ${problems.join(', ')} (${counts})`}
}
