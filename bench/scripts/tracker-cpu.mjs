// CPU per frame of the built-in tracker: N trackers fed a 10-detection frame every RATE_MS (default 500 = 2 Hz) over TCP; after WARM s (default 5)
// it reads, over SECONDS, the CPU time of every thread (/proc/<pid>/task/*/schedstat, ns), context switches, minor page faults, and at the end PSS/private (KiB).
// usage (after a build): node bench/scripts/tracker-cpu.mjs N SECONDS [node flags...]   env: JS, RATE_MS, DETS, WARM; DUMP=1 prints non-JSON stdout (e.g. --trace-gc), PIDS=1 the tracker pids, GRACE=1 ends them with SIGTERM (for --cpu-prof)
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
const [N, S, ...flags] = process.argv.slice(2);
const js = process.env.JS ?? new URL('../../dist/src/tracker/reference-tracker.js', import.meta.url).pathname;
const rate = Number(process.env.RATE_MS ?? 500), nd = Number(process.env.DETS ?? 10);
const procs = [];
const schedNs = (pid) => { let s = 0; for (const t of readdirSync(`/proc/${pid}/task`)) { try { s += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch {} } return s; };
const statf = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return { minflt: Number(f[7]), utime: Number(f[11]), stime: Number(f[12]) }; };
const ctx = (pid) => { let v = 0, nv = 0; for (const t of readdirSync(`/proc/${pid}/task`)) { try { const x = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'); v += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(x)[1]); nv += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(x)[1]); } catch {} } return v + nv; };
const roll = (pid) => { const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'); const g = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)[1]); return { pss: g('Pss'), priv: g('Private_Dirty') + g('Private_Clean') }; };
let outBytes = 0;
for (let i = 0; i < Number(N); i++) {
  const args = [...flags, js, '--exit-with-stdin', '--id-prefix', '1.1', '--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '0', '-s', '-'];
  const p = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const port = await new Promise((res) => { let e = ''; p.stderr.on('data', (d) => { e += d; const m = /listening on [\d.]+:(\d+)/.exec(e); if (m) res(Number(m[1])); }); });
  p.stdout.on("data", (d) => { outBytes += d.length; if (process.env.DUMP) { const s = d.toString(); for (const l of s.split("\n")) if (l && !l.startsWith("{")) console.error("OUT", l); } }); p.stderr.resume();
  procs.push({ p, port });
}
const socks = await Promise.all(procs.map(({ port }) => new Promise((res) => { const s = connect(port, '127.0.0.1', () => res(s)); s.on('error', () => {}); })));
let ts = 1757400000000, k = 0, frames = 0;
const det = (n, v) => Array.from({ length: n }, (_, i) => Math.round((v + i * 3.1) * 1000) / 1000);
const send = () => { ts += 500; k++; frames++; const line = JSON.stringify({ timestamp: ts, delay: det(nd, 10 + k * 0.01), doppler: det(nd, 50), snr: det(nd, 12) }) + '\n'; for (const s of socks) s.write(line); };
const t = setInterval(send, rate);
const warm = Number(process.env.WARM ?? 5);
await new Promise((r) => setTimeout(r, warm * 1000)); if (process.env.PIDS) console.error("PID", procs.map(({p}) => p.pid).join(" "));
const s0 = procs.map(({ p }) => statf(p.pid)); const f0 = frames, c0 = procs.map(({ p }) => schedNs(p.pid)), x0 = procs.map(({ p }) => ctx(p.pid)), o0 = outBytes;
await new Promise((r) => setTimeout(r, Number(S) * 1000));
const s1 = procs.map(({ p }) => statf(p.pid)); const f1 = frames, c1 = procs.map(({ p }) => schedNs(p.pid)), x1 = procs.map(({ p }) => ctx(p.pid));
const m = procs.map(({ p }) => roll(p.pid));
const dns = c1.reduce((a, b) => a + b, 0) - c0.reduce((a, b) => a + b, 0);
const fr = (f1 - f0) * procs.length;
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; };
console.log(JSON.stringify({ flags: flags.join(' ') || '(none)', n: procs.length, frames_each: f1 - f0, us_per_frame: Math.round(dns / fr / 1000), us_per_frame_med: Math.round(med(c1.map((c, i) => c - c0[i])) / (f1 - f0) / 1000), ctxsw_per_frame: +((x1.reduce((a, b) => a + b, 0) - x0.reduce((a, b) => a + b, 0)) / fr).toFixed(1), minflt_per_frame: +(s1.reduce((a, x, i) => a + x.minflt - s0[i].minflt, 0) / fr).toFixed(1), sys_share: +(s1.reduce((a, x, i) => a + x.stime - s0[i].stime, 0) / Math.max(1, s1.reduce((a, x, i) => a + x.utime + x.stime - s0[i].utime - s0[i].stime, 0))).toFixed(2), out_bytes_per_frame: Math.round((outBytes - o0) / fr), pss_kb: Math.round(m.reduce((a, x) => a + x.pss, 0) / m.length), priv_kb: Math.round(m.reduce((a, x) => a + x.priv, 0) / m.length) }));
clearInterval(t);
for (const s of socks) s.end();
if (process.env.GRACE) { for (const { p } of procs) p.kill('SIGTERM'); await new Promise((r) => setTimeout(r, 1500)); }
for (const { p } of procs) p.kill('SIGKILL');
process.exit(0);
