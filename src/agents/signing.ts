// Ed25519 signatures on command events pushed to agents over SSE.
// The signed bytes are a canonical JSON form of the command fields (docs/agents-signing.md),
// so an agent can rebuild them from the event it parsed, in any language.
import {
  createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes,
  sign as cryptoSign, verify as cryptoVerify, type KeyObject,
} from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface SignedCommandFields {
  id: string; type: string; target: string; createdAt: number; payload: unknown;
  /** canonicalJson(payload), when the caller already has it (one broadcast, many commands). */
  canonicalPayload?: string;
}

/**
 * Canonical JSON: object keys sorted by UTF-16 code unit order recursively, no whitespace, arrays in order;
 * strings and finite numbers as JSON.stringify prints them; throws TypeError on undefined, functions,
 * bigint, non-finite numbers, or cycles.
 *
 * Like JSON.stringify, a `toJSON` method is honoured and only own enumerable string keys are written, so
 * for any accepted value the result equals the canonical form of JSON.parse(JSON.stringify(v)) — which is
 * what an agent rebuilds from the event it receives. Symbols are rejected too.
 */
export function canonicalJson(v: unknown): string {
  const out: string[] = [];
  write(v, '', out, []);
  return out.join('');
}

function write(v: unknown, key: string, out: string[], stack: object[]): void {
  if (v !== null && (typeof v === 'object' || typeof v === 'bigint')) {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') v = (toJSON as (k: string) => unknown).call(v, key);
  }
  // Boxed primitives print as their primitive value (as in JSON.stringify).
  if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
  switch (typeof v) {
    case 'string':
      out.push(JSON.stringify(v));
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonicalJson: non-finite number ${String(v)}`);
      out.push(JSON.stringify(v));
      return;
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return;
    case 'undefined':
    case 'function':
    case 'symbol':
    case 'bigint':
      throw new TypeError(`canonicalJson: cannot encode ${typeof v}${key === '' ? '' : ` at key ${JSON.stringify(key)}`}`);
    case 'object':
      break;
  }
  if (v === null) {
    out.push('null');
    return;
  }
  const obj = v as object;
  if (stack.includes(obj)) throw new TypeError('canonicalJson: cyclic structure');
  stack.push(obj);
  if (Array.isArray(obj)) {
    out.push('[');
    for (let i = 0; i < obj.length; i++) {
      if (i > 0) out.push(',');
      write(obj[i], String(i), out, stack);
    }
    out.push(']');
  } else {
    // Default sort compares UTF-16 code units, which is the documented order.
    const keys = Object.keys(obj).sort();
    out.push('{');
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (i > 0) out.push(',');
      out.push(JSON.stringify(k), ':');
      write((obj as Record<string, unknown>)[k], k, out, stack);
    }
    out.push('}');
  }
  stack.pop();
}

/** The exact bytes that are signed: UTF-8 of canonicalJson({created_at: createdAt, id, payload, target, type}). */
export function signingInput(f: SignedCommandFields): Buffer {
  if (f.canonicalPayload === undefined) {
    return Buffer.from(canonicalJson({ created_at: f.createdAt, id: f.id, payload: f.payload, target: f.target, type: f.type }), 'utf8');
  }
  // The same bytes with the payload's canonical form spliced in (keys in sorted order).
  const head = canonicalJson({ created_at: f.createdAt, id: f.id });
  const tail = canonicalJson({ target: f.target, type: f.type });
  return Buffer.from(`${head.slice(0, -1)},"payload":${f.canonicalPayload},${tail.slice(1)}`, 'utf8');
}

/** DER prefix of an SPKI Ed25519 public key; the raw 32-byte key follows it. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const B64_32 = /^[A-Za-z0-9+/]{43}=?$/;
const B64_64 = /^[A-Za-z0-9+/]{86}(==)?$/;

function rawPublicKey(k: KeyObject): Buffer {
  const x = k.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new Error('Ed25519 public key export failed');
  return Buffer.from(x, 'base64url');
}

function rawPrivateKey(k: KeyObject): Buffer {
  const d = k.export({ format: 'jwk' }).d;
  if (typeof d !== 'string') throw new Error('Ed25519 private key export failed');
  return Buffer.from(d, 'base64url');
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? (e as { code?: string }).code : undefined;
}

export class CommandSigner {
  readonly publicKeyPem: string;
  readonly publicKeyBase64: string;
  readonly created: boolean;
  readonly #privateKey: KeyObject;
  readonly #privateRaw: Buffer;

  private constructor(privateKey: KeyObject, created: boolean) {
    this.#privateKey = privateKey;
    this.#privateRaw = rawPrivateKey(privateKey);
    const pub = createPublicKey(privateKey);
    this.publicKeyPem = pub.export({ type: 'spki', format: 'pem' }).toString();
    this.publicKeyBase64 = rawPublicKey(pub).toString('base64');
    this.created = created;
  }

  /**
   * Reads a PKCS#8 PEM Ed25519 private key from `path`; if the file does not exist, generates one and writes it
   * with mode 0o600 (creating the parent directory), atomically (temp file, then hard link / rename into place).
   * A file that exists but is not an Ed25519 private key throws an Error naming the path.
   */
  static loadOrCreate(path: string): CommandSigner {
    const existing = CommandSigner.#tryLoad(path);
    if (existing) return existing;

    const key = generateKeyPairSync('ed25519').privateKey;
    const pem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
    const dir = dirname(path);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new Error(`signing key ${path}: cannot create directory ${dir}: ${(e as Error).message}`);
    }
    const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const fd = openSync(tmp, 'wx', 0o600);
      try {
        fchmodSync(fd, 0o600); // independent of the umask
        writeSync(fd, pem);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      // link() never replaces an existing file: if another process created the key meanwhile, use theirs.
      try {
        linkSync(tmp, path);
        unlinkSync(tmp);
      } catch (e) {
        if (errCode(e) === 'EEXIST') {
          unlinkSync(tmp);
          const theirs = CommandSigner.#tryLoad(path);
          if (theirs) return theirs;
          throw new Error(`signing key ${path}: vanished while being created`);
        }
        renameSync(tmp, path); // file systems without hard links
      }
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* already gone */ }
      throw new Error(`signing key ${path}: cannot write: ${(e as Error).message}`);
    }
    return new CommandSigner(key, true);
  }

  /** Undefined when the file does not exist; throws (naming the path) when it is unreadable or not an Ed25519 key. */
  static #tryLoad(path: string): CommandSigner | undefined {
    let pem: string;
    try {
      pem = readFileSync(path, 'utf8');
    } catch (e) {
      if (errCode(e) === 'ENOENT') return undefined;
      throw new Error(`signing key ${path}: cannot read: ${(e as Error).message}`);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch {
      throw new Error(`signing key ${path}: not a PEM private key (expected a PKCS#8 Ed25519 key)`);
    }
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new Error(`signing key ${path}: expected an Ed25519 private key, found ${key.asymmetricKeyType ?? 'unknown type'}`);
    }
    return new CommandSigner(key, false);
  }

  /** In memory (tests). */
  static generate(): CommandSigner {
    return new CommandSigner(generateKeyPairSync('ed25519').privateKey, false);
  }

  /** Base64 Ed25519 signature of signingInput(f). */
  sign(f: SignedCommandFields): string {
    return cryptoSign(null, signingInput(f), this.#privateKey).toString('base64');
  }

  /** Stable secret for other HMAC uses: HMAC-SHA256(privateKeyRaw, label). Same key file => same secret across restarts. */
  deriveSecret(label: string): Buffer {
    return createHmac('sha256', this.#privateRaw).update(label, 'utf8').digest();
  }
}

/** Accepts a public key as SPKI PEM or raw base64; false on any malformed input (never throws). */
export function verifyCommand(publicKey: string, f: SignedCommandFields, signatureBase64: string): boolean {
  try {
    if (typeof publicKey !== 'string' || typeof signatureBase64 !== 'string' || !B64_64.test(signatureBase64)) return false;
    let key: KeyObject;
    if (publicKey.includes('-----BEGIN')) {
      key = createPublicKey({ key: publicKey, format: 'pem' });
    } else {
      const raw = publicKey.trim();
      if (!B64_32.test(raw)) return false;
      key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(raw, 'base64')]), format: 'der', type: 'spki' });
    }
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return cryptoVerify(null, signingInput(f), key, Buffer.from(signatureBase64, 'base64'));
  } catch {
    return false;
  }
}
