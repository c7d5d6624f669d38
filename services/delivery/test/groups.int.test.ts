import { randomUUID } from "node:crypto";
import { Code } from "@switchboard/errors";
import { sql } from "kysely";
import { describe, expect, test } from "vitest";
import {
  clientsFor,
  connectDevice,
  createBackend,
  linkDevice,
  registerAccount,
  startInstance,
  text,
} from "./harness.js";

describe("GroupService and group sends", () => {
  test("fans one stored payload out to every member device except the sending device", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target, "whatsapp");
    const alice2 = await linkDevice(inst.target, alice, "whatsapp");
    const bob = await registerAccount(inst.target, "messenger");
    const carol = await registerAccount(inst.target, "instagram");
    const c = clientsFor(inst.target, alice.auth);
    const created = await c.groups.createGroup({ memberAccountIds: [bob.accountId, carol.accountId] });
    const groupId = created.group?.id ?? "";
    expect(created.group?.members.map((m) => m.account?.id).sort()).toEqual(
      [alice.accountId, bob.accountId, carol.accountId].sort(),
    );

    const r = await c.messages.sendGroupMessage({
      groupId,
      content: Buffer.from("sender-key ciphertext"),
      clientMessageId: randomUUID(),
    });
    expect(r.result.case).toBe("sent");
    const payloads = await sql<{ n: number }>`SELECT count(*)::int AS n FROM group_payloads`.execute(
      backend.db,
    );
    expect(payloads.rows[0]?.n).toBe(1);
    const rows = await sql<{
      account_id: string;
      device_id: number;
      content: Buffer | null;
    }>`SELECT account_id, device_id, content FROM queued_messages`.execute(backend.db);
    expect(rows.rows.map((x) => `${x.account_id}/${x.device_id}`).sort()).toEqual(
      [`${alice2.accountId}/${alice2.deviceId}`, `${bob.accountId}/1`, `${carol.accountId}/1`].sort(),
    );
    expect(rows.rows.every((x) => x.content === null)).toBe(true);

    for (const d of [alice2, bob, carol]) {
      const reader = connectDevice(inst.target, d);
      await reader.until(() => reader.received.length === 1);
      expect(text(reader.received[0] as never)).toBe("sender-key ciphertext");
      expect(reader.received[0]?.groupId).toBe(groupId);
    }
  });

  test("reports member device mismatches and refuses non-members", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const mallory = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    const groupId = (await c.groups.createGroup({ memberAccountIds: [bob.accountId] })).group?.id ?? "";
    const bob2 = await linkDevice(inst.target, bob);
    const r = await c.messages.sendGroupMessage({
      groupId,
      content: Buffer.from("x"),
      clientMessageId: randomUUID(),
      expectedRecipients: [
        { accountId: bob.accountId, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      ],
    });
    expect(r.result).toMatchObject({
      case: "mismatchedDevices",
      value: { mismatched: [{ accountId: bob.accountId, missingDevices: [bob2.deviceId] }] },
    });
    const m = await clientsFor(inst.target, mallory.auth).messages.sendGroupMessage({
      groupId,
      content: Buffer.from("x"),
      clientMessageId: randomUUID(),
    });
    expect(m.result.case).toBe("notAMember");
    const read = await clientsFor(inst.target, mallory.auth)
      .groups.getGroup({ groupId })
      .catch((e: unknown) => e);
    expect(read).toMatchObject({ code: Code.NotFound, reason: "GROUP_NOT_FOUND" });
  });

  test("stops delivering to a removed member and bumps the revision", async () => {
    const backend = await createBackend();
    const inst = await startInstance(backend);
    const alice = await registerAccount(inst.target);
    const bob = await registerAccount(inst.target);
    const carol = await registerAccount(inst.target);
    const c = clientsFor(inst.target, alice.auth);
    const g = (await c.groups.createGroup({ memberAccountIds: [bob.accountId, carol.accountId] })).group;
    const after = (await c.groups.removeGroupMembers({ groupId: g?.id ?? "", accountIds: [carol.accountId] }))
      .group;
    expect(after?.revision).toBe((g?.revision ?? 0n) + 1n);
    await c.messages.sendGroupMessage({
      groupId: g?.id ?? "",
      content: Buffer.from("after removal"),
      clientMessageId: randomUUID(),
    });
    const rows = await sql<{ account_id: string }>`SELECT account_id FROM queued_messages`.execute(
      backend.db,
    );
    expect(rows.rows.map((x) => x.account_id)).toEqual([bob.accountId]);
    const notCreator = await clientsFor(inst.target, bob.auth)
      .groups.removeGroupMembers({ groupId: g?.id ?? "", accountIds: [alice.accountId] })
      .catch((e: unknown) => e);
    expect(notCreator).toMatchObject({ code: Code.PermissionDenied, reason: "NOT_GROUP_CREATOR" });
  });
});
