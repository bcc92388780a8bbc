// How the client reports progress. The client never touches the terminal: src/cli implements this
// with spinners and bars, tests and --json use silentView.

export interface TransferView {
  /** A short phase begins ("finding the nearest node", "committing"). */
  step(text: string): void
  /** A long phase measured in bytes begins ("hashing", "uploading", "downloading"). */
  start(label: string, totalBytes: number): void
  /** Bytes done so far in the current long phase. */
  overall(doneBytes: number): void
  /** Bytes moved so far for one chunk in flight; a retry starts again from 0. */
  chunk(index: number, doneBytes: number, totalBytes: number): void
  chunkDone(index: number): void
  /** Something the user may want to know that is not an error (a retry, a replica that failed). */
  note(message: string): void
  /** Stop every spinner and bar (idempotent). */
  stop(): void
}

export const silentView: TransferView = {
  step: () => {},
  start: () => {},
  overall: () => {},
  chunk: () => {},
  chunkDone: () => {},
  note: () => {},
  stop: () => {},
}
