// A listener that cannot open says which config key to change: the operator reads
// the last log line, not a stack trace.

/** A listener failed to open; `key` is the config key to change. */
export class ListenError extends Error {
  constructor(readonly key: string, readonly address: string, readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

/** What an OS error on listen means for the operator, keyed by the errno code. */
export function listenProblem(portKey: string, hostKey: string, host: string, port: number, err: NodeJS.ErrnoException): ListenError {
  const address = `${host}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new ListenError(portKey, address, err.code, `${portKey}: ${address} is already in use by another process; stop it or choose another port`);
    case 'EACCES':
      return new ListenError(portKey, address, err.code, `${portKey}: permission denied to listen on ${address} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ListenError(hostKey, address, err.code, `${hostKey}: "${host}" is not an address of this machine (use 127.0.0.1, 0.0.0.0 or one of its own addresses)`);
    default:
      return new ListenError(portKey, address, err.code, `${portKey}: cannot listen on ${address}: ${err.message}`);
  }
}

/** Runs a listen, turning its OS error into a ListenError that names the key. */
export async function listenAs<T>(portKey: string, hostKey: string, host: string, port: number, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    throw listenProblem(portKey, hostKey, host, port, err as NodeJS.ErrnoException);
  }
}
