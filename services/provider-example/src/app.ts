// Acme Chat's own account service: a tiny REST+JSON API. It is the only holder of the provider
// credential; it registers Acme users at the Switchboard delivery service as accounts of the
// third-party provider `PROVIDER_ID`. Everything else (keys, messages, groups) Acme's clients do
// themselves with the SDK and their own device credentials (see acme-transport.ts), so message
// content is end-to-end encrypted between devices and never passes through this service.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { AppError, Code, isAppError } from "@switchboard/errors";
import { createClient } from "@switchboard/grpc";
import { App, DirectoryService } from "@switchboard/proto";
import type { Logger } from "pino";

/** Acme usernames: 1-32 of [a-z0-9._-]. Their Switchboard handle is the same value. */
export const ACME_USERNAME = /^[a-z0-9._-]{1,32}$/;
const MAX_BODY_BYTES = 16 * 1024;

const STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.FailedPrecondition]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};

/** The signup request: the client's own Signal registration id and device secret. */
export interface SignupJson {
  username: string;
  registration_id: number;
  password: string;
  device_name?: string;
}

/** The signup response. */
export interface SignupResultJson {
  account_id: string;
  device_id: number;
  username: string;
  provider_id: string;
  created_at_ms: number;
}

/** Acme Chat's HTTP service; see buildAcmeApp. */
export interface AcmeApp {
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, type = "application/json") {
  res.writeHead(status, { "content-type": type });
  res.end(JSON.stringify(body));
}

function problem(res: ServerResponse, err: AppError) {
  const status = STATUS[err.code] ?? 500;
  send(
    res,
    status,
    {
      type: `/errors/${err.reason.toLowerCase().replaceAll("_", "-")}`,
      title: err.reason,
      status,
      detail: status === 500 ? "internal error" : err.message,
      reason: status === 500 ? "INTERNAL" : err.reason,
    },
    "application/problem+json",
  );
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      throw new AppError(Code.InvalidArgument, "BODY_TOO_LARGE", `body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch {
    throw new AppError(Code.InvalidArgument, "MALFORMED_JSON", "the body is not JSON");
  }
}

function parseSignup(body: unknown): SignupJson {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const bad = (why: string) => new AppError(Code.InvalidArgument, "INVALID_SIGNUP", why);
  if (typeof b.username !== "string" || !ACME_USERNAME.test(b.username))
    throw bad("username must be 1-32 characters [a-z0-9._-]");
  if (typeof b.registration_id !== "number" || !Number.isInteger(b.registration_id))
    throw bad("registration_id must be an integer");
  if (typeof b.password !== "string") throw bad("password must be a string");
  if (b.device_name !== undefined && typeof b.device_name !== "string")
    throw bad("device_name must be a string");
  return {
    username: b.username,
    registration_id: b.registration_id,
    password: b.password,
    device_name: b.device_name,
  };
}

/**
 * Builds Acme Chat's REST API: `POST /v1/signup` (registers a user and its primary device at the
 * delivery service with the provider token; the client chose the password, Acme never stores
 * it) and `GET /healthz`. Errors are RFC 9457 problem details with the delivery service's reason.
 */
export function buildAcmeApp(deps: {
  deliveryTarget: string;
  providerId: string;
  providerToken: string;
  log: Logger;
}): AcmeApp {
  const directory = createClient(DirectoryService, deps.deliveryTarget, {
    metadata: () => ({ authorization: `Bearer ${deps.providerToken}` }),
  });

  async function signup(body: SignupJson): Promise<SignupResultJson> {
    const r = await directory.registerAccount(
      {
        handle: { app: App.THIRD_PARTY, providerId: deps.providerId, value: body.username },
        registrationId: body.registration_id,
        password: body.password,
        deviceName: body.device_name ?? "",
      },
      { deadlineMs: 10_000 },
    );
    return {
      account_id: r.account?.id ?? "",
      device_id: r.device?.deviceId ?? 1,
      username: r.account?.handle?.value ?? body.username,
      provider_id: deps.providerId,
      created_at_ms: Number(r.account?.createdAtMs ?? 0n),
    };
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.method === "GET" && req.url === "/healthz") return send(res, 200, { ok: true });
        if (req.method === "POST" && req.url === "/v1/signup") {
          const result = await signup(parseSignup(await readJson(req)));
          deps.log.info({ accountId: result.account_id }, "acme user signed up");
          return send(res, 201, result);
        }
        problem(res, new AppError(Code.NotFound, "ROUTE_NOT_FOUND", `${req.method} ${req.url} not found`));
      } catch (err) {
        const e = isAppError(err)
          ? err
          : new AppError(Code.Internal, "INTERNAL", "internal error", { cause: err });
        if (e.code === Code.Internal) deps.log.error({ err }, "request failed");
        else deps.log.info({ reason: e.reason }, "request refused");
        problem(res, e);
      }
    })();
  });

  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          const a = server.address();
          resolve(typeof a === "object" && a ? a.port : port);
        });
      }),
    close: async () => {
      directory.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
