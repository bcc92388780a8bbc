import {Command, Errors, type Interfaces} from '@oclif/core'
import {DEFAULT_MASTER_URL} from '../protocol/index.js'
import {invokedAs, withInvokedBin} from './bin-name.js'
import {readConfig} from './config-file.js'
import {describeFailure, UsageError, usageMessage} from './failure.js'
import {readCa, trustCa} from './tls-files.js'

/**
 * A terminal that can draw spinners and bars. A pseudo-terminal with no size (columns 0, as under
 * `script` without a window) makes ora loop forever, and TERM=dumb cannot move the cursor.
 */
export function isProgressTerminal(stream: NodeJS.WriteStream): boolean {
  return Boolean(stream.isTTY) && (stream.columns ?? 0) > 0 && process.env.TERM !== 'dumb'
}

// oclif's FlagOutput/ArgOutput, which its package does not export.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ParsedValues = {[name: string]: any}

/**
 * Every chunky command extends this. It turns oclif's parse errors into exit 2, every other failure
 * into one `chunky: …` line on standard error and exit 1 (with --json, also one error document on
 * standard output), and gives run() an AbortSignal that fires on Ctrl-C.
 */
export abstract class ChunkyCommand extends Command {
  /** Aborted on SIGINT/SIGTERM: work in flight stops and removes what it half wrote. */
  protected readonly interrupt = new AbortController()
  private readonly onSignal = () => {
    if (this.interrupt.signal.aborted) process.exit(130) // a second Ctrl-C: stop now
    this.interrupt.abort()
  }

  public override async init(): Promise<void> {
    await super.init()
    process.on('SIGINT', this.onSignal)
    process.on('SIGTERM', this.onSignal)
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    process.off('SIGINT', this.onSignal)
    process.off('SIGTERM', this.onSignal)
    await super.finally(err)
  }

  protected override async parse<F extends ParsedValues, B extends ParsedValues, A extends ParsedValues>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    let parsed: Interfaces.ParserOutput<F, B, A>
    try {
      parsed = await super.parse(options, argv)
    } catch (err) {
      // the space form (`config set`), as users type it, never oclif's internal id (`config:set`)
      throw new UsageError(usageMessage(err, this.id?.replaceAll(':', ' '), invokedAs(this.config.bin)))
    }
    // --ca / CHUNKY_CA: every HTTPS request of this command trusts that CA too (certificates are always verified).
    const ca = (parsed.flags as {ca?: unknown}).ca
    if (typeof ca === 'string' && ca !== '') trustCa(await readCa(ca))
    return parsed
  }

  public override async catch(err: Interfaces.CommandError): Promise<never> {
    if (err instanceof Errors.ExitError) throw err // this.exit(): not a failure to report
    const described = describeFailure(err)
    // Hints name the binary as the user ran it (`./bin/run.js …` from a checkout), so they work when copied.
    const failure = {...described, message: withInvokedBin(described.message, this.config.bin)}
    if (failure.code === 'ERROR' && process.env.DEBUG) process.stderr.write(`${err.stack}\n`)
    process.stderr.write(`chunky: ${failure.message}\n`)
    if (this.jsonEnabled()) {
      process.stdout.write(`${JSON.stringify({error: {code: failure.code, message: failure.message}}, null, 2)}\n`)
    }
    return this.exit(failure.exitCode)
  }

  // Hints in ordinary output name the binary as the user ran it too (`./bin/run.js upload FILE`).
  public override log(message = '', ...args: unknown[]): void {
    super.log(withInvokedBin(message, this.config.bin), ...args)
  }

  public override logToStderr(message = '', ...args: unknown[]): void {
    super.logToStderr(withInvokedBin(message, this.config.bin), ...args)
  }

  /**
   * Where the master is and how to talk to it: each setting from its flag, else its environment
   * variable (oclif reads those into the flag), else the config file, else the default.
   */
  protected async clientSettings(flags: {master?: string; token?: string; zone?: string}): Promise<{master: string; token?: string; zone?: string}> {
    const needsFile = flags.master === undefined || flags.token === undefined || flags.zone === undefined
    const file = needsFile ? await readConfig(this.config.configDir) : {}
    return {
      master: flags.master ?? file.master ?? DEFAULT_MASTER_URL,
      token: flags.token ?? file.token,
      zone: flags.zone ?? file.zone,
    }
  }

  /** Progress goes to a terminal only: never with --json, never into a pipe or a file. */
  protected showProgress(): boolean {
    return !this.jsonEnabled() && isProgressTerminal(process.stderr)
  }
}
