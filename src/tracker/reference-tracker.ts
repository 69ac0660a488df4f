// Built-in reference tracker: a small stand-in for retina-tracker with the same
// process interface (see docs/reference-tracker.md):
//
//   node dist/src/tracker/reference-tracker.js --tcp --tcp-host 127.0.0.1 --tcp-port PORT -s - [-c CONFIG]
//
// It listens on PORT, serves one connection at a time, reads JSON lines (detection
// frames, or {"type":"RESET"}) and writes one JSON track event per line on stdout.
// Everything else (status, errors) goes to stderr. The tracking itself is the pure
// Tracker class below (feed(frame) -> TrackEvent[]); the I/O shell is main().
import { createServer, type Socket } from 'node:net';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { LineSplitter } from './line-splitter.js';

export type TrackState = 'tentative' | 'confirmed' | 'coasting' | 'deleted';
export type Adsb = Record<string, unknown>;

/** A detection frame as it arrives: parallel arrays, timestamp in ms since the epoch. */
export interface Frame { timestamp: number; delay: number[]; doppler: number[]; snr: number[]; adsb?: (Adsb | null)[] }

/** One associated detection, as reported in a track event (retina's field names). */
export interface TrackDetection { timestamp: number; delay: number; doppler: number; snr: number; adsb: Adsb | null }

/** One output line. Field names and order follow retina-tracker's TrackEventWriter; `state` and `missed` are ours. */
export interface TrackEvent {
  track_id: string;
  adsb_hex: string | null;
  adsb_initialized: boolean; // true once adsb_hex is known
  timestamp: number; // of the frame that produced the event
  length: number; // detections associated so far
  detections: TrackDetection[]; // those not reported in an earlier event of this track
  // retina-tracker's anomaly fields, always "nothing found": this tracker does no anomaly detection.
  is_anomalous: boolean;
  max_velocity_ms: number;
  anomaly_types: string[];
  shadow_fraction: number;
  state: TrackState;
  missed: number; // consecutive frames without a detection
}

export interface TrackerConfig {
  /** Largest |delay - predicted delay| a detection may have to join a track. */
  delayGate: number;
  /** Largest |doppler - predicted doppler| a detection may have to join a track. */
  dopplerGate: number;
  /** Consecutive missed frames a track survives; one more deletes it. */
  maxMissed: number;
  /** Associated detections needed before a track is confirmed (and reported). */
  minLength: number;
  /** How many of a track's latest detections are kept: the most the first event of a track carries. */
  detectionWindow: number;
  /** Delay rate (delay units per second) per unit of doppler, used for a one-point track. 0 = assume none. */
  dopplerToDelayRate: number;
  /** After this many frames in a row not after the last one, reset and follow the new clock. 0 = never. */
  resyncAfter: number;
  /** Put in front of every track id as `{idPrefix}-T0001`; '' = plain `T0001`. */
  idPrefix: string;
}

export const DEFAULT_CONFIG: Readonly<TrackerConfig> = {
  delayGate: 2.0,
  dopplerGate: 10.0,
  maxMissed: 3,
  minLength: 3,
  detectionWindow: 20,
  dopplerToDelayRate: 0,
  resyncAfter: 10,
  idPrefix: '',
};

/** What --id-prefix accepts: the host's run id (digits and dots today), room for a host id or a fence, never a line break or a quote. */
export const ID_PREFIX_RE = /^[A-Za-z0-9._:@]{1,64}$/;

interface Track {
  id: string | null; // assigned on confirmation
  state: TrackState;
  delay: number; doppler: number; lastTs: number; // the last associated detection
  delayRate: number; dopplerRate: number; // per second
  length: number;
  missed: number;
  recent: TrackDetection[]; // the latest detectionWindow detections
  reported: number; // length when the last event was written
  adsbHex: string | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class Tracker {
  readonly config: TrackerConfig;
  private tracks: Track[] = [];
  private lastTs: number | null = null;
  private nextId = 1;
  private behind = 0; // frames in a row not after lastTs
  /** What the last feed() did with its frame. */
  lastFeed: 'accepted' | 'out-of-order' | 'resync' = 'accepted';

  constructor(config: Partial<TrackerConfig> = {}) {
    this.config = { ...DEFAULT_CONFIG, ...config };
  }

  /** Timestamp of the last frame accepted (null after construction or reset). */
  get lastTimestamp(): number | null {
    return this.lastTs;
  }

  /** Live tracks, tentative ones included (for inspection and tests). */
  snapshot(): { id: string | null; state: TrackState; length: number; missed: number }[] {
    return this.tracks.map((t) => ({ id: t.id, state: t.state, length: t.length, missed: t.missed }));
  }

  /**
   * Processes one frame. A frame not after the previous one is ignored (returns []), unless it
   * is the resyncAfter-th such frame in a row: then the clock has jumped back (or one frame
   * jumped ahead), so every track is reset and the frame is taken as the new clock.
   */
  feed(frame: Frame): TrackEvent[] {
    const ts = frame.timestamp;
    const events: TrackEvent[] = [];
    this.lastFeed = 'accepted';
    if (this.lastTs !== null && ts <= this.lastTs) {
      this.lastFeed = ++this.behind === this.config.resyncAfter ? 'resync' : 'out-of-order';
      if (this.lastFeed === 'out-of-order') return [];
      events.push(...this.reset());
    }
    this.behind = 0;
    this.lastTs = ts;
    const dets = detectionsOf(frame);
    const { delayGate, dopplerGate, maxMissed } = this.config;

    // Gate every (track, detection) pair around the track's constant-rate prediction.
    // Plain loops and typed arrays: this runs for every frame of every node, mostly
    // in baseline-compiled code at a few frames a second, where closures cost.
    const tracks = this.tracks;
    const pairs: { t: number; d: number; tentative: number; dist: number }[] = [];
    for (let t = 0; t < tracks.length; t++) {
      const tr = tracks[t]!;
      const dt = (ts - tr.lastTs) / 1000;
      const predDelay = tr.delay + tr.delayRate * dt;
      const predDoppler = tr.doppler + tr.dopplerRate * dt;
      const tentative = tr.state === 'tentative' ? 1 : 0;
      for (let d = 0; d < dets.length; d++) {
        const det = dets[d]!;
        const ed = Math.abs(det.delay - predDelay) / delayGate;
        const ef = Math.abs(det.doppler - predDoppler) / dopplerGate;
        if (ed <= 1 && ef <= 1) pairs.push({ t, d, tentative, dist: Math.hypot(ed, ef) });
      }
    }
    // Greedy nearest neighbour: confirmed tracks choose first, then by normalised distance.
    if (pairs.length > 1) pairs.sort(byPreference);
    const detOfTrack = new Int32Array(tracks.length).fill(-1);
    const taken = new Uint8Array(dets.length);
    for (const p of pairs) {
      if (detOfTrack[p.t] !== -1 || taken[p.d] === 1) continue;
      detOfTrack[p.t] = p.d;
      taken[p.d] = 1;
    }

    const kept: Track[] = [];
    for (let t = 0; t < tracks.length; t++) {
      const tr = tracks[t]!;
      const d = detOfTrack[t]!;
      if (d !== -1) {
        this.associate(tr, dets[d]!);
      } else if (++tr.missed > maxMissed) {
        if (tr.id !== null) events.push(this.event(tr, 'deleted'));
        continue;
      } else if (tr.id !== null) {
        tr.state = 'coasting';
      }
      if (tr.id !== null) events.push(this.event(tr, tr.state));
      kept.push(tr);
    }
    for (let d = 0; d < dets.length; d++) {
      if (taken[d] === 1) continue;
      const tr = this.start(dets[d]!);
      if (tr.id !== null) events.push(this.event(tr, tr.state));
      kept.push(tr);
    }
    this.tracks = kept;
    return events;
  }

  /** Drops every track (and the timestamp order); returns a `deleted` event for each confirmed one. */
  reset(): TrackEvent[] {
    const events = this.tracks.filter((t) => t.id !== null).map((t) => this.event(t, 'deleted'));
    this.tracks = [];
    this.lastTs = null;
    this.behind = 0;
    return events;
  }

  private start(det: TrackDetection): Track {
    const tr: Track = {
      id: null, state: 'tentative', delay: det.delay, doppler: det.doppler, lastTs: det.timestamp,
      delayRate: det.doppler * this.config.dopplerToDelayRate, dopplerRate: 0,
      length: 1, missed: 0, recent: [det], reported: 0, adsbHex: hexOf(det),
    };
    this.confirmIfReady(tr);
    return tr;
  }

  private associate(tr: Track, det: TrackDetection): void {
    const dt = (det.timestamp - tr.lastTs) / 1000; // > 0: frames are strictly ordered
    tr.delayRate = (det.delay - tr.delay) / dt;
    tr.dopplerRate = (det.doppler - tr.doppler) / dt;
    tr.delay = det.delay;
    tr.doppler = det.doppler;
    tr.lastTs = det.timestamp;
    tr.length++;
    tr.missed = 0;
    tr.recent.push(det);
    if (tr.recent.length > this.config.detectionWindow) tr.recent.shift();
    tr.adsbHex ??= hexOf(det); // the first hex seen sticks
    if (tr.state === 'tentative') this.confirmIfReady(tr);
    else tr.state = 'confirmed';
  }

  private confirmIfReady(tr: Track): void {
    if (tr.state !== 'tentative' || tr.length < this.config.minLength) return;
    tr.state = 'confirmed';
    const n = `T${String(this.nextId++).padStart(4, '0')}`;
    tr.id = this.config.idPrefix === '' ? n : `${this.config.idPrefix}-${n}`;
  }

  /** An event carries only the detections not in an earlier event of its track (as retina-tracker does). */
  private event(tr: Track, state: TrackState): TrackEvent {
    const fresh = Math.min(tr.length - tr.reported, tr.recent.length);
    tr.reported = tr.length;
    return {
      track_id: tr.id!, adsb_hex: tr.adsbHex, adsb_initialized: tr.adsbHex !== null,
      timestamp: this.lastTs!, length: tr.length, detections: tr.recent.slice(tr.recent.length - fresh),
      is_anomalous: false, max_velocity_ms: 0, anomaly_types: [], shadow_fraction: 0,
      state, missed: tr.missed,
    };
  }
}

/** Pair order for the greedy association: confirmed before tentative, nearer first, then by index (a total order: deterministic). */
function byPreference(a: { t: number; d: number; tentative: number; dist: number }, b: { t: number; d: number; tentative: number; dist: number }): number {
  return a.tentative - b.tentative || a.dist - b.dist || a.t - b.t || a.d - b.d;
}

function detectionsOf(frame: Frame): TrackDetection[] {
  const out: TrackDetection[] = [];
  const n = Math.min(frame.delay.length, frame.doppler.length, frame.snr.length);
  for (let i = 0; i < n; i++) {
    const delay = frame.delay[i]!, doppler = frame.doppler[i]!, snr = frame.snr[i]!;
    if (!Number.isFinite(delay) || !Number.isFinite(doppler) || !Number.isFinite(snr)) continue;
    const adsb = frame.adsb?.[i];
    out.push({ timestamp: frame.timestamp, delay, doppler, snr, adsb: isObject(adsb) ? adsb : null });
  }
  return out;
}

function hexOf(det: TrackDetection): string | null {
  const hex = det.adsb?.['hex'];
  return typeof hex === 'string' && hex.trim() !== '' ? hex.trim() : null;
}

export type Message = { kind: 'reset' } | { kind: 'frame'; frame: Frame } | { kind: 'error'; error: string };

/** Parses one input line into a frame, a RESET, or an error explaining why it is skipped. */
export function parseMessage(line: string): Message {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return { kind: 'error', error: `malformed JSON (${(e as Error).message})` };
  }
  if (!isObject(v)) return { kind: 'error', error: 'not a JSON object' };
  if (v['type'] === 'RESET') return { kind: 'reset' };
  const ts = v['timestamp'];
  if (typeof ts !== 'number' || !Number.isFinite(ts)) return { kind: 'error', error: 'frame without a numeric timestamp' };
  const arrays: Record<string, unknown[]> = {};
  for (const key of ['delay', 'doppler', 'snr', 'adsb']) {
    const a = v[key] ?? [];
    if (!Array.isArray(a)) return { kind: 'error', error: `frame ${ts}: ${key} is not an array` };
    arrays[key] = a;
  }
  const frame = { timestamp: ts, delay: arrays['delay'], doppler: arrays['doppler'], snr: arrays['snr'], adsb: arrays['adsb'] };
  return { kind: 'frame', frame: frame as Frame }; // element types are checked in detectionsOf
}

// The YAML parser is loaded only when a config file is read: one tracker process runs
// per node, most without a config, and loading it costs each of them ~1 MiB.
const parseYaml = (text: string): unknown => (createRequire(import.meta.url)('yaml') as typeof Yaml).parse(text);

/** Reads a config file (JSON or YAML): our flat keys, or retina-tracker's `tracker:`/`tracklet:` keys. Throws on bad values. */
export function loadConfig(text: string): Partial<TrackerConfig> {
  const doc: unknown = parseYaml(text) ?? {};
  if (!isObject(doc)) throw new Error('config must be a mapping');
  const section = (k: string): Record<string, unknown> => (isObject(doc[k]) ? doc[k] : {});
  const retina = section('tracker'), tracklet = section('tracklet');
  const kinds = {
    gate: [(v: number) => v > 0, 'a number > 0'],
    count: [(v: number) => Number.isInteger(v) && v >= 0, 'an integer >= 0'],
    positiveCount: [(v: number) => Number.isInteger(v) && v >= 1, 'an integer >= 1'],
    number: [() => true, 'a number'],
  } as const;
  type NumericKey = Exclude<keyof TrackerConfig, 'idPrefix'>;
  const spec: [NumericKey, string, unknown, keyof typeof kinds][] = [
    ['delayGate', 'delay_gate', tracklet['max_delay_residual'], 'gate'],
    ['dopplerGate', 'doppler_gate', tracklet['max_doppler_residual'], 'gate'],
    ['maxMissed', 'max_missed', retina['n_delete'], 'count'],
    ['minLength', 'min_length', retina['m_threshold'], 'positiveCount'],
    ['detectionWindow', 'detection_window', retina['detection_window'], 'positiveCount'],
    ['dopplerToDelayRate', 'doppler_to_delay_rate', undefined, 'number'],
    ['resyncAfter', 'resync_after', undefined, 'count'],
  ];
  const out: Partial<Pick<TrackerConfig, NumericKey>> = {};
  for (const [field, key, fallback, kind] of spec) {
    const v = doc[key] ?? fallback;
    if (v === undefined || v === null) continue;
    const [valid, expected] = kinds[kind];
    if (typeof v !== 'number' || !Number.isFinite(v) || !valid(v)) throw new Error(`${key}: expected ${expected}, got ${JSON.stringify(v)}`);
    out[field] = v;
  }
  return out;
}

export const USAGE = `usage: reference-tracker --tcp [--tcp-host HOST] [--tcp-port PORT] [-s -] [-c CONFIG] [--detection-window N]
  --tcp                 serve detection frames over TCP (the only mode)
  --tcp-host HOST       address to listen on (default 127.0.0.1)
  --tcp-port PORT       port to listen on (default 3012; 0 = any, reported on stderr)
  -s, --stream-output - track events to stdout (the only output; other values are ignored)
  -c, --config FILE     JSON or YAML tracker settings
  --detection-window N  most detections in a track's first event (default 20)
  --exit-with-stdin     exit when stdin reaches its end (the engine holds it open, so the tracker dies with it)
  --id-prefix RUN       track ids are RUN-T0001, RUN-T0002, ... (RUN: letters, digits, . : @; at most 64)
`;

export interface CliOptions {
  host: string; port: number; stream: string; config: string | null; detectionWindow: number | null; help: boolean; exitWithStdin?: boolean; idPrefix?: string;
}

/** Parses argv (without node and script); throws an Error with the reason on bad usage. */
export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = { host: '127.0.0.1', port: 3012, stream: '-', config: null, detectionWindow: null, help: false };
  let tcp = false;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let inline: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) [arg, inline] = [arg.slice(0, eq), arg.slice(eq + 1)];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = (min: number, max: number): number => {
      const s = value();
      if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) throw new Error(`${arg}: bad value ${JSON.stringify(s)}`);
      return Number(s);
    };
    if (arg === '--tcp' && inline === undefined) tcp = true;
    else if (arg === '--tcp-host') o.host = value();
    else if (arg === '--tcp-port') o.port = int(0, 65535);
    else if (arg === '-s' || arg === '--stream-output') o.stream = value();
    else if (arg === '-c' || arg === '--config') o.config = value();
    else if (arg === '--detection-window') o.detectionWindow = int(1, 1e6);
    else if ((arg === '-h' || arg === '--help') && inline === undefined) o.help = true;
    else if (arg === '--exit-with-stdin' && inline === undefined) o.exitWithStdin = true;
    else if (arg === '--id-prefix') {
      const p = value();
      if (!ID_PREFIX_RE.test(p)) throw new Error(`--id-prefix: bad value ${JSON.stringify(p)} (letters, digits, ".", ":", "@"; 1 to 64)`);
      o.idPrefix = p;
    }
    else throw new Error(`unknown argument ${JSON.stringify(arg)}`);
  }
  if (!tcp && !o.help) throw new Error('--tcp is required (file input is not supported)');
  return o;
}

const MAX_LINE_BYTES = 1024 * 1024;
/** A RESET line is a command, not a frame (cheap pre-check; handleLine parses it properly). */
const RESET_RE = /^\s*\{\s*"type"\s*:\s*"RESET"\s*\}\s*$/;
const log = (msg: string): void => void process.stderr.write(`reference-tracker: ${msg}\n`);

function main(argv: string[]): void {
  let opts: CliOptions;
  let config: Partial<TrackerConfig> = {};
  try {
    opts = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`reference-tracker: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  try {
    if (opts.config !== null) config = loadConfig(readFileSync(opts.config, 'utf8'));
  } catch (e) {
    log(`config ${opts.config}: ${(e as Error).message}`);
    process.exit(2);
  }
  if (opts.detectionWindow !== null) config.detectionWindow = opts.detectionWindow;
  if (opts.idPrefix !== undefined) config.idPrefix = opts.idPrefix;
  if (opts.stream !== '-') log(`-s ${opts.stream}: only "-" (stdout) is supported; writing to stdout`);

  const tracker = new Tracker(config);
  const out = process.stdout;
  out.on('error', (e) => {
    log(`stdout: ${e.message}`);
    process.exit(1);
  });
  const emit = (events: TrackEvent[]): void => {
    if (events.length === 0) return;
    let text = '';
    for (const e of events) text += `${JSON.stringify(e)}\n`;
    out.write(text);
  };
  const handleLine = (line: string): void => {
    const m = parseMessage(line);
    if (m.kind === 'error') return log(`skipping a line of ${line.length} chars: ${m.error}`); // not its text: it may hold a token
    if (m.kind === 'reset') {
      emit(tracker.reset());
      return log('tracker state reset');
    }
    const last = tracker.lastTimestamp;
    emit(tracker.feed(m.frame));
    if (tracker.lastFeed === 'out-of-order') log(`skipping frame ${m.frame.timestamp}: not after ${last}`);
    if (tracker.lastFeed === 'resync') log(`frame ${m.frame.timestamp}: ${tracker.config.resyncAfter} frames in a row not after ${last}; tracks reset, following the new clock`);
  };

  let active: Socket | null = null;
  // allowHalfOpen: at the end of the input the tracker still writes its report back.
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    if (active !== null) {
      log(`refusing a second connection from ${sock.remoteAddress}:${sock.remotePort}`);
      sock.destroy();
      return;
    }
    active = sock;
    log(`connected: ${sock.remoteAddress}:${sock.remotePort}`);
    const lines = new LineSplitter({ maxLineBytes: MAX_LINE_BYTES });
    let framesRead = 0;
    sock.on('data', (chunk: Buffer) => {
      const oversize = lines.oversizeLines;
      for (const line of lines.push(chunk)) {
        if (line.trim() === '') continue;
        if (!RESET_RE.test(line)) framesRead++;
        handleLine(line);
      }
      for (let i = oversize; i < lines.oversizeLines; i++) log('skipping a line over 1 MiB');
      if (out.writableNeedDrain && !sock.isPaused()) {
        sock.pause(); // stdout is full: stop reading until the consumer catches up
        out.once('drain', () => sock.resume());
      }
    });
    // End of input: say how many frames were read (every one was handled: reading
    // is paused, never skipped), then close our side.
    sock.once('end', () => {
      log(`end of input after ${framesRead} frames`);
      sock.end(`${JSON.stringify({ type: 'EOF', frames_read: framesRead })}\n`);
    });
    sock.on('error', (e) => log(`connection error: ${e.message}`));
    sock.on('close', () => {
      active = null;
      log('connection closed; waiting for a new one');
    });
  });
  server.on('error', (e) => {
    log(`cannot listen on ${opts.host}:${opts.port}: ${e.message}`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const addr = server.address();
    log(`listening on ${opts.host}:${typeof addr === 'object' && addr ? addr.port : opts.port}`);
  });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.close();
    active?.destroy();
    // Every live track ends here: a consumer sees a `deleted` event for each one
    // instead of a track that stops without a word.
    const ended = tracker.reset();
    emit(ended);
    log(`${signal}: exiting${ended.length > 0 ? ` (${ended.length} live track${ended.length === 1 ? '' : 's'} reported deleted)` : ''}`);
    setTimeout(() => process.exit(0), 2000); // a consumer that never reads cannot hold us
    out.write('', () => process.exit(0)); // called once everything queued before it is flushed
  };
  if (opts.exitWithStdin === true) {
    // The engine's pipe: its end means the engine is gone (even by SIGKILL, which
    // it cannot pass on to a tracker in another process group).
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.once('end', () => stop('stdin closed'));
    process.stdin.resume();
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}
if (isMain()) main(process.argv.slice(2));
