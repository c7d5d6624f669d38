// The development admin endpoint: `GET /admin/codes/:phone` returns the last verification code
// sent to a number. Only started with DEV_ADMIN=true, and bound to 127.0.0.1.
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { DevCodeSender } from "./code-sender.js";

/** A running admin server. */
export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves the dev admin endpoint on 127.0.0.1:`port` (0 picks a free port). `GET
 * /admin/codes/%2B15551234567` (or `.../15551234567`) answers `{"phone","code","sentAtMs"}` or 404.
 */
export async function startAdminServer(opts: {
  port: number;
  codes: DevCodeSender;
  log: Logger;
}): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const m = /^\/admin\/codes\/([^/]+)$/.exec(url.pathname);
    const json = (status: number, body: unknown) => {
      res.statusCode = status;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(body));
    };
    if (req.method !== "GET" || !m?.[1]) return json(404, { error: "not found" });
    let phone = decodeURIComponent(m[1]).trim();
    if (!phone.startsWith("+")) phone = `+${phone}`;
    const last = opts.codes.lastCode(phone);
    if (!last) return json(404, { error: "no code sent to this number" });
    json(200, { phone, code: last.code, sentAtMs: last.sentAtMs });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : 0);
    });
  });
  opts.log.warn({ port }, "dev admin endpoint enabled (DEV_ADMIN=true): verification codes are readable");
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
