// Argument parsing shared by the command and its subcommands (commander): a bad
// flag is named on one line with the closest real flag, and is a usage error
// (exit 2, as documented) rather than commander's own exit 1.
import { Command, CommanderError } from 'commander';

export type Write = (s: string) => void;

/** Exit code for bad usage: an unknown flag, a missing value, a stray argument. */
export const EXIT_USAGE = 2;
/** Exit code for an invalid config: the same as bad usage, the operator's input is wrong. */
export const EXIT_CONFIG = 2;

/** commander's "error: unknown option '--confg'\n(Did you mean --config?)" as one line under the command's name. */
export function formatParseError(name: string, text: string): string {
  return text.replace(/^error: /, `${name}: `).replace(/\n\(Did you mean (.+?)\?\)/, ' (did you mean $1?)');
}

/** A command that writes through `out`/`err` and throws instead of exiting (parseArgv turns that into a code). */
export function newCommand(name: string, out: Write, err: Write): Command {
  return new Command(name)
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err, outputError: (s, write) => write(formatParseError(name, s)) })
    .showHelpAfterError(`(run '${name} --help' for usage)`)
    .showSuggestionAfterError(true)
    .helpOption('-h, --help', 'print this help and exit');
}

/** Parses `argv` (the arguments after the command). Null: go on; a number: exit with it (0 after --help or --version). */
export function parseArgv(cmd: Command, argv: readonly string[]): number | null {
  try {
    cmd.parse([...argv], { from: 'user' });
    return null;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
    throw e;
  }
}
