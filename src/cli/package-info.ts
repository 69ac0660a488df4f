// The installed package: its version (--version) and where its docs are (--help).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: this file runs as dist/src/cli/package-info.js. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export const VERSION = readVersion();

/** A file of the package's documentation, as an absolute path an operator can open. */
export function docPath(relative: string): string {
  return join(PACKAGE_ROOT, relative);
}
