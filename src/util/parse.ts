// Durations (`500ms`, `2s`, `10m`, `24h`) and sizes (`10MiB`, `10MB` = 10,000,000, plain bytes),
// as SPEC.md says flags take them. Errors name the flag's input and show a valid example.

const DURATION_UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

export function parseDuration(input: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(input)
  if (!match) throw new Error(`"${input}" is not a duration: use a number and a unit, like 500ms, 2s, 10m or 24h`)
  const ms = Number(match[1]) * DURATION_UNITS[match[2]!.toLowerCase()]!
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) throw new Error(`"${input}" is too long a duration`)
  return Math.round(ms)
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
}

export function parseSize(input: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input)
  const unit = match?.[2]?.toLowerCase() ?? ''
  const factor = unit === '' ? 1 : SIZE_UNITS[unit]
  if (!match || factor === undefined) {
    throw new Error(`"${input}" is not a size: use bytes or a unit, like 1048576, 10MiB or 10MB`)
  }
  const bytes = Number(match[1]) * factor
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${input}" is not a whole number of bytes`)
  return bytes
}

const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < IEC.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${IEC[unit]}`
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes}m${Math.round((ms % 60_000) / 1000)}s`
}
