import { describe, expect, test } from "vitest";
import { parseCommandLine, UsageError } from "./config.js";

const parse = (args: string[], env: Record<string, string> = {}) => {
  const r = parseCommandLine(args, env, "/tmp/here");
  if (r.help) throw new Error("unexpected help");
  return r.options;
};

describe("parseCommandLine", () => {
  test("takes the whatsapp token from the environment and applies defaults", () => {
    const o = parse([], { LOADGEN_APP_TOKEN: "wa-token-0123456789" });
    expect(o.appTokens).toEqual({ whatsapp: "wa-token-0123456789" });
    expect(o.mix).toEqual([{ app: "whatsapp", weight: 40 }]);
    expect(o).toMatchObject({
      target: "127.0.0.1:50051",
      closedLoop: false,
      ratePerSecond: 1000,
      groupShare: 0,
    });
    expect(o.outDir?.startsWith("/tmp/here/reports/")).toBe(true);
  });

  test("parses a full command line", () => {
    const o = parse([
      "--",
      "--target",
      "127.0.0.1:50151",
      "--app-tokens",
      "whatsapp=a,messenger=b,instagram=c",
      "--mix",
      "whatsapp=40,messenger=30,instagram=30",
      "--devices",
      "1000",
      "--groups",
      "5",
      "--group-size",
      "20",
      "--closed-loop",
      "--inflight",
      "800",
      "--pids",
      "delivery=12,postgres=34",
      "--watch-process",
      "redis=56",
      "--out",
      "reports/x",
    ]);
    expect(o).toMatchObject({
      target: "127.0.0.1:50151",
      devices: 1000,
      groups: 5,
      groupSize: 20,
      groupShare: 0.2,
      closedLoop: true,
      inflight: 800,
      outDir: "/tmp/here/reports/x",
      name: "x",
    });
    expect(o.watch).toEqual([
      { name: "delivery", pid: 12 },
      { name: "postgres", pid: 34 },
      { name: "redis", pid: 56 },
    ]);
  });

  test("lists every problem at once", () => {
    try {
      parse(
        ["--devices", "1", "--mode", "telegram", "--mix", "messenger=1", "--rate", "5", "--closed-loop"],
        {
          LOADGEN_APP_TOKEN: "t",
        },
      );
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      const problems = (err as UsageError).problems.join("\n");
      expect(problems).toMatch(/--devices/);
      expect(problems).toMatch(/--mode/);
      expect(problems).toMatch(/no token was given for it/);
      expect(problems).toMatch(/exclude each other/);
    }
  });

  test("--until: a closed loop waits for deliveries by default, or only for results", () => {
    const env = { LOADGEN_APP_TOKEN: "t" };
    expect(parse(["--closed-loop"], env).until).toBe("delivered");
    expect(parse(["--closed-loop", "--until", "result"], env).until).toBe("result");
    expect(() => parse(["--closed-loop", "--until", "acked"], env)).toThrow(
      /--until: expected delivered or result/,
    );
    expect(() => parse(["--until", "result"], env)).toThrow(/--until needs --closed-loop/);
  });

  test("requires an app token", () => {
    expect(() => parse([])).toThrow(/app token is required/);
  });

  test("asks for help", () => {
    expect(parseCommandLine(["--help"], {})).toEqual({ help: true });
  });

  test("--via gateways needs no app token and mixes the apps whose gateway is given", () => {
    const o = parse([
      "--via",
      "gateways",
      "--whatsapp",
      "127.0.0.1:50061",
      "--messenger",
      "http://127.0.0.1:8081",
    ]);
    expect(o.mode).toBe("gateways");
    expect(o.appTokens).toEqual({});
    expect(o.gateways).toEqual({
      whatsapp: "127.0.0.1:50061",
      whatsappAdmin: "http://127.0.0.1:50062",
      messenger: "http://127.0.0.1:8081",
    });
    expect(o.mix).toEqual([
      { app: "whatsapp", weight: 40 },
      { app: "messenger", weight: 30 },
    ]);
  });

  test("--server-receipts: on by default, off sends with no_delivery_receipt", () => {
    const base = ["--app-token", "t"];
    expect(parse(base).serverReceipts).toBe(true);
    expect(parse([...base, "--server-receipts", "on"]).serverReceipts).toBe(true);
    expect(parse([...base, "--server-receipts", "off"]).serverReceipts).toBe(false);
    expect(() => parse([...base, "--server-receipts", "no"])).toThrow(
      /--server-receipts: expected on or off, got "no"/,
    );
  });

  test("--messenger-sends: socket frames by default, or POST requests", () => {
    const gw = ["--via", "gateways", "--messenger", "http://127.0.0.1:8081"];
    expect(parse(gw).messengerSends).toBe("socket");
    expect(parse([...gw, "--messenger-sends", "http"]).messengerSends).toBe("http");
    expect(() => parse([...gw, "--messenger-sends", "mqtt"])).toThrow(
      /--messenger-sends: expected socket or http, got "mqtt"/,
    );
    expect(parse(gw).whatsappConnections).toBe(0);
    expect(parse([...gw, "--whatsapp-connections", "8"]).whatsappConnections).toBe(8);
    expect(() => parse([...gw, "--whatsapp-connections", "-1"])).toThrow(/--whatsapp-connections/);
    expect(parse(gw).whatsappChat).toBe("h2");
    expect(parse([...gw, "--whatsapp-chat", "grpc-js"]).whatsappChat).toBe("grpc-js");
    expect(() => parse([...gw, "--whatsapp-chat", "grpc"])).toThrow(
      /--whatsapp-chat: expected h2 or grpc-js, got "grpc"/,
    );
  });

  test("rejects a gateway run without the gateways its mix needs", () => {
    expect(() => parse(["--via", "gateways"])).toThrow(/needs at least one of --whatsapp/);
    expect(() =>
      parse(["--via", "gateways", "--messenger", "http://127.0.0.1:8081", "--mix", "instagram=1"]),
    ).toThrow(/--mix includes instagram but its gateway was not given/);
    expect(() =>
      parse(["--via", "gateways", "--mode", "delivery-unary", "--messenger", "http://x:1"]),
    ).toThrow(UsageError);
    expect(() => parse(["--via", "elsewhere"], { LOADGEN_APP_TOKEN: "t" })).toThrow(/--via: expected/);
  });
});
