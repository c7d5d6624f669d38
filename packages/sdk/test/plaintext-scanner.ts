// Looks for secret markers in whatever a server stored or sent: text, bytes (read as UTF-8,
// Latin-1 and UTF-16), JSON, and the hex and base64 spellings of a marker.

/** One spelling of a marker to look for. */
interface Needle {
  marker: string;
  text: string;
  /** Compare case-insensitively (hex). */
  folded: boolean;
}

/** A marker found somewhere: where, in which decoding, and which spelling matched. */
export interface Finding {
  marker: string;
  where: string;
  decoding: string;
  needle: string;
}

/**
 * The spellings of `marker` that count as a leak: the marker, every substring of
 * `substringLength` characters, its hex, and its base64 / base64url at all three alignments
 * (minus the characters that depend on the neighbouring bytes).
 */
function needlesFor(marker: string, substringLength: number): Needle[] {
  const needles = new Set<string>([marker]);
  for (let i = 0; i + substringLength <= marker.length; i++)
    needles.add(marker.slice(i, i + substringLength));
  const out: Needle[] = [...needles].map((text) => ({ marker, text, folded: false }));
  out.push({ marker, text: Buffer.from(marker).toString("hex"), folded: true });
  for (let skip = 0; skip < 3; skip++) {
    const bytes = Buffer.from(marker.slice(skip));
    for (const encoding of ["base64", "base64url"] as const) {
      const core = bytes.toString(encoding).replace(/=+$/, "").slice(0, -4);
      if (core.length >= substringLength) out.push({ marker, text: core, folded: false });
    }
  }
  return out;
}

/** Scans values for markers; every hit is kept in `findings` (once per marker and place). */
export class PlaintextScanner {
  readonly findings: Finding[] = [];
  /** How much was looked at, so a test can tell the scan really ran. */
  readonly scanned = { values: 0, bytes: 0 };
  private readonly needles: Needle[];
  private readonly seen = new Set<string>();

  constructor(markers: string[], substringLength = 8) {
    this.needles = markers.flatMap((m) => needlesFor(m, substringLength));
  }

  /** Scans one value: strings, numbers, bytes, arrays and objects (keys and values), recursively. */
  scan(where: string, value: unknown): void {
    if (value === null || value === undefined) return;
    this.scanned.values++;
    if (value instanceof Uint8Array) {
      const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      this.scanned.bytes += bytes.length;
      this.check(where, "utf8", bytes.toString("utf8"));
      this.check(where, "latin1", bytes.toString("latin1"));
      this.check(where, "utf16le", bytes.toString("utf16le"));
      if (bytes.length > 1) this.check(where, "utf16le+1", bytes.subarray(1).toString("utf16le"));
      return;
    }
    if (typeof value === "string") {
      this.scanned.bytes += value.length;
      this.check(where, "text", value);
      return;
    }
    if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
      this.check(where, "text", String(value));
      return;
    }
    if (value instanceof Date) return;
    if (Array.isArray(value)) {
      value.forEach((item: unknown, i) => this.scan(`${where}[${i}]`, item));
      return;
    }
    if (typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        this.check(`${where}.${key}`, "key", key);
        this.scan(`${where}.${key}`, item);
      }
      return;
    }
    throw new Error(`cannot scan a ${typeof value} at ${where}`);
  }

  /** The findings of these markers only. */
  findingsOf(markers: string[]): Finding[] {
    return this.findings.filter((f) => markers.includes(f.marker));
  }

  private check(where: string, decoding: string, haystack: string): void {
    let lower: string | undefined;
    for (const needle of this.needles) {
      const found = needle.folded
        ? (lower ??= haystack.toLowerCase()).includes(needle.text)
        : haystack.includes(needle.text);
      if (!found) continue;
      const key = `${needle.marker}|${where}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      this.findings.push({ marker: needle.marker, where, decoding, needle: needle.text });
    }
  }
}
