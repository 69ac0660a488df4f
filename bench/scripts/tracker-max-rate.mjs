// Max frames/s of one built-in tracker: sends FRAMES 10-detection frames at once over TCP, closes its side and times until the tracker's EOF report (every frame handled, its events written to a pipe that is read).
// usage (after a build): node bench/scripts/tracker-max-rate.mjs FRAMES [node flags...]   (--max-semi-space-size=1 is always given, as the engine does)
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
const [K, ...flags] = process.argv.slice(2);
const js = process.env.JS ?? new URL('../../dist/src/tracker/reference-tracker.js', import.meta.url).pathname;
const p = spawn(process.execPath, ['--max-semi-space-size=1', ...flags, js, '--exit-with-stdin', '--id-prefix', '1.1', '--tcp', '--tcp-host', '127.0.0.1', '--tcp-port', '0', '-s', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
let outBytes = 0; p.stdout.on('data', (d) => (outBytes += d.length));
const port = await new Promise((res) => { let e = ''; p.stderr.on('data', (d) => { e += d; const m = /listening on [\d.]+:(\d+)/.exec(e); if (m) res(Number(m[1])); }); });
const det = (n, v) => Array.from({ length: n }, (_, i) => Math.round((v + i * 3.1) * 1000) / 1000);
let ts = 1757400000000; const lines = [];
for (let k = 0; k < Number(K); k++) { ts += 500; lines.push(JSON.stringify({ timestamp: ts, delay: det(10, 10 + k * 0.01), doppler: det(10, 50), snr: det(10, 12) }) + '\n'); }
const data = lines.join('');
const s = connect(port, '127.0.0.1');
await new Promise((r) => s.once('connect', r));
const t0 = process.hrtime.bigint();
s.end(data);
let got = '';
await new Promise((r) => s.on('data', (d) => { got += d; if (got.includes('EOF')) r(); }));
const dt = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ flags: flags.join(' ') || '(none)', frames: Number(K), s: +dt.toFixed(2), fps: Math.round(Number(K) / dt), out_mb: +(outBytes / 2 ** 20).toFixed(1) }));
p.kill('SIGKILL'); process.exit(0);
