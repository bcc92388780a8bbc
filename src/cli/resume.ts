// What an interrupted upload tells the user: the exact command that resumes it.

/** An argument as a POSIX shell would need it written. */
export function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg
  return `'${arg.replaceAll("'", `'\\''`)}'`
}

export function resumeHint(bin: string, argv: string[]): string {
  const command = [bin, ...argv].map(shellQuote).join(' ')
  return `interrupted: chunks already stored stay stored and nothing half-written is visible; to resume, run the same command again: ${command}`
}
