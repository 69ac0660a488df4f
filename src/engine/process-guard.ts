// Last-resort handlers for errors nothing else caught. An unhandled promise
// rejection leaves no state half-changed by a throw in the middle of a synchronous
// step, so the process keeps serving (logged and counted). An uncaught exception may
// have left any state inconsistent, so the process drains (engine stop: rings to
// the trackers, connections closed) and exits non-zero for its supervisor to restart it.
import { ErrorCodes } from '../protocol/errors.js';

export interface GuardTarget {
  log: {
    error(obj: Record<string, unknown>, msg: string): void;
    fatal(obj: Record<string, unknown>, msg: string): void;
  };
  readonly unhandled: { rejection: number; exception: number };
  stop(): Promise<void>;
}

/** Exit code after an uncaught exception (1: a runtime failure, as documented for the CLI). */
const EXIT_UNCAUGHT = 1;

function describe(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { err: err.message, stack: err.stack };
  return { err: String(err) };
}

export function installProcessGuard(engine: GuardTarget, deadlineMs: number, exit: (code: number) => void = (c) => process.exit(c)): void {
  let exiting = false;
  process.on('unhandledRejection', (reason) => {
    engine.unhandled.rejection++;
    engine.log.error({ code: ErrorCodes.UNHANDLED, kind: 'rejection', ...describe(reason) }, 'unhandled promise rejection; still serving');
  });
  process.on('uncaughtException', (err) => {
    engine.unhandled.exception++;
    engine.log.fatal({ code: ErrorCodes.UNHANDLED, kind: 'exception', ...describe(err) }, 'uncaught exception; draining and exiting');
    if (exiting) return; // a second one while draining: the backstop below still ends the process
    exiting = true;
    setTimeout(() => exit(EXIT_UNCAUGHT), deadlineMs + 2000).unref();
    engine.stop().then(() => exit(EXIT_UNCAUGHT), () => exit(EXIT_UNCAUGHT));
  });
}

/**
 * Test-only fault injection: with RADAR_INGEST_TEST_HOOKS=1, SIGUSR2 provokes the fault
 * named by RADAR_INGEST_TEST_FAULT ("rejection" or "exception"), so the handlers above
 * can be proved on the real CLI. Without both variables nothing is installed.
 */
export function installTestFault(env: NodeJS.ProcessEnv): void {
  if (env.RADAR_INGEST_TEST_HOOKS !== '1') return;
  const fault = env.RADAR_INGEST_TEST_FAULT;
  if (fault !== 'rejection' && fault !== 'exception') return;
  process.on('SIGUSR2', () => {
    if (fault === 'rejection') void Promise.reject(new Error('test fault: unhandled rejection'));
    else setImmediate(() => { throw new Error('test fault: uncaught exception'); });
  });
}
