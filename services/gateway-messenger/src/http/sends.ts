// One-to-one and group sends, shared by the REST routes and the WebSocket's send frames: resolve
// the recipients, submit to the delivery service, and render the outcome as the 200 body or throw
// the problem.
//
// `submit…` resolves once the send is *submitted* (handed to the delivery link, whose stream keeps
// the order of submissions); its `result` settles when the delivery service answers. The socket
// submits one device's frames one after another and awaits their results concurrently, so a
// device's messages keep their order without waiting a round trip each.
import { randomUUID } from "node:crypto";
import { AppError, Code } from "@switchboard/errors";
import type { SendGroupMessageResponse, SendMessageResponse } from "@switchboard/proto";
import {
  groupSendFromJson,
  sendFromJson,
  type DeviceAddress,
  type SendGroupMessageJson,
  type SendMessageJson,
} from "../domain/translate.js";
import { recipientFromJson } from "../domain/users.js";
import type { RouteDeps } from "./deps.js";
import { ProblemError } from "./problem.js";

/** What a send needs of the gateway. */
export type SendDeps = Pick<RouteDeps, "directory" | "link">;

/** The 200 body of a send (and a send frame's `result`). */
export interface SendResultJson {
  recipient_id?: string;
  group_id?: string;
  message_id: string;
  mid: string;
  timestamp: number;
  duplicate: boolean;
}

/** A submitted send; `result` settles with its outcome (wrapped so that awaiting the submission does not await it). */
export interface Submitted {
  result: Promise<SendResultJson>;
}

/** The members of a send's 200 body common to one-to-one and group sends. */
const sentFields = (
  sent: { messageId: string; serverTimestampMs: bigint; duplicate: boolean },
  mid: string,
) => ({
  message_id: sent.messageId,
  mid,
  timestamp: Number(sent.serverTimestampMs),
  duplicate: sent.duplicate,
});

/** The 409 a one-to-one send answers when the sender's device list is out of date. */
function devicesChanged(
  accountId: string,
  lists: { missing: number[]; extra: number[]; stale: number[] },
): ProblemError {
  return new ProblemError(
    Code.Aborted,
    "DEVICES_CHANGED",
    "the recipient's devices differ from the ciphertexts sent: fetch keys for missing and stale devices, drop " +
      "sessions of extra ones, and retry with the same mid",
    { account_id: accountId, ...lists },
  );
}

/** Resolves the recipient and submits a one-to-one send from `me`. */
export async function submitSend(
  deps: SendDeps,
  me: DeviceAddress,
  body: SendMessageJson,
): Promise<Submitted> {
  const destinationAccountId = await deps.directory.require(recipientFromJson(body.recipient));
  const req = sendFromJson(body, {
    sender: { accountId: me.accountId, deviceId: me.deviceId },
    destinationAccountId,
    defaults: { mid: randomUUID(), timestampMs: Date.now() },
  });
  return {
    result: deps.link
      .send(req)
      .then((response) => sendOutcome(response, destinationAccountId, req.clientMessageId)),
  };
}

/**
 * Renders a one-to-one send's outcome as the 200 body, or throws its problem; `notFound` is the
 * error for an unknown recipient (a sealed send answers it as a bad access key instead).
 */
export function sendOutcome(
  response: SendMessageResponse,
  recipientId: string,
  mid: string,
  notFound: () => AppError = () =>
    new AppError(Code.NotFound, "RECIPIENT_NOT_FOUND", "no user has this account id"),
): SendResultJson {
  const r = response.result;
  switch (r.case) {
    case "sent":
      return { recipient_id: recipientId, ...sentFields(r.value, mid) };
    case "mismatchedDevices":
      throw devicesChanged(r.value.accountId, {
        missing: [...r.value.missingDevices],
        extra: [...r.value.extraDevices],
        stale: [],
      });
    case "staleDevices":
      throw devicesChanged(r.value.accountId, { missing: [], extra: [], stale: [...r.value.staleDevices] });
    case "recipientNotFound":
      throw notFound();
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "send returned no outcome");
  }
}

/** Resolves `expected_recipients` and submits a group send from `me`. */
export async function submitGroupSend(
  deps: SendDeps,
  me: DeviceAddress,
  groupId: string,
  body: SendGroupMessageJson,
): Promise<Submitted> {
  const expectedAccountIds: string[] = [];
  for (const r of body.expected_recipients ?? [])
    expectedAccountIds.push(await deps.directory.require(recipientFromJson(r.user)));
  const req = groupSendFromJson(body, {
    sender: { accountId: me.accountId, deviceId: me.deviceId },
    groupId,
    expectedAccountIds,
    defaults: { mid: randomUUID(), timestampMs: Date.now() },
  });
  return {
    result: deps.link
      .sendGroup(req)
      .then((response) => groupSendOutcome(response, groupId, req.clientMessageId)),
  };
}

function groupSendOutcome(response: SendGroupMessageResponse, groupId: string, mid: string): SendResultJson {
  const r = response.result;
  switch (r.case) {
    case "sent":
      return { group_id: groupId, ...sentFields(r.value, mid) };
    case "mismatchedDevices": {
      const accounts = new Map<
        string,
        { account_id: string; missing: number[]; extra: number[]; stale: number[] }
      >();
      const entry = (accountId: string) => {
        let e = accounts.get(accountId);
        if (e === undefined) {
          e = { account_id: accountId, missing: [], extra: [], stale: [] };
          accounts.set(accountId, e);
        }
        return e;
      };
      for (const m of r.value.mismatched) {
        entry(m.accountId).missing.push(...m.missingDevices);
        entry(m.accountId).extra.push(...m.extraDevices);
      }
      for (const s of r.value.stale) entry(s.accountId).stale.push(...s.staleDevices);
      throw new ProblemError(
        Code.Aborted,
        "DEVICES_CHANGED",
        "member devices differ from expected_recipients: distribute the sender key to missing and stale devices and retry",
        { accounts: [...accounts.values()] },
      );
    }
    case "notAMember":
      throw new AppError(
        Code.PermissionDenied,
        "NOT_A_MEMBER",
        "the group does not exist or you are not a member",
      );
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "send returned no outcome");
  }
}
