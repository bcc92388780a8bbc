// Daemons log one line per event that matters, to standard output, after the `listening on` line.
export type Logger = (message: string) => void

export const stdoutLogger: Logger = (message) => {
  process.stdout.write(`${new Date().toISOString()} ${message}\n`)
}

export const silentLogger: Logger = () => {}
