// A minimal RESP2 client over node:net, so tests can look at what the delivery service leaves in
// Redis (keys, pub/sub traffic) without a Redis client library of their own.
import { connect, type Socket } from "node:net";
import { onTestFinished } from "vitest";

/** A RESP2 reply: bulk strings stay bytes, simple strings are strings. */
export type Reply = Buffer | string | number | null | Error | Reply[];

/** Parses one reply at `offset`; undefined when `buf` does not hold all of it yet. */
function parse(buf: Buffer, offset: number): { reply: Reply; next: number } | undefined {
  const end = buf.indexOf("\r\n", offset);
  if (end < 0) return undefined;
  const line = buf.toString("latin1", offset + 1, end);
  const next = end + 2;
  switch (String.fromCharCode(buf[offset] ?? 0)) {
    case "+":
      return { reply: line, next };
    case "-":
      return { reply: new Error(line), next };
    case ":":
      return { reply: Number(line), next };
    case "$": {
      const length = Number(line);
      if (length < 0) return { reply: null, next };
      if (buf.length < next + length + 2) return undefined;
      return { reply: buf.subarray(next, next + length), next: next + length + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { reply: null, next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, at);
        if (item === undefined) return undefined;
        items.push(item.reply);
        at = item.next;
      }
      return { reply: items, next: at };
    }
    default:
      throw new Error(`unexpected RESP type byte ${buf[offset]}`);
  }
}

const encode = (args: (string | Buffer)[]): Buffer =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => {
      const bytes = typeof a === "string" ? Buffer.from(a) : a;
      return [Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n")];
    }),
  ]);

/** One Redis connection: commands answered in order; pub/sub pushes go to `onPush`. */
export class RespConnection {
  private buffer = Buffer.alloc(0);
  private readonly waiters: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private subscribed = false;
  onPush: (message: Reply[]) => void = () => {};

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.failAll(err));
    socket.on("close", () => this.failAll(new Error("redis connection closed")));
  }

  /** Connects to `redis://[user:password@]host:port[/db]`; closed when the test finishes. */
  static async open(url: string): Promise<RespConnection> {
    const u = new URL(url);
    const socket = connect({ host: u.hostname, port: Number(u.port || 6379) });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const conn = new RespConnection(socket);
    onTestFinished(() => conn.close());
    if (u.password !== "") {
      const user = decodeURIComponent(u.username);
      const password = decodeURIComponent(u.password);
      await conn.command(...(user === "" ? ["AUTH", password] : ["AUTH", user, password]));
    }
    const db = u.pathname.replace("/", "");
    if (db !== "") await conn.command("SELECT", db);
    return conn;
  }

  /** Sends one command and resolves with its reply; an error reply rejects. */
  command(...args: (string | Buffer)[]): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.socket.write(encode(args));
    });
  }

  /** PSUBSCRIBE: from now on this connection only carries `onPush` messages. */
  async psubscribe(pattern: string): Promise<void> {
    this.subscribed = true;
    await this.command("PSUBSCRIBE", pattern);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const parsed = parse(this.buffer, 0);
      if (parsed === undefined) return;
      this.buffer = this.buffer.subarray(parsed.next);
      const { reply } = parsed;
      const kind = Array.isArray(reply) && Buffer.isBuffer(reply[0]) ? reply[0].toString() : "";
      if (this.subscribed && (kind === "pmessage" || kind === "message")) {
        this.onPush(reply as Reply[]);
        continue;
      }
      const waiter = this.waiters.shift();
      if (reply instanceof Error) waiter?.reject(reply);
      else waiter?.resolve(reply);
    }
  }

  private failAll(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

/** Every key matching `pattern` (SCAN, so it never blocks Redis). */
export async function scanKeys(conn: RespConnection, pattern: string): Promise<Buffer[]> {
  const keys: Buffer[] = [];
  let cursor = "0";
  do {
    const reply = (await conn.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")) as [
      Buffer,
      Buffer[],
    ];
    cursor = reply[0].toString();
    keys.push(...reply[1]);
  } while (cursor !== "0");
  return keys;
}

/**
 * A key's value by its type (string, hash, list, set, sorted set, stream) and its DUMP
 * serialization. Undefined when the key vanished meanwhile.
 */
export async function readKey(
  conn: RespConnection,
  key: Buffer,
): Promise<{ value: Reply; dump: Reply } | undefined> {
  const type = String(await conn.command("TYPE", key));
  const byType: Record<string, (string | Buffer)[]> = {
    string: ["GET", key],
    hash: ["HGETALL", key],
    list: ["LRANGE", key, "0", "-1"],
    set: ["SMEMBERS", key],
    zset: ["ZRANGE", key, "0", "-1", "WITHSCORES"],
    stream: ["XRANGE", key, "-", "+"],
  };
  const read = byType[type];
  if (read === undefined) return undefined;
  return { value: await conn.command(...read), dump: await conn.command("DUMP", key) };
}
