// What the start-up log says about the node tokens: a shared token that protects
// nothing (empty, or the shipped placeholder) is said loudly, once, at start.
import type { Config } from '../config.js';

/** The placeholder the shipped config.yaml carries: a host running with it accepts anyone who read the file. */
export const PLACEHOLDER_TOKEN = 'change-me';

export function tokenWarnings(t: Config['tcp_server']): string[] {
  if (!t.enabled) return [];
  const own = Object.keys(t.tokens).length;
  const who = own === 0 ? 'every node' : 'every node without an entry in tcp_server.tokens';
  if (t.token === '') {
    return [`tcp_server.token is EMPTY: ${who} authenticates with "token": "" (a message without a token is refused); ` +
      'anyone who can reach the port can send frames. Set RADAR_INGEST_TOKEN or tcp_server.token'];
  }
  if (t.token === PLACEHOLDER_TOKEN) {
    return [`tcp_server.token is the placeholder "${PLACEHOLDER_TOKEN}": ${who} authenticates with a published token. ` +
      'Set RADAR_INGEST_TOKEN or tcp_server.token'];
  }
  return [];
}
