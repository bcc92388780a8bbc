/**
 * Orders strings by UTF-16 code units: the same on every machine, and many times cheaper than
 * localeCompare, which matters where ids break ties in sorts that run per chunk planned.
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
