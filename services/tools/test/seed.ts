// State of all three apps written through the storage repositories (and the gateways' tables with
// plain SQL), for the export tests: two accounts per app with keys, one-to-one messages within and
// across apps, a three-app group with a queued group message, relationships, a group invitation,
// sealed-sender settings, a report, and each gateway's own rows.
import { randomBytes, randomUUID } from "node:crypto";
import {
  commitQueueBatch,
  insertAccount,
  insertDevice,
  insertGroup,
  storeKeys,
  type Database,
  type QueueBatch,
} from "@switchboard/storage";
import { sql, type Kysely } from "kysely";

/** App numbers (switchboard.common.v1.App). */
export const APPS = { whatsapp: 1, messenger: 2, instagram: 3 } as const;
export type SeedAppName = keyof typeof APPS;

/** One seeded account. */
export interface SeededAccount {
  id: string;
  app: number;
  handle: string;
  /** Device ids (1 and, for the first account of each app, 2). */
  devices: number[];
}

/** What {@link seedApps} wrote, per app. */
export interface SeededApp {
  name: SeedAppName;
  app: number;
  accounts: [SeededAccount, SeededAccount];
  /** Rows written per table for this app (what its export must hold). */
  expected: Record<string, number>;
}

const bytes = (n: number): Buffer => randomBytes(n);

/** Writes the state of all three apps; returns, per app, its accounts and expected row counts. */
export async function seedApps(db: Kysely<Database>, nonce: string): Promise<Record<SeedAppName, SeededApp>> {
  const handles: Record<SeedAppName, [string, string]> = {
    whatsapp: [`+1555${nonce}01`, `+1555${nonce}02`],
    messenger: [`7${nonce}01`, `7${nonce}02`],
    instagram: [`ig_${nonce}_a`, `ig_${nonce}_b`],
  };
  const out = {} as Record<SeedAppName, SeededApp>;
  for (const name of Object.keys(APPS) as SeedAppName[]) {
    const app = APPS[name];
    const accounts = [] as unknown as [SeededAccount, SeededAccount];
    for (const [i, handle] of handles[name].entries()) {
      const id = randomUUID();
      await insertAccount(db, {
        id,
        app,
        providerId: "",
        handle,
        registrationId: 100 + i,
        deviceName: "primary",
        passwordHash: `scrypt$${bytes(8).toString("hex")}`,
      });
      const devices = [1];
      if (i === 0) {
        const d = await insertDevice(db, {
          accountId: id,
          registrationId: 200,
          name: "laptop",
          passwordHash: `scrypt$${bytes(8).toString("hex")}`,
          maxDevices: 6,
        });
        devices.push(d.deviceId);
      }
      for (const deviceId of devices) {
        await storeKeys(
          db,
          { accountId: id, deviceId },
          {
            identityKey: bytes(33),
            signedPreKey: { keyId: 1, publicKey: bytes(33), signature: bytes(64) },
            oneTimePreKeys: [1, 2].map((keyId) => ({ keyId, publicKey: bytes(33) })),
            kyberPreKeys: [1, 2].map((keyId) => ({ keyId, publicKey: bytes(1569), signature: bytes(64) })),
            lastResortKyberPreKey: { keyId: 99, publicKey: bytes(1569), signature: bytes(64) },
          },
          100,
        );
      }
      accounts.push({ id, app, handle, devices });
    }
    out[name] = {
      name,
      app,
      accounts,
      // Two accounts, three devices, each device with 2 one-time and 2 Kyber keys.
      expected: { accounts: 2, devices: 3, one_time_prekeys: 6, kyber_prekeys: 6 },
    };
  }

  const all = Object.values(out);
  const add = (name: SeedAppName, table: string, n = 1) => {
    out[name].expected[table] = (out[name].expected[table] ?? 0) + n;
  };
  const nameOf = (app: number) => all.find((a) => a.app === app)?.name ?? "whatsapp";

  // One-to-one: each app's first account writes to its second account and to the next app's first.
  const now = Date.now();
  let n = 0;
  const send = async (from: SeededAccount, to: SeededAccount, payload?: { groupId: string }) => {
    const messageId = randomUUID();
    const clientMessageId = `c-${nonce}-${n++}`;
    const base = {
      message_id: messageId,
      type: 1,
      source_account_id: from.id,
      source_device_id: 1,
      source_app: from.app,
      source_provider_id: "",
      source_registration_id: 100,
      client_message_id: clientMessageId,
      client_timestamp_ms: now,
      server_timestamp_ms: now,
      expires_at_ms: now + 86_400_000,
      flags: 0,
      report_tag: bytes(32),
    };
    const batch: QueueBatch = {
      sendLog: [
        {
          senderAccountId: from.id,
          senderDeviceId: 1,
          clientMessageId,
          app: from.app,
          messageId,
          serverTimestampMs: now,
        },
      ],
      rows: [],
      logged: [],
      payloads: [],
    };
    const recipients = payload
      ? all.flatMap((a) => a.accounts[0].devices.map((d) => ({ account: a.accounts[0], deviceId: d })))
      : to.devices.map((d) => ({ account: to, deviceId: d }));
    for (const r of recipients) {
      if (r.account.id === from.id && r.deviceId === 1) continue;
      batch.rows = [
        ...batch.rows,
        {
          ...base,
          account_id: r.account.id,
          device_id: r.deviceId,
          group_id: payload?.groupId ?? null,
          content: payload ? null : bytes(48),
          payload_id: payload ? messageId : null,
        },
      ];
      batch.logged = [...batch.logged, true];
      add(nameOf(r.account.app), "queued_messages");
    }
    if (payload) {
      batch.payloads = [{ messageId, app: from.app, content: bytes(64) }];
      // The payload is exported with every app that has a queued copy of it.
      for (const a of all) add(a.name, "group_payloads");
    }
    await commitQueueBatch(db, batch);
    add(nameOf(from.app), "send_log");
  };
  for (const [i, a] of all.entries()) {
    const next = all[(i + 1) % all.length] ?? a;
    await send(a.accounts[0], a.accounts[1]);
    await send(a.accounts[0], next.accounts[0]);
  }

  // A group of the three first accounts, created on WhatsApp; a group message from Messenger.
  const groupId = randomUUID();
  await insertGroup(db, {
    id: groupId,
    creatorAccountId: out.whatsapp.accounts[0].id,
    app: APPS.whatsapp,
    members: all.map((a) => ({ accountId: a.accounts[0].id, app: a.app })),
  });
  for (const a of all) {
    add(a.name, "groups");
    add(a.name, "group_members");
  }
  await send(out.messenger.accounts[0], out.messenger.accounts[0], { groupId });

  // Each app's second account is invited to the group by WhatsApp's first account.
  for (const a of all) {
    await sql`INSERT INTO group_invitations (group_id, account_id, app, inviter_account_id)
      VALUES (${groupId}, ${a.accounts[1].id}, ${a.app}, ${out.whatsapp.accounts[0].id})`.execute(db);
    add(a.name, "group_invitations");
  }

  // Relationships: each first account accepted its own second account and blocked the next app's first.
  for (const [i, a] of all.entries()) {
    const next = all[(i + 1) % all.length] ?? a;
    await sql`INSERT INTO relationships (owner_account_id, peer_account_id, app, state) VALUES
      (${a.accounts[0].id}, ${a.accounts[1].id}, ${a.app}, 1),
      (${a.accounts[0].id}, ${next.accounts[0].id}, ${a.app}, 2)`.execute(db);
    add(a.name, "relationships", 2);
    await sql`INSERT INTO unidentified_access (account_id, app, access_key_hash, unrestricted)
      VALUES (${a.accounts[0].id}, ${a.app}, ${bytes(32)}, false)`.execute(db);
    add(a.name, "unidentified_access");
    await sql`INSERT INTO reports (id, app, reporter_account_id, reporter_device_id, message_id,
        sender_account_id, sender_device_id, server_timestamp_ms, plaintext, reason)
      VALUES (${randomUUID()}, ${a.app}, ${a.accounts[0].id}, 1, ${randomUUID()},
        ${next.accounts[0].id}, 1, ${now}, ${Buffer.from("reported text")}, 'spam')`.execute(db);
    add(a.name, "reports");
  }

  // The gateways' own rows.
  const w = out.whatsapp.accounts;
  for (const acc of w)
    for (const d of acc.devices) {
      await sql`INSERT INTO wa_device_tokens (token_hash, account_id, device_id, phone)
        VALUES (${bytes(32)}, ${acc.id}, ${d}, ${acc.handle})`.execute(db);
      add("whatsapp", "wa_device_tokens");
    }
  await sql`INSERT INTO wa_verification_codes (phone, code_hash, code_salt, code_expires_at, attempts,
      window_started_at, window_requests)
    VALUES (${w[0].handle}, NULL, NULL, NULL, 0, now(), 1)`.execute(db);
  add("whatsapp", "wa_verification_codes");
  await sql`INSERT INTO wa_link_codes (code_hash, account_id, phone, expires_at)
    VALUES (${bytes(32)}, ${w[0].id}, ${w[0].handle}, now() + interval '5 minutes')`.execute(db);
  add("whatsapp", "wa_link_codes");

  for (const acc of out.messenger.accounts)
    for (const d of acc.devices) {
      await sql`INSERT INTO ms_tokens (token_sha256, account_id, device_id, user_id)
        VALUES (${bytes(32)}, ${acc.id}, ${d}, ${acc.handle})`.execute(db);
      add("messenger", "ms_tokens");
    }
  await sql`SELECT setval('ms_user_id_seq', 100041)`.execute(db);

  const [ia, ib] = out.instagram.accounts;
  for (const acc of [ia, ib])
    for (const d of acc.devices) {
      await sql`INSERT INTO ig_tokens (token_hash, account_id, device_id) VALUES (${bytes(32)}, ${acc.id}, ${d})`.execute(
        db,
      );
      add("instagram", "ig_tokens");
    }
  const peer = out.whatsapp.accounts[1];
  await sql`INSERT INTO ig_threads (owner_account_id, thread_id, thread_type, peer_account_id, last_activity_at)
    VALUES (${ia.id}, ${`t-${nonce}`}, 'private', ${peer.id}, now())`.execute(db);
  await sql`INSERT INTO ig_relationships (owner_account_id, peer_account_id, thread_id, state, updated_at)
    VALUES (${ia.id}, ${peer.id}, ${`t-${nonce}`}, 'pending', now())`.execute(db);
  await sql`INSERT INTO ig_requests (owner_account_id, device_id, server_id, peer_account_id, thread_id, state,
      sequence, envelope)
    VALUES (${ia.id}, 1, ${randomUUID()}, ${peer.id}, ${`t-${nonce}`}, 'held', 1, ${bytes(80)})`.execute(db);
  add("instagram", "ig_threads");
  add("instagram", "ig_relationships");
  add("instagram", "ig_requests");
  return out;
}
