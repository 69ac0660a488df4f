// The load generator's `idle` mode: holds N mostly idle connections (binary, line
// or half of each), opened through a sliding window of connects, then heartbeats
// spread evenly; reports connect times, early closes and host errors. Nothing retries.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { encodeHello, encodeMessage, T_WELCOME, T_ACK, T_ERROR, T_HEARTBEAT } from './engine-api.js';
import { childChannel } from './ipc.js';
import { heartbeatLine, MessageReader } from './frames.js';
import { percentiles, type Percentiles } from './stats.js';

export type ConnMix = 'half' | 'binary' | 'line';

export interface ConnClientOptions {
  host: string;
  port: number;
  connections: number;
  token: string;
  mix: ConnMix;
  /** Connections in progress at once (connect started, not ready yet). */
  parallel: number;
  /** Node ids are `${nodePrefix}${i}`. */
  nodePrefix: string;
  /** Hard bound on the process's life, seconds. */
  maxSeconds: number;
}

/**
 * The connect phase: counts; epoch ms (performance.timeOrigin + now) of the first
 * connect() call, the last TCP connect and the last ready; connect() to TCP connect and
 * to ready (binary: welcome received), ms; connects over 900 ms (a SYN dropped and
 * retransmitted: listen queue full); errors; the client's RSS and CPU (user + system)
 * from the first connect() to the last connection settled, seconds.
 */
export interface ConnectResult {
  connections: number; binary: number; line: number; ready: number; failed: number;
  first_connect_at: number; last_tcp_connect_at: number; last_ready_at: number;
  connect_ms: Percentiles; ready_ms: Percentiles; slow_connects: number;
  errors: string[]; error_count: number; client_rss_bytes: number; client_cpu_s: number;
}

/**
 * The client's counters at an instant (epoch ms): heartbeats and bytes sent, acks and host
 * error messages received, connections closed before the server was expected to close
 * them, CPU and ELU, RSS, the largest write buffer seen on a socket (client back-pressure),
 * heartbeats due on a connection that was not open (skipped).
 */
export interface ClientSample {
  at: number; hb_binary: number; hb_line: number; bytes_sent: number; acks: number; host_errors: number; closed_early: number;
  cpu_us: number; elu_active_ms: number; rss_bytes: number; max_writable: number; hb_skipped: number;
}

/** The stop: connections closed by the host (early ones apart), still open, the wait, host error codes (e.g. RADAR_ERR_SHUTTING_DOWN). */
export interface CloseReport {
  closed: number; closed_early: number; still_open: number; wait_ms: number; errors: string[]; error_count: number; host_error_codes: Record<string, number>;
}

export type ToClient =
  | { t: 'connect'; opts: ConnClientOptions }
  | { t: 'hb-start'; heartbeatMs: number }
  | { t: 'mark'; id: number }
  | { t: 'hb-stop' }
  | { t: 'expect-close'; timeoutMs: number }
  | { t: 'exit' };

export type FromClient =
  | { t: 'connected'; r: ConnectResult }
  | { t: 'mark'; id: number; s: ClientSample }
  | { t: 'hb-stopped'; s: ClientSample }
  | { t: 'closed'; r: CloseReport }
  | { t: 'fail'; error: string };

/** Connection i speaks the binary protocol. */
export function isBinary(mix: ConnMix, i: number): boolean {
  return mix === 'binary' || (mix === 'half' && i % 2 === 0);
}

const HB = encodeMessage({ t: T_HEARTBEAT });

interface Conn { i: number; socket: Socket; binary: boolean; hb: Buffer; settled: boolean; ready: boolean; closed: boolean }

export function idleChild(): void {
  const now = (): number => performance.timeOrigin + performance.now();
  const ch = childChannel<FromClient>('conn-client', 10);
  const send = ch.send;
  const errors = ch.errors;
  const note = ch.note;
  const hostErrorCodes: Record<string, number> = {};
  let conns: Conn[] = [];
  const cnt = { hb_binary: 0, hb_line: 0, bytes_sent: 0, acks: 0, host_errors: 0, closed_early: 0, max_writable: 0, hb_skipped: 0 };
  let closed = 0;
  let expectingClose = false;
  let onAllClosed: (() => void) | null = null;

  const sample = (): ClientSample => ({ ...cnt, at: now(), cpu_us: ch.cpuUs(), elu_active_ms: ch.eluActiveMs(), rss_bytes: process.memoryUsage.rss() });

  function write(c: Conn, buf: Buffer): void {
    c.socket.write(buf);
    cnt.bytes_sent += buf.length;
    const w = c.socket.writableLength;
    if (w > cnt.max_writable) cnt.max_writable = w;
  }

  function onMessage(c: Conn, m: Record<string, unknown>, onWelcome: () => void): void {
    if (m.t === T_ACK) cnt.acks++;
    else if (m.t === T_WELCOME && !c.ready) onWelcome();
    else if (m.t === T_ERROR) {
      cnt.host_errors++;
      const code = String(m.code);
      hostErrorCodes[code] = (hostErrorCodes[code] ?? 0) + 1;
      if (!expectingClose) note(`conn ${c.i}: host error ${code}: ${String(m.message)}`);
    }
  }

  async function connectAll(o: ConnClientOptions): Promise<ConnectResult> {
    const n = o.connections;
    conns = new Array<Conn>(n);
    const connectMs = new Float64Array(n).fill(NaN);
    const readyMs = new Float64Array(n).fill(NaN);
    let next = 0;
    let inflight = 0;
    let done = 0;
    let ready = 0;
    let failed = 0;
    let firstAt = 0;
    let lastTcpAt = 0;
    let lastReadyAt = 0;
    let slow = 0;
    const cpuStart = process.cpuUsage();
    return new Promise<ConnectResult>((resolve) => {
      const finish = (): void => {
        let binary = 0;
        for (let i = 0; i < n; i++) if (isBinary(o.mix, i)) binary++;
        resolve({
          connections: n, binary, line: n - binary, ready, failed,
          first_connect_at: firstAt, last_tcp_connect_at: lastTcpAt, last_ready_at: lastReadyAt,
          connect_ms: percentiles(connectMs), ready_ms: percentiles(readyMs), slow_connects: slow,
          errors: errors.slice(), error_count: ch.errorCount, client_rss_bytes: process.memoryUsage.rss(),
          client_cpu_s: (() => {
            const c = process.cpuUsage(cpuStart);
            return (c.user + c.system) / 1e6;
          })(),
        });
      };
      const settle = (c: Conn, t0: number, ok: boolean): void => {
        if (c.settled) return;
        c.settled = true;
        inflight--;
        done++;
        if (ok) {
          const t = now();
          c.ready = true;
          ready++;
          readyMs[c.i] = t - t0;
          if (t > lastReadyAt) lastReadyAt = t;
        } else {
          failed++;
        }
        if (done === n) finish();
        else launch();
      };
      const open = (i: number): void => {
        inflight++;
        const binary = isBinary(o.mix, i);
        const node = `${o.nodePrefix}${i}`;
        const t0 = now();
        if (firstAt === 0) firstAt = t0;
        const socket = connect({ host: o.host, port: o.port, noDelay: true });
        const c: Conn = { i, socket, binary, hb: binary ? HB : heartbeatLine(node, o.token), settled: false, ready: false, closed: false };
        conns[i] = c;
        socket.once('connect', () => {
          const t = now();
          connectMs[i] = t - t0;
          if (t - t0 > 900) slow++;
          if (t > lastTcpAt) lastTcpAt = t;
          if (binary) {
            write(c, encodeHello(node, o.token));
          } else {
            write(c, c.hb);
            cnt.hb_line++;
            settle(c, t0, true);
          }
        });
        const rd = new MessageReader();
        if (binary) socket.on('data', (d: Buffer) => rd.push(d, (m) => onMessage(c, m, () => settle(c, t0, true))));
        else socket.on('data', () => undefined); // the host says nothing on the line protocol
        socket.on('error', (err) => {
          if (!expectingClose) note(`conn ${i} (${binary ? 'binary' : 'line'}): ${err.message}`);
        });
        socket.on('close', () => {
          c.closed = true;
          closed++;
          if (!expectingClose) {
            cnt.closed_early++;
            if (c.settled) note(`conn ${i} (${binary ? 'binary' : 'line'}): closed by the host`);
          }
          settle(c, t0, false);
          if (onAllClosed && closed === n) onAllClosed();
        });
      };
      const launch = (): void => {
        while (inflight < o.parallel && next < n) open(next++);
      };
      if (n === 0) finish();
      else launch();
    });
  }

  // ---- heartbeats --------------------------------------------------------
  let hbTimer: NodeJS.Timeout | null = null;

  function startHeartbeats(intervalMs: number): void {
    const n = conns.length;
    if (n === 0) return;
    const t0 = performance.now();
    let issued = 0;
    hbTimer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) * n) / intervalMs);
      // Never more than one interval's worth at once (a stalled tick skips, it does not burst).
      if (due - issued > n) {
        cnt.hb_skipped += due - issued - n;
        issued = due - n;
      }
      for (; issued < due; issued++) {
        const c = conns[issued % n]!;
        if (c.closed || !c.ready) {
          cnt.hb_skipped++;
          continue;
        }
        write(c, c.hb);
        if (c.binary) cnt.hb_binary++;
        else cnt.hb_line++;
      }
    }, 10);
  }

  async function stopHeartbeats(): Promise<ClientSample> {
    if (hbTimer) clearInterval(hbTimer);
    hbTimer = null;
    // Wait (bounded) until every heartbeat is handed to the kernel.
    const end = Date.now() + 5000;
    while (Date.now() < end && conns.some((c) => !c.closed && c.socket.writableLength > 0)) await new Promise((r) => setTimeout(r, 10));
    return sample();
  }

  function expectClose(timeoutMs: number): void {
    expectingClose = true;
    const t0 = Date.now();
    const report = (): void => {
      onAllClosed = null;
      send({
        t: 'closed',
        r: {
          closed, closed_early: cnt.closed_early, still_open: conns.length - closed, wait_ms: Date.now() - t0,
          errors: errors.slice(), error_count: ch.errorCount, host_error_codes: hostErrorCodes,
        },
      });
    };
    if (closed === conns.length) return report();
    const timer = setTimeout(report, timeoutMs);
    onAllClosed = () => {
      clearTimeout(timer);
      report();
    };
  }

  process.on('message', (m: ToClient) => {
    switch (m.t) {
      case 'connect':
        ch.deadline(m.opts.maxSeconds);
        connectAll(m.opts).then((r) => send({ t: 'connected', r }), (err: Error) => send({ t: 'fail', error: err.message }));
        break;
      case 'hb-start':
        startHeartbeats(m.heartbeatMs);
        break;
      case 'mark':
        send({ t: 'mark', id: m.id, s: sample() });
        break;
      case 'hb-stop':
        void stopHeartbeats().then((s) => send({ t: 'hb-stopped', s }));
        break;
      case 'expect-close':
        expectClose(m.timeoutMs);
        break;
      case 'exit':
        for (const c of conns) if (c && !c.closed) c.socket.destroy();
        setTimeout(() => process.exit(0), 20);
        break;
    }
  });
}
