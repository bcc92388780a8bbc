import {Command, Errors, type Interfaces} from '@oclif/core'
import {describeFailure, UsageError, usageMessage} from './failure.js'

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
    try {
      return await super.parse(options, argv)
    } catch (err) {
      throw new UsageError(usageMessage(err, this.id))
    }
  }

  public override async catch(err: Interfaces.CommandError): Promise<never> {
    if (err instanceof Errors.ExitError) throw err // this.exit(): not a failure to report
    const failure = describeFailure(err)
    if (failure.code === 'ERROR' && process.env.DEBUG) process.stderr.write(`${err.stack}\n`)
    process.stderr.write(`chunky: ${failure.message}\n`)
    if (this.jsonEnabled()) {
      process.stdout.write(`${JSON.stringify({error: {code: failure.code, message: failure.message}}, null, 2)}\n`)
    }
    return this.exit(failure.exitCode)
  }

  /** Progress goes to a terminal only: never with --json, never into a pipe or a file. */
  protected showProgress(): boolean {
    return !this.jsonEnabled() && isProgressTerminal(process.stderr)
  }
}
