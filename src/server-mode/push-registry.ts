// The nodes that run their own tracker and push its output here (server mode):
// per name, the config it posted, its track file, its forwarder and a tally of its
// tracks. The names are peer-chosen, so at most `capacity` are held: a new name
// beyond that evicts the least recently active one, whose file is closed and whose
// forwarder is flushed (with a deadline) in the background.
import type { OutputDate } from '../tracker/file-date.js';
import type { Logger } from 'pino';
import type { ApiForwardConfig } from '../config.js';
import { Lru } from '../util/lru.js';
import { RateLimit } from '../telemetry/rate-limit.js';
import { ApiForwarder } from '../tracker/api-forwarder.js';
import { TrackFileWriter } from '../tracker/track-output.js';
import { withProvenance } from '../tracker/track-provenance.js';
import type { TrackBatch } from './track-batch.js';
import { TrackTally } from './track-tally.js';

/** Pushing nodes held at once (each may hold an open track file). */
export const MAX_PUSH_NODES = 1024;
/** Events waiting per node's forwarder, in characters of JSON (the oldest dropped beyond). */
const FORWARD_QUEUE_CHARS = 4 * 1024 * 1024;
/** How long an evicted node's forwarder may take to send what it holds. */
const EVICT_FLUSH_MS = 5000;

/** One node in GET /api/nodes: tracker-host's two fields first, then ours. */
export interface PushNodeView {
  has_config: boolean;
  active_tracks: number;
  events_written: number;
  invalid_lines: number;
  config_at: string | null;
  last_event_at: string | null;
}

export interface PushRegistryOptions {
  outputDir: string;
  /** Which date names the files (output_date), the same rule as the local trackers' files. */
  outputDate: OutputDate;
  /** The api_forward in force (read when a node's forwarder is made). */
  apiForward(): ApiForwardConfig;
  log: Logger;
  now?: () => number;
  capacity?: number;
  /** Cluster: this host's id. Files are `{name}_{host}_{date}.jsonl` and every event carries node_id, host and fence 0 (a push holds no lease). */
  host?: string | undefined;
}

class PushNode {
  /** The config as posted (re-serialised), or null. */
  config: string | null = null;
  hasConfig = false;
  configAt = 0;
  events = 0;
  invalid = 0;
  lastEventAt = 0;
  readonly tally = new TrackTally();
  writer: TrackFileWriter | null = null;
  forwarder: ApiForwarder | null | undefined = undefined;

  constructor(readonly name: string) {}
}

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

export class PushRegistry {
  private readonly nodes: Lru<string, PushNode>;
  private readonly now: () => number;
  /** Log lines about peer-chosen names, limited per key (`node:{name}`, `registered`, `forgotten`). */
  private readonly logLimit: RateLimit;
  /** Flushes of evicted nodes still running (awaited by close()). */
  private readonly flushing = new Set<Promise<void>>();
  private closed = false;
  /** Lines written and lines skipped, over every node ever held. */
  readonly lines = { accepted: 0, invalid: 0 };

  constructor(private readonly opts: PushRegistryOptions) {
    this.now = opts.now ?? Date.now;
    this.nodes = new Lru(opts.capacity ?? MAX_PUSH_NODES);
    this.logLimit = new RateLimit(5, 10_000, this.now);
  }

  /** Names held now. */
  get size(): number {
    return this.nodes.size;
  }

  /** Stores (or replaces) a node's config; the name must already be valid. */
  storeConfig(name: string, config: Record<string, unknown>): void {
    const { node, created } = this.entry(name);
    node.config = JSON.stringify(config);
    // As tracker-host's bool(config): an empty object is no config.
    node.hasConfig = Object.keys(config).length > 0;
    node.configAt = this.now();
    const n = this.logLimit.take(created ? 'registered' : `node:${name}`);
    if (n >= 0) this.opts.log.info({ node: name, has_config: node.hasConfig, suppressed: n }, created ? 'pushing node registered' : 'pushing node config updated');
  }

  /** The config a node posted (JSON text), or null. */
  configOf(name: string): string | null {
    return this.nodes.peek(name)?.config ?? null;
  }

  /**
   * Appends a batch's valid lines to the node's track file and queues them for
   * api_forward; resolves when the file's buffer has room again, so a node that
   * posts faster than the disk writes is held back by its own requests.
   */
  async appendTracks(name: string, batch: TrackBatch): Promise<void> {
    const { node, created } = this.entry(name);
    if (created) {
      const n = this.logLimit.take('registered');
      if (n >= 0) this.opts.log.info({ node: name, suppressed: n }, 'pushing node registered by its first tracks');
    }
    if (batch.invalid > 0) {
      node.invalid += batch.invalid;
      this.lines.invalid += batch.invalid;
      const n = this.logLimit.take(`node:${name}`);
      if (n >= 0) this.opts.log.warn({ node: name, lines: batch.invalid, suppressed: n }, 'pushed track lines that are not JSON objects were skipped');
    }
    if (batch.lines.length === 0) return;
    const writer = node.writer ??= this.openWriter(name);
    const forwarder = this.forwarderOf(node);
    const host = this.opts.host;
    for (const l of batch.lines) {
      const text = host === undefined ? l.text : withProvenance(l.text, JSON.parse(l.text) as Record<string, unknown>, { nodeId: name, host, fence: 0, runId: null });
      writer.write(text);
      forwarder?.enqueue(text);
      if (l.trackId !== null) node.tally.update(l.trackId, l.length);
    }
    node.events += batch.lines.length;
    this.lines.accepted += batch.lines.length;
    node.lastEventAt = this.now();
    await writer.drained();
  }

  list(): Record<string, PushNodeView> {
    // No prototype: a node may be called "__proto__".
    const out = Object.create(null) as Record<string, PushNodeView>;
    for (const n of this.nodes.values()) {
      out[n.name] = {
        has_config: n.hasConfig, active_tracks: n.tally.count, events_written: n.events, invalid_lines: n.invalid,
        config_at: iso(n.configAt), last_event_at: iso(n.lastEventAt),
      };
    }
    return out;
  }

  /** Flushes and closes every track file and forwarder (the latter within `deadlineMs`). Idempotent. */
  async close(deadlineMs: number): Promise<void> {
    this.closed = true;
    const all = [...this.nodes.values()];
    this.nodes.clear();
    await Promise.all([...all.map((n) => this.release(n, deadlineMs)), ...this.flushing]);
  }

  private entry(name: string): { node: PushNode; created: boolean } {
    const held = this.nodes.get(name);
    if (held) return { node: held, created: false };
    if (this.nodes.size >= this.nodes.capacity) {
      const oldest = this.nodes.values().next();
      if (!oldest.done) {
        this.nodes.delete(oldest.value.name);
        const n = this.logLimit.take('forgotten');
        if (n >= 0) this.opts.log.warn({ node: oldest.value.name, held: this.nodes.capacity, suppressed: n }, 'pushing node forgotten to make room for a new name');
        const p = this.release(oldest.value, EVICT_FLUSH_MS).finally(() => this.flushing.delete(p));
        this.flushing.add(p);
      }
    }
    const node = new PushNode(name);
    this.nodes.set(name, node);
    return { node, created: true };
  }

  private openWriter(name: string): TrackFileWriter {
    return new TrackFileWriter({
      outputDir: this.opts.outputDir,
      date: this.opts.outputDate,
      name,
      host: this.opts.host,
      now: this.now,
      onError: (err) => this.opts.log.error({ node: name, err: err.message }, 'track file error'),
    });
  }

  /** The node's forwarder, made on first use from the api_forward then in force (null: forwarding off). */
  private forwarderOf(node: PushNode): ApiForwarder | null {
    if (node.forwarder !== undefined) return node.forwarder;
    const af = this.opts.apiForward();
    node.forwarder = null;
    if (!af.enabled || this.closed) return null;
    try {
      node.forwarder = new ApiForwarder({
        url: af.url,
        headers: af.headers,
        batchMaxEvents: af.batch_max_events,
        batchWindowMs: af.batch_max_ms,
        maxQueueChars: FORWARD_QUEUE_CHARS,
        onError: (err) => this.opts.log.warn({ node: node.name, status: err.status, events: err.events, attempts: err.attempts }, `track forwarding failed: ${err.message}`),
      });
    } catch (err) {
      // A bad api_forward.url (or header) must not fail the push: the file still gets the lines.
      const n = this.logLimit.take('forward_config');
      if (n >= 0) this.opts.log.error({ node: node.name, err: (err as Error).message, suppressed: n }, 'pushed tracks are not forwarded: api_forward is invalid');
    }
    return node.forwarder;
  }

  private async release(node: PushNode, deadlineMs: number): Promise<void> {
    await Promise.all([node.writer?.close(), node.forwarder?.close(deadlineMs)]);
  }
}
