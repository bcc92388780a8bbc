import {randomBytes} from 'node:crypto'

// What the fuzzer throws: a seeded generator (a failure can be replayed with its seed), hostile
// names, and mutations of valid messages. Every hostile name carries MARKER, so a file created from
// one anywhere is easy to find.

export const MARKER = 'fuzzmark'

/** mulberry32: small, fast, seeded. */
export function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!
  const chance = (p: number) => next() < p
  return {next, int, pick, chance}
}
export type Rng = ReturnType<typeof rng>

export const HOSTILE_NAMES = [
  `../../${MARKER}-escape`,
  `..%2F..%2F${MARKER}`,
  `/etc/${MARKER}`,
  `a/./${MARKER}`,
  `${MARKER}\u0000.mp4`,
  `${MARKER}\n.mp4`,
  `${'a'.repeat(1100)}${MARKER}`,
  `${MARKER}/`,
  `//${MARKER}`,
  `C:\\${MARKER}\\..\\..\\x`,
  `${MARKER}\u202e4pm.exe`,
  `${MARKER}/${'../'.repeat(40)}tmp/x`,
  `${MARKER}\ud800`,
  `%00${MARKER}`,
  `${MARKER}?name=../../x`,
  `${MARKER}#frag`,
  `~/${MARKER}`,
  `${MARKER}/\u0085/x`,
]

export const TOKENS_LABELS = ['none', 'wrong', 'ro', 'rw', 'node', 'admin', 'empty', 'long'] as const

/** A valid JSON value mutated: fields dropped, retyped, huge, negative, nested, strings with hostile names. */
export function mutateJson(r: Rng, value: unknown, depth = 0): unknown {
  if (depth > 6) return value
  const roll = r.int(12)
  if (roll === 0) return null
  if (roll === 1) return r.pick([-1, 0, 1.5, 2 ** 53 + 2, 1e308, -1e308, Number.MAX_SAFE_INTEGER, '1', true, [], {}])
  if (roll === 2) return r.pick(HOSTILE_NAMES)
  if (roll === 3) return 'z'.repeat(r.int(5000))
  if (Array.isArray(value)) {
    const copy = value.map((v) => (r.chance(0.3) ? mutateJson(r, v, depth + 1) : v))
    if (r.chance(0.2)) copy.push(...Array.from({length: r.int(50)}, () => copy[0] ?? null))
    if (r.chance(0.2)) copy.length = r.int(copy.length + 1)
    return copy
  }
  if (value && typeof value === 'object') {
    const copy: Record<string, unknown> = {...(value as Record<string, unknown>)}
    for (const key of Object.keys(copy)) {
      if (r.chance(0.15)) delete copy[key]
      else if (r.chance(0.3)) copy[key] = mutateJson(r, copy[key], depth + 1)
    }
    if (r.chance(0.1)) Object.defineProperty(copy, '__proto__', {value: {polluted: true}, enumerable: true}) // an own "__proto__" key
    if (r.chance(0.1)) copy[`extra${r.int(9)}`] = 'x'
    return copy
  }
  return value
}

/** Bytes of a JSON text mutated at the byte level: flips, cuts, insertions, garbage. */
export function mutateBytes(r: Rng, text: string): Buffer {
  const bytes = Buffer.from(text)
  switch (r.int(6)) {
    case 0:
      return bytes.subarray(0, r.int(bytes.length + 1)) // truncated
    case 1: {
      const copy = Buffer.from(bytes)
      for (let i = 0; i < 1 + r.int(4); i++) if (copy.length) copy[r.int(copy.length)]! ^= 1 << r.int(8)
      return copy
    }
    case 2:
      return randomBytes(r.int(2000))
    case 3:
      return Buffer.from('['.repeat(5000 + r.int(5000))) // deep nesting
    case 4:
      return Buffer.concat([bytes, Buffer.from('\u0000garbage')])
    default:
      return Buffer.from(JSON.stringify(mutateJson(r, JSON.parse(text))) ?? 'null')
  }
}

/** A valid-looking base64url grant with a few characters changed (or cut, or doubled). */
export function mutateGrant(r: Rng, grant: string): string {
  switch (r.int(5)) {
    case 0:
      return grant.slice(0, r.int(grant.length))
    case 1: {
      const i = r.int(grant.length)
      return grant.slice(0, i) + r.pick(['A', '_', '-', '.', '=']) + grant.slice(i + 1)
    }
    case 2:
      return `${grant}.${grant}`
    case 3:
      return grant.split('.').reverse().join('.')
    default:
      return `${Buffer.from(JSON.stringify(mutateJson(r, JSON.parse(Buffer.from(grant.split('.')[0]!, 'base64url').toString())))).toString('base64url')}.${grant.split('.')[1]}`
  }
}

export const hex = (r: Rng, n: number) => Array.from({length: n}, () => '0123456789abcdef'[r.int(16)]).join('')
