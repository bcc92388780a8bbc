import {type Hook, toConfiguredId} from '@oclif/core'
import {invokedAs} from './bin-name.js'

// `chunky uplaod`: on a terminal, @oclif/plugin-not-found asks "Did you mean upload?" and runs it;
// elsewhere (scripts, CI, a pipe) there is nobody to ask, so one line names the closest command and
// the run exits 2 (bad usage, SPEC.md) instead of oclif's bare "command uplaod not found".

const hook: Hook<'command_not_found'> = async function (opts) {
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const plugin = (await import('@oclif/plugin-not-found')) as {default: Hook<'command_not_found'>}
    return plugin.default.call(this, opts)
  }
  const ids = opts.config.commands.filter((c) => !c.hidden).flatMap((c) => [c.id, ...c.aliases])
  // oclif joins every word it could not match into the id (`uplaod x` is "uplaod:x"): keep the command's words
  const words = opts.id.split(':')
  const id = opts.config.findTopic(words[0]!) ? words.slice(0, 2).join(':') : words[0]!
  const typed = toConfiguredId(id, opts.config)
  const bin = invokedAs(opts.config.bin)
  const suggestion = closestCommand(id, ids)
  const hint = suggestion ? `: did you mean \`${bin} ${toConfiguredId(suggestion, opts.config)}\`?` : ''
  process.stderr.write(`chunky: "${typed}" is not a ${opts.config.bin} command${hint} (\`${bin} help\` lists them)\n`)
  return this.exit(2)
}

export default hook

/** The id nearest to `typed` by edit distance, when it is near enough to be a typo (at most a third of it). */
export function closestCommand(typed: string, ids: string[]): string | undefined {
  let best: {id: string; distance: number} | undefined
  for (const id of ids) {
    const distance = editDistance(typed, id)
    if (!best || distance < best.distance) best = {id, distance}
  }
  if (!best || best.distance > Math.max(2, Math.ceil(typed.length / 3))) return undefined
  return best.id
}

/** Levenshtein distance with adjacent transpositions counted as one edit (`uplaod` → `upload` is 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}
