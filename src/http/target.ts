// Request targets and path patterns, as pure functions: nothing here throws,
// whatever bytes a client put in the request line.

const BASE = 'http://localhost';

/**
 * The URL of a request target, or null when it is not one a server answers:
 * origin-form ("/path?query", never read as "//host/..."), or absolute-form
 * ("http://host/path", whose path is used). Anything else (authority-form,
 * "*", a target that does not parse) is null.
 */
export function parseTarget(target: string): URL | null {
  try {
    if (target.startsWith('/')) {
      const q = target.indexOf('?');
      return validPath(q < 0 ? target : target.slice(0, q)) ? new URL(BASE + target) : null;
    }
    if (/^https?:\/\//i.test(target)) {
      const u = new URL(target);
      return validPath(u.pathname) ? new URL(BASE + u.pathname + u.search) : null;
    }
    return null;
  } catch {
    return null;
  }
}

/**
 * RFC 3986 path-absolute: "/" and segments of unreserved, sub-delims, ":", "@" and
 * percent escapes; no empty first segment ("//x" would name a host).
 */
const PATH_ABSOLUTE = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)*$|^\/$/;

function validPath(p: string): boolean {
  return p.length <= 8192 && PATH_ABSOLUTE.test(p);
}

/** Literal segments count most: "/agents/register" owns "register" before "/agents/{id}" does. */
export function patternRank(pattern: string): number {
  let literal = 0;
  for (const seg of pattern.split('/')) if (seg !== '' && !isParam(seg)) literal++;
  return literal;
}

function isParam(seg: string): boolean {
  return seg.length > 2 && seg.startsWith('{') && seg.endsWith('}');
}

/**
 * Matches a pathname against "/a/{name}/b". A `{name}` is one non-empty segment,
 * percent-decoded. Null: no match; 'malformed': it would match but an escape is bad.
 */
export function matchPattern(pattern: string, pathname: string): Record<string, string> | null | 'malformed' {
  const want = pattern.split('/');
  const have = pathname.split('/');
  // A trailing slash is tolerated ("/api/v1/agents/" is the list).
  if (have.length === want.length + 1 && have[have.length - 1] === '') have.pop();
  if (have.length !== want.length) return null;
  const params: Record<string, string> = {};
  let malformed = false;
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const h = have[i]!;
    if (isParam(w)) {
      if (h === '') return null;
      try {
        params[w.slice(1, -1)] = decodeURIComponent(h);
      } catch {
        malformed = true;
      }
    } else if (w !== h) {
      return null;
    }
  }
  return malformed ? 'malformed' : params;
}
