// Child process of idle-connections.ts: opens one event stream per token (read from stdin, one per
// line) against GATEWAY_URL, prints "ready <n>" once every stream has sent queue_empty, then idles
// until killed. Runs apart from the gateway so that client-side memory is not counted.
import http from "node:http";

const base = new URL(process.env.GATEWAY_URL ?? "http://127.0.0.1:8082");
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
let input = "";
for await (const chunk of process.stdin) input += String(chunk);
const tokens = input.split("\n").filter(Boolean);
let ready = 0;

/** Opens one event stream; resolves at its queue_empty, rejects on failure or after 60 s. */
function openOnce(token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = false;
    const req = http.get(
      {
        host: base.hostname,
        port: base.port,
        path: "/v1/direct/events",
        agent,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`status ${res.statusCode}`));
        }
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (!seen && chunk.includes("event: queue_empty")) {
            seen = true;
            clearTimeout(timer);
            resolve();
          }
        });
        res.on("end", () => reject(new Error("stream ended")));
      },
    );
    // A stream that never drains (the gateway was overloaded) is dropped and opened again.
    const timer = setTimeout(() => {
      if (seen) return;
      req.destroy();
      reject(new Error("no queue_empty within 60 s"));
    }, 60_000);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Opens a stream, retrying (as a client reconnects) up to 10 times. */
async function open(token: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await openOnce(token);
    } catch (err) {
      if (attempt >= 9) throw err;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
}

// At most CONCURRENCY streams being opened at once (a window, not batches: one slow stream does
// not hold up the next hundred).
const CONCURRENCY = 100;
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(CONCURRENCY, tokens.length) }, async () => {
    while (next < tokens.length) {
      await open(tokens[next++] as string);
      ready++;
    }
  }),
);
process.stdout.write(`ready ${ready}\n`);
setInterval(() => undefined, 1 << 30);
