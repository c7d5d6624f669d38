// A durable ClientStore: the whole state as one JSON file, replaced atomically on every flush.
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { AppError, Code } from "@switchboard/errors";
import { DataStore, type StoreOptions } from "./client-store.js";
import { createEmptyStoreData, type StoreData } from "./store-data.js";

/**
 * Opens (or creates) a file-backed ClientStore at `path`. Each `flush()` writes the full state to
 * a temporary file in the same directory (mode 0600), fsyncs it, renames it over `path` and
 * fsyncs the directory, so a crash leaves either the old or the new state, never a torn file.
 * The file is NOT encrypted: it holds identity and session private keys (see the README).
 * Fails DATA_LOSS (STORE_CORRUPT) when the file exists but is not a store.
 */
export async function createFileStore(path: string, options: StoreOptions = {}): Promise<DataStore> {
  const data = await loadStoreFile(path);
  let lastWritten = JSON.stringify(data);
  let queue: Promise<void> = Promise.resolve();
  const persist = (state: StoreData): Promise<void> => {
    // Flushes are serialised: each one snapshots the state when its turn comes.
    const next = queue.then(async () => {
      const text = JSON.stringify(state);
      if (text === lastWritten) return;
      await writeFileAtomic(path, text);
      lastWritten = text;
    });
    queue = next.catch(() => {});
    return next;
  };
  return new DataStore(data, persist, options);
}

async function loadStoreFile(path: string): Promise<StoreData> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return createEmptyStoreData();
    throw new AppError(Code.Unavailable, "STORE_UNREADABLE", `cannot read store ${path}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new AppError(Code.DataLoss, "STORE_CORRUPT", `store ${path} is not valid JSON`, { cause: err });
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as { version?: unknown }).version !== 1) {
    throw new AppError(Code.DataLoss, "STORE_CORRUPT", `store ${path} has an unknown format`);
  }
  // Fill in sections added after the file was written.
  return { ...createEmptyStoreData(), ...(parsed as StoreData) };
}

async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const file = await open(tmp, "w", 0o600);
    try {
      await file.writeFile(text, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new AppError(Code.Unavailable, "STORE_WRITE_FAILED", `cannot write store ${path}`, { cause: err });
  }
  // Make the rename itself durable; some platforms cannot fsync a directory, which is harmless.
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Best effort: the data file itself is already synced.
  }
}
