import { pino } from "pino";
import { describe, expect, test } from "vitest";
import { CENSOR, createLogger, redact, REDACT_PATHS, REDACTED_KEYS } from "./index.js";

type Line = Record<string, unknown>;

/** Our logger and pino configured with its own `redact` over REDACT_PATHS (the reference), both to memory. */
function pair() {
  const ours: string[] = [];
  const theirs: string[] = [];
  const log = createLogger({
    service: "svc",
    version: "1",
    level: "info",
    destination: { write: (chunk) => void ours.push(chunk) },
  });
  const reference = pino(
    {
      level: "info",
      base: { service: "svc", version: "1" },
      redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    },
    { write: (chunk: string) => void theirs.push(chunk) },
  );
  const parse = (chunks: string[]) =>
    chunks.map((c) => {
      const { time: _time, ...rest } = JSON.parse(c) as Line;
      return rest;
    });
  return { log, reference, lines: () => ({ ours: parse(ours), theirs: parse(theirs) }) };
}

/** A class instance with a secret field and an own enumerable getter of another. */
class Payload {
  declare readonly content: string;
  constructor(
    readonly token: string,
    readonly size: number,
  ) {
    Object.defineProperty(this, "content", { get: () => "a getter's secret", enumerable: true });
  }
}

function failure(): Error & Record<string, unknown> {
  const err = new Error("send failed") as Error & Record<string, unknown>;
  err.token = "t-in-error";
  err.code = "E1";
  return err;
}

/** Log lines with secrets in every place the rules cover, and in places they do not. */
const cases: Record<string, Line> = {
  plain: { messageId: "m1", status: 200, ms: 3, ok: true, nothing: null },
  topLevel: Object.fromEntries(REDACTED_KEYS.map((k, i) => [k, i % 2 === 0 ? `s-${k}` : { nested: k }])),
  oneDown: {
    body: Object.fromEntries(REDACTED_KEYS.map((k) => [k, `s-${k}`])),
    query: { token: "q", page: 2 },
  },
  nullAndNumbers: { token: null, body: { password: 7, secret: null, other: 1 } },
  headers: {
    req: { headers: { authorization: "Bearer r", host: "h" }, url: "/x" },
    headers: { authorization: "B" },
  },
  notDeeper: { body: { inner: { token: "two levels down stays" } }, list: [{ token: "in an array stays" }] },
  bytes: { data: new Uint8Array([1, 2, 3]), body: { content: new Uint8Array([4]) } },
  classInstance: { payload: new Payload("t-in-class", 12) },
  errorField: { err: failure() },
  otherErrorField: { cause: failure() },
};

describe("redact, against pino's own redact over REDACT_PATHS", () => {
  test.each(Object.entries(cases))("writes what pino's redact writes: %s", (_name, fields) => {
    const { log, reference, lines } = pair();
    log.info(fields, "line");
    reference.info(fields, "line");
    const { ours, theirs } = lines();
    expect(ours).toEqual(theirs);
    expect(JSON.stringify(ours)).not.toMatch(/s-(token|password|content|authorization|app_token)"/);
  });

  test("the same for an Error logged by itself, child bindings and interpolated objects", () => {
    const { log, reference, lines } = pair();
    for (const l of [log, reference]) {
      l.error(failure());
      l.child({ requestId: "r1", token: "in bindings", body: { secret: "s" } }).info(
        { content: "c" },
        "child",
      );
      l.info("interpolated %o and %j", { token: "t1", n: 1 }, { body: { password: "p" } });
      l.info({ k: 1 }, "after an object %o", { accessToken: "a" });
    }
    const { ours, theirs } = lines();
    expect(ours).toEqual(theirs);
    expect(JSON.stringify(ours)).not.toMatch(/in bindings|t-in-error|"t1"|"p"|"a"\b/);
  });

  test("the lines carry the censor where pino's would", () => {
    const { log, lines } = pair();
    log.info(cases.errorField ?? {}, "line");
    const [line] = lines().ours;
    expect(line?.err).toMatchObject({ type: "Error", message: "send failed", token: CENSOR, code: "E1" });
    expect((line?.err as Line).stack).toEqual(expect.stringContaining("send failed"));
  });
});

describe("redact", () => {
  test("changes none of the caller's objects and returns the object itself when nothing is censored", () => {
    const plain = { messageId: "m1", body: { size: 3 }, list: [{ token: "x" }] };
    expect(redact(plain)).toBe(plain);
    const err = failure();
    const payload = new Payload("t", 1);
    const fields = { token: "t", body: { password: "p", keep: 1 }, err, payload };
    const before = JSON.stringify(fields);
    const out = redact(fields);
    expect(JSON.stringify(fields)).toBe(before);
    expect(err.token).toBe("t-in-error");
    expect(payload.token).toBe("t");
    expect(out.body).toEqual({ password: CENSOR, keep: 1 });
    expect(out.err).toBeInstanceOf(Error);
    expect(out.err).not.toBe(err);
    expect(out.err.stack).toBe(err.stack);
    expect(out.payload).toBeInstanceOf(Payload);
    expect(out.payload.content).toBe(CENSOR);
    expect(out.payload.size).toBe(1);
  });

  test("leaves a line without object fields as it is, however many fields it has", () => {
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`f${i}`, i]));
    expect(redact(many)).toBe(many);
  });
});
