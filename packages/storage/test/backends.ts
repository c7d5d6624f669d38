import { randomUUID } from "node:crypto";
import { cloneTemplateDatabase } from "@switchboard/testkit";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, beforeEach, describe, inject } from "vitest";
import {
  commitQueueBatch,
  createDatabase,
  insertAccount,
  insertDevice,
  queuedKey,
  type Database,
  type DeviceSummary,
  type QueueInsert,
} from "../src/index.js";
import { openPgliteCopy } from "./pglite-template.js";

/** The storage backends every contract test runs against. */
export type BackendName = "postgres" | "pglite";

interface OpenBackend {
  db: Kysely<Database>;
  close(): Promise<void>;
}

/**
 * How each backend opens a migrated database: a clone of the run's template on the PostgreSQL
 * server (through the production `createDatabase`, so its type parsers are the ones under test),
 * or PGlite on a copy of the migrated data directory the globalSetup made.
 */
export const BACKENDS: ReadonlyArray<readonly [BackendName, () => Promise<OpenBackend>]> = [
  [
    "postgres",
    async () => {
      const clone = await cloneTemplateDatabase();
      const db = createDatabase({ url: clone.url, poolSize: 10 });
      return {
        db,
        close: async () => {
          await db.destroy();
          await clone.drop();
        },
      };
    },
  ],
  ["pglite", () => openPgliteCopy(pgliteTemplateDir())],
];

/** The migrated PGlite data directory test/global-setup.ts provides; copy it, never open it. */
export function pgliteTemplateDir(): string {
  const dir = inject("pgliteTemplateDir") as string | undefined;
  if (dir === undefined) throw new Error("pgliteTemplateDir was not provided: run with test/global-setup.ts");
  return dir;
}

// Every table of the schema: a table added to `Database` and not here fails to compile.
const TABLES = Object.keys({
  accounts: true,
  devices: true,
  one_time_prekeys: true,
  kyber_prekeys: true,
  queued_messages: true,
  group_payloads: true,
  send_log: true,
  groups: true,
  group_members: true,
  providers: true,
  relationships: true,
  group_invitations: true,
  server_keys: true,
  reports: true,
  unidentified_access: true,
} satisfies Record<keyof Database, true>);

/** What a contract test sees: the backend's name and its database, emptied before each test. */
export interface BackendContext {
  readonly name: BackendName;
  readonly db: Kysely<Database>;
}

/**
 * Defines the same tests once per backend, each in a `describe` named `<title> (<backend>)`. A
 * backend opens one database per file (a template clone, or a copy of the PGlite template) and
 * every table is truncated before each test.
 */
export function describeBackends(title: string, define: (ctx: BackendContext) => void): void {
  describe.each(BACKENDS)(`${title} (%s)`, (name, open) => {
    let backend: OpenBackend | undefined;
    const ctx: BackendContext = {
      name,
      get db() {
        if (!backend) throw new Error(`the ${name} backend is not open`);
        return backend.db;
      },
    };
    beforeAll(async () => {
      backend = await open();
    });
    afterAll(async () => {
      await backend?.close();
    });
    beforeEach(async () => {
      await sql`TRUNCATE ${sql.join(TABLES.map((t) => sql.table(t)))}`.execute(ctx.db);
    });
    define(ctx);
  });
}

export const APP_WHATSAPP = 1;
export const APP_MESSENGER = 2;

let handleCounter = 0;

/** Registers an account with its primary device; returns the device summary. */
export async function createAccount(
  db: Kysely<Database>,
  over: { app?: number; handle?: string; registrationId?: number } = {},
): Promise<DeviceSummary> {
  const { device } = await insertAccount(db, {
    id: randomUUID(),
    app: over.app ?? APP_WHATSAPP,
    providerId: "",
    handle: over.handle ?? `+1555${String(++handleCounter).padStart(7, "0")}`,
    registrationId: over.registrationId ?? 1000 + handleCounter,
    deviceName: "primary",
    passwordHash: "hash",
  });
  return device;
}

/** Links another device to an account (at most 6 per account). */
export function linkDevice(db: Kysely<Database>, accountId: string): Promise<DeviceSummary> {
  return insertDevice(db, {
    accountId,
    registrationId: 2000 + ++handleCounter,
    name: "linked",
    passwordHash: "hash",
    maxDevices: 6,
  });
}

/** A one-to-one queue row for `to`, with fields a test may override. */
export function queueRow(
  to: { accountId: string; deviceId: number },
  over: Partial<QueueInsert> = {},
): QueueInsert {
  const now = Date.now();
  return {
    account_id: to.accountId,
    device_id: to.deviceId,
    message_id: randomUUID(),
    app: APP_WHATSAPP,
    type: 1,
    source_account_id: null,
    source_device_id: null,
    source_app: APP_WHATSAPP,
    source_provider_id: "",
    source_registration_id: 0,
    client_message_id: randomUUID(),
    client_timestamp_ms: now,
    server_timestamp_ms: now,
    expires_at_ms: now + 3_600_000,
    flags: 0,
    group_id: null,
    report_tag: null,
    content: Buffer.from("ciphertext"),
    payload_id: null,
    ...over,
  };
}

export { queuedKey };

/**
 * Queues rows the way the send path queues delivery receipts (`commitQueueBatch` with no
 * idempotency entries); returns each row's sequence, index-aligned, undefined where skipped.
 */
export async function queueRows(
  db: Kysely<Database>,
  rows: readonly QueueInsert[],
): Promise<Array<number | undefined>> {
  const { queued } = await commitQueueBatch(db, {
    sendLog: [],
    rows,
    logged: rows.map(() => false),
    payloads: [],
  });
  return rows.map((r) => queued.get(queuedKey(r))?.seq);
}

/** Bytes as a plain Uint8Array, to compare contents whatever the subclass (Buffer or not). */
export const plain = (b: Uint8Array | null | undefined): Uint8Array | null | undefined =>
  b && new Uint8Array(b);
