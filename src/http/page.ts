// ?limit=&cursor= for list endpoints: a default and a maximum page, an opaque cursor.
const DEFAULT_PAGE_LIMIT = 100;
const MAX_PAGE_LIMIT = 1000;

export type PageQuery = { ok: true; limit: number; cursor: string | null } | { ok: false; path: string; error: string };

export function parsePageQuery(url: URL): PageQuery {
  const l = url.searchParams.get('limit');
  let limit = DEFAULT_PAGE_LIMIT;
  if (l !== null) {
    if (!/^[0-9]{1,7}$/.test(l) || Number(l) < 1 || Number(l) > MAX_PAGE_LIMIT) {
      return { ok: false, path: 'limit', error: `limit must be an integer between 1 and ${MAX_PAGE_LIMIT}` };
    }
    limit = Number(l);
  }
  const c = url.searchParams.get('cursor');
  if (c === null || c === '') return { ok: true, limit, cursor: null };
  const decoded = decodeCursor(c);
  if (decoded === null) return { ok: false, path: 'cursor', error: 'cursor is not one this server gave out' };
  return { ok: true, limit, cursor: decoded };
}

export function encodeCursor(s: string): string {
  return Buffer.from(`c1:${s}`, 'utf8').toString('base64url');
}

function decodeCursor(c: string): string | null {
  if (c.length > 256 || !/^[A-Za-z0-9_-]+$/.test(c)) return null;
  const s = Buffer.from(c, 'base64url').toString('utf8');
  return s.startsWith('c1:') ? s.slice(3) : null;
}
