export interface PostgresServer {
  url: string
  port: number
  dir: string
  dataDir: string
  pid: number
  stderr(): string
  stop(): Promise<void>
  destroy(): Promise<void>
}
export function postgresBin(name: string): string
export function runPostgresTool(name: string, args: string[]): string
export function freePort(): Promise<number>
export function startPostgres(opts?: {dir?: string; dataDir?: string; port?: number; settings?: string[]}): Promise<PostgresServer>
