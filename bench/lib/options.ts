// Command-line options: each workload declares one typed table (flag -> default,
// validation, help); one parser turns `--flag value` arguments into that type.

export interface Opt<V> {
  help: string;
  /** Shown in the usage, e.g. "10" or "line,binary". */
  shown: string;
  boolean?: true;
  parse(raw: string | undefined, flag: string): V;
}

export type OptTable = Record<string, Opt<unknown>>;
export type OptValues<T extends OptTable> = { [K in keyof T]: T[K] extends Opt<infer V> ? V : never };

function toNumber(raw: string, flag: string, min: number): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min) throw new Error(`--${flag}: expected a number >= ${min}, got ${raw}`);
  return n;
}

/** A number (default `def`, at least `min`). */
export const num = (def: number, help: string, min = 0): Opt<number> => ({
  help, shown: String(def), parse: (raw, flag) => (raw === undefined ? def : toNumber(raw, flag, min)),
});

/** A number with no default (undefined when not given). */
export const optNum = (help: string, min = 0): Opt<number | undefined> => ({
  help, shown: '-', parse: (raw, flag) => (raw === undefined ? undefined : toNumber(raw, flag, min)),
});

/** A comma-separated list of numbers. */
export const nums = (def: number[], help: string): Opt<number[]> => ({
  help, shown: def.join(','), parse: (raw, flag) => (raw === undefined ? def : raw.split(',').map((x) => toNumber(x, flag, 0))),
});

/** One of `choices` (any string when `choices` is empty; a pattern as a RegExp). */
export function str<C extends string>(def: C, help: string, choices: readonly C[] | RegExp = []): Opt<C> {
  return { help, shown: def === '' ? '-' : def, parse: (raw, flag) => (raw === undefined ? def : checked(raw, flag, choices) as C) };
}

/** A comma-separated list of `choices` (or of values matching a RegExp). */
export function list<C extends string>(def: C[], help: string, choices: readonly C[] | RegExp = []): Opt<C[]> {
  return {
    help, shown: def.join(','),
    parse: (raw, flag) => (raw === undefined ? def : raw.split(',').filter((x) => x !== '').map((x) => checked(x, flag, choices) as C)),
  };
}

export const flag = (help: string): Opt<boolean> => ({ help, shown: 'off', boolean: true, parse: (raw) => raw !== undefined });

function checked(v: string, flag: string, choices: readonly string[] | RegExp): string {
  const ok = choices instanceof RegExp ? choices.test(v) : choices.length === 0 || choices.includes(v);
  if (!ok) throw new Error(`--${flag}: unknown value ${v} (${choices instanceof RegExp ? choices.source : choices.join(', ')})`);
  return v;
}

const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Parses `--flag value` / `--flag=value` / `--switch` arguments against the table; unknown flags are errors. */
export function parseOptions<T extends OptTable>(table: T, argv: string[]): OptValues<T> {
  const byFlag = new Map(Object.keys(table).map((k) => [kebab(k), k]));
  const raw = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    const key = m ? byFlag.get(m[1]!) : undefined;
    if (!m || key === undefined) throw new Error(`unknown argument ${a}`);
    if (table[key]!.boolean) raw.set(key, m[2] ?? 'true');
    else if (m[2] !== undefined) raw.set(key, m[2]);
    else if (i + 1 < argv.length) raw.set(key, argv[++i]!);
    else throw new Error(`--${m[1]}: missing value`);
  }
  return Object.fromEntries(Object.entries(table).map(([k, o]) => [k, o.parse(raw.get(k), kebab(k))])) as OptValues<T>;
}

/** The usage lines of a table. */
export function usage(table: OptTable): string {
  return Object.entries(table).map(([k, o]) => `  --${kebab(k)}${o.boolean ? '' : ' X'}`.padEnd(24) + ` ${o.help} (default ${o.shown})`).join('\n');
}

/** A workload behind `npm run bench -- <name>`: its options table and what it runs. */
export interface Workload<T extends OptTable = OptTable> {
  about: string;
  options: T;
  run(o: OptValues<T>): Promise<void>;
}

export const defineWorkload = <T extends OptTable>(w: Workload<T>): Workload<T> => w;

/** Every workload: whether to save bench/results/<workload>-latest.json. */
export const SAVE_OPTION = { noSave: flag('do not write bench/results/') };
