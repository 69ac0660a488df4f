// Test certificates made with the openssl command in a temp dir: a CA, a server
// certificate for 127.0.0.1/localhost, client certificates (CN = node id), and a
// second CA whose client certificate the host must refuse.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function haveOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

export interface Pem {
  cert: Buffer;
  key: Buffer;
  certFile: string;
  keyFile: string;
}

export interface TestCerts {
  dir: string;
  ca: Pem;
  server: Pem;
  /** Client certificates signed by `ca`, by CN. */
  clients: Record<string, Pem>;
  /** CN=node-a, signed by another CA. */
  foreign: Pem;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function pem(dir: string, name: string): Pem {
  return {
    cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)),
    certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`),
  };
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`]);
}

function makeLeaf(dir: string, name: string, subject: string, ca: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
}

export function makeCerts(clientCns: string[] = ['node-a']): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'radar-ingest-certs-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeLeaf(dir, 'server', '/CN=localhost', 'ca',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const clients: Record<string, Pem> = {};
  for (const cn of clientCns) {
    makeLeaf(dir, `client-${cn}`, `/CN=${cn}`, 'ca', 'extendedKeyUsage=clientAuth\n');
    clients[cn] = pem(dir, `client-${cn}`);
  }
  makeLeaf(dir, 'foreign', '/CN=node-a', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  return {
    dir, ca: pem(dir, 'ca'), server: pem(dir, 'server'), clients, foreign: pem(dir, 'foreign'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
