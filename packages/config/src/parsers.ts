/** The outcome of parsing one raw value: the value, or a problem that never echoes a secret. */
export type ParseResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

/**
 * How to read one environment variable; build these with `str`, `int`, `port`, `bool`, `url`,
 * `enumOf` or `secret` and compose them into a spec for `parseEnv`. An empty value counts as unset.
 */
export interface EnvVar<T> {
  /** Converts a non-empty raw value, or describes why it is invalid. */
  readonly parse: (raw: string) => ParseResult<T>;
  /** The value used when the variable is unset or empty; `undefined` makes the variable required. */
  readonly fallback: { readonly value: T } | undefined;
}

/** Options of `str`. */
export interface StrOptions {
  /** Used when the variable is unset or empty. */
  default?: string;
  /** When true, an unset variable yields `undefined` instead of a problem. */
  optional?: boolean;
}

/** Options of `int`. */
export interface IntOptions {
  /** Smallest accepted value, inclusive. */
  min?: number;
  /** Largest accepted value, inclusive. */
  max?: number;
  /** Used when the variable is unset or empty; not range-checked. */
  default?: number;
  /** When true, an unset variable yields `undefined` instead of a problem. */
  optional?: boolean;
}

/** Options of `url`. */
export interface UrlOptions {
  /** Accepted schemes with their colon, e.g. `["redis:", "rediss:"]`; any scheme when omitted. */
  protocols?: readonly string[];
  /** Used when the variable is unset or empty. */
  default?: string;
  /** When true, an unset variable yields `undefined` instead of a problem. */
  optional?: boolean;
}

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });

const invalid = (expected: string, got: string): ParseResult<never> => ({
  ok: false,
  problem: `expected ${expected}, got ${JSON.stringify(got)}`,
});

function fallbackOf<T>(options: { default?: T; optional?: boolean }): EnvVar<T | undefined>["fallback"] {
  if (options.default !== undefined) return { value: options.default };
  return options.optional === true ? { value: undefined } : undefined;
}

/** A required string variable. */
export function str(options?: { default?: undefined; optional?: false }): EnvVar<string>;
/** A string variable that falls back to `default` when unset. */
export function str(options: StrOptions & { default: string }): EnvVar<string>;
/** A string variable that may be unset. */
export function str(options: StrOptions): EnvVar<string | undefined>;
export function str(options: StrOptions = {}): EnvVar<string | undefined> {
  return { parse: ok, fallback: fallbackOf(options) };
}

/** A required secret string (key, token, password). It has no default, and problems never show its value. */
export function secret(): EnvVar<string> {
  return { parse: ok, fallback: undefined };
}

/** A required decimal integer, optionally within `min..max`. */
export function int(
  options?: Omit<IntOptions, "default" | "optional"> & { optional?: false },
): EnvVar<number>;
/** A decimal integer that falls back to `default` when unset. */
export function int(options: IntOptions & { default: number }): EnvVar<number>;
/** A decimal integer that may be unset. */
export function int(options: IntOptions): EnvVar<number | undefined>;
export function int(options: IntOptions = {}): EnvVar<number | undefined> {
  const { min, max } = options;
  let expected = "an integer";
  if (min !== undefined && max !== undefined) expected += ` ${min}..${max}`;
  else if (min !== undefined) expected += ` >= ${min}`;
  else if (max !== undefined) expected += ` <= ${max}`;
  return {
    parse: (raw) => {
      const value = Number(raw);
      const valid =
        /^[+-]?\d+$/.test(raw) &&
        Number.isSafeInteger(value) &&
        (min === undefined || value >= min) &&
        (max === undefined || value <= max);
      return valid ? ok(value) : invalid(expected, raw);
    },
    fallback: fallbackOf(options),
  };
}

/** A TCP port 0..65535 (0 asks the OS for a free one); required unless `defaultPort` is given. */
export function port(defaultPort?: number): EnvVar<number> {
  const parser = int({ min: 0, max: 65535 });
  return { parse: parser.parse, fallback: defaultPort === undefined ? undefined : { value: defaultPort } };
}

const BOOLEANS: Readonly<Record<string, boolean>> = {
  true: true,
  false: false,
  1: true,
  0: false,
  yes: true,
  no: false,
};

/** A boolean written as true/false, 1/0 or yes/no (case-insensitive); required unless `default` is given. */
export function bool(options: { default?: boolean } = {}): EnvVar<boolean> {
  return {
    parse: (raw) => {
      const value = BOOLEANS[raw.toLowerCase()];
      return value === undefined ? invalid("one of true, false, 1, 0, yes, no", raw) : ok(value);
    },
    fallback: options.default === undefined ? undefined : { value: options.default },
  };
}

/** Hides everything before the last `@` after the scheme, so connection-string passwords stay out of problems. */
function maskCredentials(raw: string): string {
  const at = raw.lastIndexOf("@");
  if (at === -1) return raw;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(raw)?.[0] ?? "";
  return `${scheme}***${raw.slice(at)}`;
}

/** A required absolute URL, kept as the original string. */
export function url(
  options?: Omit<UrlOptions, "default" | "optional"> & { optional?: false },
): EnvVar<string>;
/** An absolute URL that falls back to `default` when unset. */
export function url(options: UrlOptions & { default: string }): EnvVar<string>;
/** An absolute URL that may be unset. */
export function url(options: UrlOptions): EnvVar<string | undefined>;
export function url(options: UrlOptions = {}): EnvVar<string | undefined> {
  const protocols = options.protocols?.map((p) => (p.endsWith(":") ? p : `${p}:`));
  const expected = protocols === undefined ? "a URL" : `a URL with protocol ${protocols.join(" or ")}`;
  return {
    parse: (raw) => {
      // URL.canParse rather than URL.parse: the latter is missing before Node 20.18 (engines say >=20.11).
      const valid =
        URL.canParse(raw) && (protocols === undefined || protocols.includes(new URL(raw).protocol));
      return valid ? ok(raw) : invalid(expected, maskCredentials(raw));
    },
    fallback: fallbackOf(options),
  };
}

/** One of a fixed set of strings (case-sensitive); required unless `default` is given. */
export function enumOf<const V extends readonly [string, ...string[]]>(
  values: V,
  options: { default?: V[number] } = {},
): EnvVar<V[number]> {
  const allowed: readonly string[] = values;
  return {
    parse: (raw) =>
      allowed.includes(raw) ? ok(raw as V[number]) : invalid(`one of ${values.join(", ")}`, raw),
    fallback: options.default === undefined ? undefined : { value: options.default },
  };
}
