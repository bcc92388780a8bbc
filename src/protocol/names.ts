import {z} from 'zod'

/**
 * A file name (SPEC.md "Words"): a UTF-8 path of 1 to 1024 bytes, `/`-separated segments, none empty,
 * `.` or `..`, no control characters. Returns the reason it is refused, or undefined when it is fine.
 */
export function fileNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes < 1) return 'a file name must not be empty'
  if (bytes > 1024) return `a file name is at most 1024 bytes (this one is ${bytes})`
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) return 'a file name must be valid UTF-8'
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'a file name must not contain control characters'
  for (const segment of name.split('/')) {
    if (segment === '') return 'a file name must not start or end with "/" or contain "//"'
    if (segment === '.' || segment === '..') return 'a file name must not contain "." or ".." segments'
  }
  return undefined
}

export const FileName = z.string().superRefine((name, ctx) => {
  const problem = fileNameProblem(name)
  if (problem) ctx.addIssue({code: 'custom', message: problem})
})

/** Chunk ids are made by the master: lowercase hex, so they are always safe as file names. */
export const ChunkId = z.string().regex(/^[0-9a-f]{24}$/, 'a chunk id is 24 lowercase hex characters')
export type ChunkId = z.infer<typeof ChunkId>

export const NodeId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a node id is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit')
export type NodeId = z.infer<typeof NodeId>

export const Zone = z.string().regex(/^[A-Za-z0-9._-]{0,64}$/, 'a zone is up to 64 letters, digits, ".", "_" or "-"')

export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 is 64 lowercase hex characters')
export const Version = z.number().int().positive().max(Number.MAX_SAFE_INTEGER)
export const ByteCount = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
