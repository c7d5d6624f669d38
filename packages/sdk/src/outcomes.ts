// Mapping the delivery API's send responses (oneofs) to the Transport's outcome unions.
import { AppError, Code } from "@switchboard/errors";
import type {
  SendGroupMessageResponse,
  SendMessageResponse,
  SendMultiRecipientMessageResponse,
} from "@switchboard/proto";
import type { GroupDeviceMismatch, GroupSendOutcome, SendOutcome } from "./transport.js";

/** Maps a SendMessageResponse; fails INTERNAL (INVALID_RESPONSE) when no case is set. */
export function sendOutcomeFromProto(response: SendMessageResponse): SendOutcome {
  const r = response.result;
  switch (r.case) {
    case "sent":
      return {
        kind: "sent",
        messageId: r.value.messageId,
        serverTimestampMs: Number(r.value.serverTimestampMs),
        duplicate: r.value.duplicate,
      };
    case "mismatchedDevices":
      return {
        kind: "mismatched",
        accountId: r.value.accountId,
        missingDevices: [...r.value.missingDevices],
        extraDevices: [...r.value.extraDevices],
      };
    case "staleDevices":
      return { kind: "stale", accountId: r.value.accountId, staleDevices: [...r.value.staleDevices] };
    case "recipientNotFound":
      return { kind: "not_found" };
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendMessageResponse without a result");
  }
}

/** Maps a SendGroupMessageResponse, merging mismatched and stale entries per account. */
export function groupSendOutcomeFromProto(
  response: Pick<SendGroupMessageResponse | SendMultiRecipientMessageResponse, "result">,
): GroupSendOutcome {
  const r = response.result;
  switch (r.case) {
    case "sent":
      return {
        kind: "sent",
        messageId: r.value.messageId,
        serverTimestampMs: Number(r.value.serverTimestampMs),
        duplicate: r.value.duplicate,
      };
    case "mismatchedDevices": {
      const byAccount = new Map<string, GroupDeviceMismatch>();
      const entry = (accountId: string): GroupDeviceMismatch => {
        let e = byAccount.get(accountId);
        if (e === undefined) {
          e = { accountId, missingDevices: [], extraDevices: [], staleDevices: [] };
          byAccount.set(accountId, e);
        }
        return e;
      };
      for (const m of r.value.mismatched) {
        const e = entry(m.accountId);
        e.missingDevices.push(...m.missingDevices);
        e.extraDevices.push(...m.extraDevices);
      }
      for (const s of r.value.stale) entry(s.accountId).staleDevices.push(...s.staleDevices);
      return { kind: "mismatched", accounts: [...byAccount.values()] };
    }
    case "notAMember":
      return { kind: "not_a_member" };
    default:
      throw new AppError(Code.Internal, "INVALID_RESPONSE", "SendGroupMessageResponse without a result");
  }
}
