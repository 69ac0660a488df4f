// Footprint of the built-in tracker: spawns N reference trackers (with the given node flags), feeds each a 10-detection frame every RATE_MS (default 500 = 2 Hz) over TCP, and prints the average PSS / Private / RSS (KiB, /proc/<pid>/smaps_rollup) and CPU after SECONDS.
// usage (after a build): node bench/scripts/tracker-footprint.mjs N SECONDS [node flags...]   env: JS (tracker file), RATE_MS, PORT_OFF (ports 31000+PORT_OFF+i)
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
const [N, S, ...flags] = process.argv.slice(2);
const js = process.env.JS ?? new URL('../../dist/src/tracker/reference-tracker.js', import.meta.url).pathname;
const procs = [];
const roll = (pid) => { const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'); const g = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)[1]); return { pss: g('Pss'), rss: g('Rss'), priv: g('Private_Dirty') + g('Private_Clean') }; };
for (let i = 0; i < Number(N); i++) {
  const port = 31000 + i + Number(process.env.PORT_OFF ?? 0);
  const p = spawn(process.execPath, [...flags, js, '--exit-with-stdin', '--id-prefix', '1.1', '--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', String(port), '-s', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  p.stdout.resume(); p.stderr.resume();
  procs.push({ p, port });
}
await new Promise((r) => setTimeout(r, 1500));
let ts = 1757400000000, cpu0 = 0;
const socks = procs.map(({ port }) => connect(port, '127.0.0.1'));
for (const s of socks) s.on('error', () => {});
const det = (n, v) => Array.from({ length: n }, (_, i) => v + i * 3.1);
let k = 0;
const t = setInterval(() => { ts += 500; k++; const line = JSON.stringify({ timestamp: ts, delay: det(10, 10 + k * 0.01), doppler: det(10, 50), snr: det(10, 12) }) + '\n'; for (const s of socks) s.write(line); }, Number(process.env.RATE_MS ?? 500));
const cpu = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
await new Promise((r) => setTimeout(r, 3000));
const c0 = procs.map(({ p }) => cpu(p.pid));
await new Promise((r) => setTimeout(r, Number(S) * 1000));
const c1 = procs.map(({ p }) => cpu(p.pid));
const m = procs.map(({ p }) => roll(p.pid));
const avg = (k) => Math.round(m.reduce((a, x) => a + x[k], 0) / m.length);
const cpuPct = ((c1.reduce((a, b) => a + b, 0) - c0.reduce((a, b) => a + b, 0)) / procs.length) / Number(S); // ticks/s = % of core
console.log(JSON.stringify({ flags: flags.join(' ') || '(none)', n: procs.length, pss_kb: avg('pss'), priv_kb: avg('priv'), rss_kb: avg('rss'), cpu_pct_of_core: Math.round(cpuPct * 100) / 100 }));
clearInterval(t);
for (const s of socks) s.destroy();
for (const { p } of procs) p.kill('SIGKILL');
process.exit(0);
