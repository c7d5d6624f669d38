import { describe, expect, test } from "vitest";
import { bool, enumOf, int, port, secret, str, url } from "./index.js";
import type { EnvVar, ParseResult } from "./index.js";

const parse = <T>(parser: EnvVar<T>, raw: string): ParseResult<T> => parser.parse(raw);

describe("str", () => {
  test("accepts any value and is required by default", () => {
    expect(parse(str(), "hello world")).toEqual({ ok: true, value: "hello world" });
    expect(str().fallback).toBeUndefined();
  });

  test("falls back to its default or to undefined when optional", () => {
    expect(str({ default: "x" }).fallback).toEqual({ value: "x" });
    expect(str({ optional: true }).fallback).toEqual({ value: undefined });
  });
});

describe("int", () => {
  test("parses decimal integers within range", () => {
    expect(parse(int(), "-42")).toEqual({ ok: true, value: -42 });
    expect(parse(int({ min: 1, max: 3 }), "3")).toEqual({ ok: true, value: 3 });
  });

  test("rejects non-integers, unsafe integers and out-of-range values", () => {
    for (const raw of ["abc", "1.5", "1e3", "0x10", " 7", "9007199254740993"]) {
      expect(parse(int(), raw)).toEqual({
        ok: false,
        problem: `expected an integer, got ${JSON.stringify(raw)}`,
      });
    }
    expect(parse(int({ min: 1 }), "0")).toEqual({ ok: false, problem: 'expected an integer >= 1, got "0"' });
    expect(parse(int({ max: 5 }), "6")).toEqual({ ok: false, problem: 'expected an integer <= 5, got "6"' });
  });
});

describe("port", () => {
  test("accepts 0..65535 and names the range when invalid", () => {
    expect(parse(port(), "0")).toEqual({ ok: true, value: 0 });
    expect(parse(port(), "65535")).toEqual({ ok: true, value: 65535 });
    expect(parse(port(), "65536")).toEqual({
      ok: false,
      problem: 'expected an integer 0..65535, got "65536"',
    });
  });

  test("is required unless given a default", () => {
    expect(port().fallback).toBeUndefined();
    expect(port(50051).fallback).toEqual({ value: 50051 });
  });
});

describe("bool", () => {
  test("accepts true/false, 1/0 and yes/no in any case", () => {
    for (const raw of ["true", "TRUE", "1", "yes", "Yes"])
      expect(parse(bool(), raw)).toEqual({ ok: true, value: true });
    for (const raw of ["false", "False", "0", "no", "NO"])
      expect(parse(bool(), raw)).toEqual({ ok: true, value: false });
  });

  test("rejects anything else", () => {
    expect(parse(bool(), "on")).toEqual({
      ok: false,
      problem: 'expected one of true, false, 1, 0, yes, no, got "on"',
    });
  });
});

describe("url", () => {
  test("accepts an absolute URL with an allowed protocol and keeps the string", () => {
    const redis = url({ protocols: ["redis:", "rediss"] });
    expect(parse(redis, "rediss://cache:6380/0")).toEqual({ ok: true, value: "rediss://cache:6380/0" });
    expect(parse(url(), "https://example.org")).toEqual({ ok: true, value: "https://example.org" });
  });

  test("rejects relative URLs and other protocols", () => {
    expect(parse(url(), "/just/a/path")).toEqual({
      ok: false,
      problem: 'expected a URL, got "/just/a/path"',
    });
    expect(parse(url({ protocols: ["redis:", "rediss:"] }), "http://cache")).toEqual({
      ok: false,
      problem: 'expected a URL with protocol redis: or rediss:, got "http://cache"',
    });
  });

  test("masks credentials of a rejected URL", () => {
    const result = parse(url({ protocols: ["postgres:"] }), "mysql://app:hunter2@db:3306/app");
    expect(result).toEqual({
      ok: false,
      problem: 'expected a URL with protocol postgres:, got "mysql://***@db:3306/app"',
    });
  });
});

describe("enumOf", () => {
  test("accepts only the listed values", () => {
    const mode = enumOf(["a", "b"]);
    expect(parse(mode, "b")).toEqual({ ok: true, value: "b" });
    expect(parse(mode, "B")).toEqual({ ok: false, problem: 'expected one of a, b, got "B"' });
  });
});

describe("secret", () => {
  test("is required and has no default", () => {
    expect(secret().fallback).toBeUndefined();
    expect(parse(secret(), "s3cr3t")).toEqual({ ok: true, value: "s3cr3t" });
  });
});
