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

function open(token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: base.hostname,
        port: base.port,
        path: "/v1/direct/events",
        agent,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
        res.setEncoding("utf8");
        let seen = false;
        res.on("data", (chunk: string) => {
          if (!seen && chunk.includes("event: queue_empty")) {
            seen = true;
            resolve();
          }
        });
        res.on("end", () => reject(new Error("stream ended")));
      },
    );
    req.on("error", reject);
  });
}

const CONCURRENCY = 100;
for (let i = 0; i < tokens.length; i += CONCURRENCY) {
  await Promise.all(tokens.slice(i, i + CONCURRENCY).map(open));
  ready += Math.min(CONCURRENCY, tokens.length - i);
}
process.stdout.write(`ready ${ready}\n`);
setInterval(() => undefined, 1 << 30);
