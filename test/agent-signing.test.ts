// Command signing: canonical JSON, Ed25519 sign/verify, the key file, and the documented recipe (docs/agents-signing.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { canonicalJson, signingInput, CommandSigner, verifyCommand, type SignedCommandFields } from '../src/agents/signing.js';

function withTempDir(fn: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radar-signing-'));
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const base: SignedCommandFields = {
  id: '5a1c9e4b-2f3d-4c8a-9b7e-1d2c3b4a5f60',
  type: 'deep-trace',
  target: 'agent:node-07',
  createdAt: 1767225600123,
  payload: { duration_ms: 30000, filters: { bands: ['vhf', 'uhf'], min_snr_db: 12.5 }, label: 'Süd ✓' },
};

// ---- canonicalJson ----------------------------------------------------------------------------

test('canonicalJson: sorts keys, no whitespace, arrays in order', () => {
  assert.equal(canonicalJson({ b: 1, a: 2, c: [3, 1, 2] }), '{"a":2,"b":1,"c":[3,1,2]}');
  assert.equal(canonicalJson([]), '[]');
  assert.equal(canonicalJson({}), '{}');
  assert.equal(canonicalJson(null), 'null');
  assert.equal(canonicalJson(true), 'true');
  assert.equal(canonicalJson('x'), '"x"');
  // Upper case sorts before lower case (code unit order, not locale order).
  assert.equal(canonicalJson({ b: 1, B: 2, a: 3, A: 4, '': 5, a0: 6 }), '{"":5,"A":4,"B":2,"a":3,"a0":6,"b":1}');
});

test('canonicalJson: nested objects are sorted recursively, including inside arrays', () => {
  const v = { z: { y: { x: 1, w: 2 }, v: [{ b: 1, a: 2 }, [{ d: 1, c: 2 }]] }, a: null };
  assert.equal(canonicalJson(v), '{"a":null,"z":{"v":[{"a":2,"b":1},[{"c":2,"d":1}]],"y":{"w":2,"x":1}}}');
});

test('canonicalJson: unicode strings and keys; keys in UTF-16 code unit order', () => {
  assert.equal(canonicalJson({ s: 'Süd ✓ 😀' }), '{"s":"Süd ✓ 😀"}');
  assert.equal(canonicalJson('\u0000\u001f\b\f\n\r\t"\\/\u2028'), JSON.stringify('\u0000\u001f\b\f\n\r\t"\\/\u2028'));
  assert.equal(canonicalJson('\ud800'), '"\\ud800"'); // lone surrogate escaped as JSON.stringify does
  // U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000 and U+FFFF in UTF-16 (unlike code point order).
  assert.equal(canonicalJson({ '\uffff': 1, '\ue000': 2, '😀': 3, 'é': 4, z: 5 }), '{"z":5,"é":4,"😀":3,"\ue000":2,"\uffff":1}');
});

test('canonicalJson: numbers print as JSON.stringify prints them', () => {
  for (const n of [0, -0, 1, -1, 12.5, 0.1, 1e-7, 0.000001, 1e21, 1e20, 2 ** 53, 5e-324, -1.7976931348623157e308]) {
    assert.equal(canonicalJson(n), JSON.stringify(n), String(n));
  }
  assert.equal(canonicalJson([1e21, 1e-7, -0]), '[1e+21,1e-7,0]');
});

test('canonicalJson: rejects NaN, Infinity, undefined, functions, bigint, symbols and cycles with TypeError', () => {
  for (const bad of [NaN, Infinity, -Infinity, undefined, () => 1, 10n, Symbol('s')]) {
    assert.throws(() => canonicalJson(bad), TypeError);
    assert.throws(() => canonicalJson({ a: bad }), TypeError);
    assert.throws(() => canonicalJson([1, bad]), TypeError);
    assert.throws(() => canonicalJson({ deep: { er: [bad] } }), TypeError);
  }
  const cyc: Record<string, unknown> = { a: 1 };
  cyc.self = cyc;
  assert.throws(() => canonicalJson(cyc), TypeError);
  const arr: unknown[] = [1];
  arr.push({ back: arr });
  assert.throws(() => canonicalJson(arr), TypeError);
  assert.throws(() => canonicalJson([1, , 3]), TypeError); // hole = undefined
  // A shared (non-cyclic) reference is fine.
  const shared = { k: 1 };
  assert.equal(canonicalJson({ a: shared, b: shared }), '{"a":{"k":1},"b":{"k":1}}');
});

test('canonicalJson: agrees with the form rebuilt from the transmitted JSON', () => {
  const v = { when: new Date(0), n: new Number(3), list: [{ b: 'x', a: [1.5, null, false] }], s: 'é\n' };
  assert.equal(canonicalJson(v), canonicalJson(JSON.parse(JSON.stringify(v))));
  assert.equal(canonicalJson(v), '{"list":[{"a":[1.5,null,false],"b":"x"}],"n":3,"s":"é\\n","when":"1970-01-01T00:00:00.000Z"}');
});

test('signingInput: canonical JSON of the five fields with created_at', () => {
  const s = signingInput({ id: 'i', type: 't', target: 'all', createdAt: 5, payload: { b: 2, a: 1 } }).toString('utf8');
  assert.equal(s, '{"created_at":5,"id":"i","payload":{"a":1,"b":2},"target":"all","type":"t"}');
  assert.ok(Buffer.isBuffer(signingInput(base)));
  assert.equal(signingInput(base).toString('utf8'), canonicalJson({ created_at: base.createdAt, id: base.id, payload: base.payload, target: base.target, type: base.type }));
});

// ---- sign / verify ------------------------------------------------------------------------------

test('sign/verify round trip with the raw base64 key and the SPKI PEM key', () => {
  const s = CommandSigner.generate();
  assert.equal(s.created, false);
  assert.match(s.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----\n?$/);
  assert.equal(Buffer.from(s.publicKeyBase64, 'base64').length, 32);
  const sig = s.sign(base);
  assert.equal(Buffer.from(sig, 'base64').length, 64);
  assert.equal(verifyCommand(s.publicKeyBase64, base, sig), true);
  assert.equal(verifyCommand(s.publicKeyPem, base, sig), true);
  // Ed25519 is deterministic.
  assert.equal(s.sign(base), sig);
  // Key order inside the payload does not matter; the canonical form is what is signed.
  const reordered = { ...base, payload: { label: 'Süd ✓', filters: { min_snr_db: 12.5, bands: ['vhf', 'uhf'] }, duration_ms: 30000 } };
  assert.equal(verifyCommand(s.publicKeyBase64, reordered, sig), true);
});

test('a signature fails after changing any one field, or under another key', () => {
  const s = CommandSigner.generate();
  const sig = s.sign(base);
  const variants: SignedCommandFields[] = [
    { ...base, id: base.id.replace(/0$/, '1') },
    { ...base, type: 'replay' },
    { ...base, target: 'agent:node-08' },
    { ...base, createdAt: base.createdAt + 1 },
    { ...base, payload: { duration_ms: 30000, filters: { bands: ['vhf', 'uhf'], min_snr_db: 12.6 }, label: 'Süd ✓' } },
    { ...base, payload: { duration_ms: 30000, filters: { bands: ['uhf', 'vhf'], min_snr_db: 12.5 }, label: 'Süd ✓' } },
    { ...base, payload: { duration_ms: 30000, filters: { bands: ['vhf', 'uhf'], min_snr_db: 12.5, extra: null }, label: 'Süd ✓' } },
    { ...base, payload: { duration_ms: 30000, filters: { bands: ['vhf', 'uhf'], min_snr_db: 12.5 }, label: 'Sud ✓' } },
    { ...base, payload: {} },
  ];
  for (const v of variants) {
    assert.equal(verifyCommand(s.publicKeyBase64, v, sig), false, JSON.stringify(v));
    assert.equal(verifyCommand(s.publicKeyPem, v, sig), false);
  }
  const other = CommandSigner.generate();
  assert.equal(verifyCommand(other.publicKeyBase64, base, sig), false);
  assert.equal(verifyCommand(other.publicKeyPem, base, sig), false);
  // A flipped bit in the signature.
  const bytes = Buffer.from(sig, 'base64');
  bytes[10]! ^= 1;
  assert.equal(verifyCommand(s.publicKeyBase64, base, bytes.toString('base64')), false);
});

test('verifyCommand returns false on malformed input and never throws', () => {
  const s = CommandSigner.generate();
  const sig = s.sign(base);
  const ecPem = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  for (const key of ['', 'abc', 'x'.repeat(10000), s.publicKeyBase64.slice(0, 20), `${s.publicKeyBase64}AAAA`, '-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----', ecPem]) {
    assert.equal(verifyCommand(key, base, sig), false, key.slice(0, 40));
  }
  for (const bad of ['', 'abc', sig.slice(0, 40), `${sig}AAAA`, '!'.repeat(88), 'x'.repeat(10000)]) {
    assert.equal(verifyCommand(s.publicKeyBase64, base, bad), false);
  }
  assert.equal(verifyCommand(s.publicKeyBase64, { ...base, payload: { n: NaN } }, sig), false);
  assert.equal(verifyCommand(s.publicKeyBase64, { ...base, payload: undefined }, sig), false);
  assert.equal(verifyCommand(undefined as unknown as string, base, sig), false);
  assert.equal(verifyCommand(s.publicKeyBase64, base, null as unknown as string), false);
  assert.throws(() => s.sign({ ...base, payload: { n: Infinity } }), TypeError);
});

// ---- the key file -------------------------------------------------------------------------------

test('loadOrCreate creates a 0600 key file (and its directory), then reloads the same key', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'nested', 'dir', 'agent-signing.pem');
    const a = CommandSigner.loadOrCreate(file);
    assert.equal(a.created, true);
    const st = fs.statSync(file);
    assert.ok(st.isFile());
    if (process.platform !== 'win32') assert.equal(st.mode & 0o777, 0o600);
    const pem = fs.readFileSync(file, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    const k = crypto.createPrivateKey(pem);
    assert.equal(k.asymmetricKeyType, 'ed25519');
    // No temporary files are left behind.
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['agent-signing.pem']);

    const b = CommandSigner.loadOrCreate(file);
    assert.equal(b.created, false);
    assert.equal(b.publicKeyBase64, a.publicKeyBase64);
    assert.equal(b.publicKeyPem, a.publicKeyPem);
    assert.equal(fs.readFileSync(file, 'utf8'), pem); // untouched
    const sig = a.sign(base);
    assert.equal(b.sign(base), sig);
    assert.equal(verifyCommand(b.publicKeyBase64, base, sig), true);
  });
});

test('loadOrCreate: a file that is not an Ed25519 private key throws an Error naming the path', () => {
  withTempDir((dir) => {
    const garbage = path.join(dir, 'garbage.pem');
    fs.writeFileSync(garbage, 'this is not a key\n');
    assert.throws(() => CommandSigner.loadOrCreate(garbage), (e: unknown) => e instanceof Error && e.message.includes(garbage));
    assert.equal(fs.readFileSync(garbage, 'utf8'), 'this is not a key\n'); // not overwritten

    const empty = path.join(dir, 'empty.pem');
    fs.writeFileSync(empty, '');
    assert.throws(() => CommandSigner.loadOrCreate(empty), (e: unknown) => e instanceof Error && e.message.includes(empty));

    const ec = path.join(dir, 'ec.pem');
    fs.writeFileSync(ec, crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    assert.throws(() => CommandSigner.loadOrCreate(ec), (e: unknown) => e instanceof Error && e.message.includes(ec) && /Ed25519/.test(e.message));

    const pub = path.join(dir, 'public.pem');
    fs.writeFileSync(pub, CommandSigner.generate().publicKeyPem);
    assert.throws(() => CommandSigner.loadOrCreate(pub), (e: unknown) => e instanceof Error && e.message.includes(pub));

    // A directory at the path is an error, not "absent".
    const d = path.join(dir, 'is-a-dir');
    fs.mkdirSync(d);
    assert.throws(() => CommandSigner.loadOrCreate(d), (e: unknown) => e instanceof Error && e.message.includes(d));
  });
});

test('deriveSecret: stable across loads of the same file, differs by label and by key', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'k.pem');
    const a = CommandSigner.loadOrCreate(file);
    const b = CommandSigner.loadOrCreate(file);
    const s1 = a.deriveSecret('radar-ingest agent access tokens v1');
    assert.equal(s1.length, 32);
    assert.deepEqual(b.deriveSecret('radar-ingest agent access tokens v1'), s1);
    assert.notDeepEqual(a.deriveSecret('another label'), s1);
    assert.notDeepEqual(CommandSigner.generate().deriveSecret('radar-ingest agent access tokens v1'), s1);
    // Documented recipe: HMAC-SHA256 keyed by the raw 32-byte private key.
    const raw = Buffer.from(crypto.createPrivateKey(fs.readFileSync(file, 'utf8')).export({ format: 'jwk' }).d as string, 'base64url');
    assert.deepEqual(s1, crypto.createHmac('sha256', raw).update('radar-ingest agent access tokens v1').digest());
  });
});

// ---- the documented example (docs/agents-signing.md), checked with node:crypto alone ----------

// RFC 8032 test vector 1 key pair: public, never use it for anything real.
const DOC_PRIVATE_PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n';
const DOC_PUBLIC_KEY = '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=';
const DOC_EVENT_DATA = '{"id":"0b7e3c52-9f1d-4a8e-b6c4-2d5f8a9e1c3b","type":"config-update","target":"group:north","created_at":1767225600000,"payload":{"thresholds":{"snr_db":12.5,"min_track_len":4},"Zone":"Süd","bands":["vhf","uhf"],"note":null},"signature":"CBD+stQyr6RYoclsWD1wrwB57TdgG0+OoZdQfKJIvXvwHyQMK+g9U4HM2s6UeRV995frGvneCe7SAawAlCW5Cg=="}';
const DOC_SIGNING_INPUT = '{"created_at":1767225600000,"id":"0b7e3c52-9f1d-4a8e-b6c4-2d5f8a9e1c3b","payload":{"Zone":"Süd","bands":["vhf","uhf"],"note":null,"thresholds":{"min_track_len":4,"snr_db":12.5}},"target":"group:north","type":"config-update"}';

test('documented example: verifiable with node:crypto primitives and the written recipe alone', () => {
  // What an agent in any language does: take serverPublicKey (raw 32 bytes, base64) and the event's data line,
  // build the canonical bytes by hand (the documented string), verify with plain Ed25519.
  const raw = Buffer.from(DOC_PUBLIC_KEY, 'base64');
  assert.equal(raw.length, 32);
  const publicKey = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const ev = JSON.parse(DOC_EVENT_DATA) as { signature: string };
  const bytes = Buffer.from(DOC_SIGNING_INPUT, 'utf8');
  assert.equal(crypto.verify(null, bytes, publicKey, Buffer.from(ev.signature, 'base64')), true);
  // Any change to the bytes breaks it.
  assert.equal(crypto.verify(null, Buffer.from(DOC_SIGNING_INPUT.replace('12.5', '12.6'), 'utf8'), publicKey, Buffer.from(ev.signature, 'base64')), false);
});

test('documented example: the engine produces exactly the documented bytes, key and signature', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'doc.pem');
    fs.writeFileSync(file, DOC_PRIVATE_PEM, { mode: 0o600 });
    const s = CommandSigner.loadOrCreate(file);
    assert.equal(s.created, false);
    assert.equal(s.publicKeyBase64, DOC_PUBLIC_KEY);
    const ev = JSON.parse(DOC_EVENT_DATA) as { id: string; type: string; target: string; created_at: number; payload: unknown; signature: string };
    const f: SignedCommandFields = { id: ev.id, type: ev.type, target: ev.target, createdAt: ev.created_at, payload: ev.payload };
    assert.equal(signingInput(f).toString('utf8'), DOC_SIGNING_INPUT);
    assert.equal(s.sign(f), ev.signature);
    assert.equal(verifyCommand(DOC_PUBLIC_KEY, f, ev.signature), true);
    // The event as the host serializes it (see CommandStore.eventData) round-trips to the same signed bytes.
    assert.equal(JSON.stringify({ id: f.id, type: f.type, target: f.target, created_at: f.createdAt, payload: f.payload, signature: ev.signature }), DOC_EVENT_DATA);
  });
});

test('a freshly generated key: hand-built canonical bytes verify with node:crypto alone', () => {
  const s = CommandSigner.generate();
  const f: SignedCommandFields = { id: 'c1', type: 'replay', target: 'all', createdAt: 1700000000000, payload: { to: 2, from: 1 } };
  const sig = s.sign(f);
  const bytes = Buffer.from('{"created_at":1700000000000,"id":"c1","payload":{"from":1,"to":2},"target":"all","type":"replay"}', 'utf8');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(s.publicKeyBase64, 'base64')]);
  const publicKey = crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
  assert.equal(crypto.verify(null, bytes, publicKey, Buffer.from(sig, 'base64')), true);
});
