// WhatsAppService's safety RPCs (docs/safety.md): sealed sender (certificates, access keys and the
// open SendSealed and SendSealedMultiRecipient calls) and franked abuse reports, forwarded to the delivery service.
import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { DeliveryLink } from "@switchboard/delivery-link";
import { AppError, Code } from "@switchboard/errors";
import type { CallContext, ServiceImpl } from "@switchboard/grpc";
import {
  AddressSchema,
  EnvelopeType,
  SendGroupMessageResponseSchema,
  type Handle,
  type whatsapp,
} from "@switchboard/proto";
import type { Kysely } from "kysely";
import { authenticateDevice } from "../auth/device-auth.js";
import type { Directory } from "../directory.js";
import { handleKey, parseJid, parseUserJid } from "../domain/jid.js";
import {
  groupSendResponseToAck,
  handlesOf,
  outgoingChatToSend,
  sendResponseToAck,
} from "../domain/translate.js";
import type { WaDatabase } from "../storage/schema.js";

type Service = typeof whatsapp.WhatsAppService;

/** The delivery call metadata carrying the (combined) unidentified access key, base64. */
const ACCESS_KEY_METADATA = "unidentified-access-key";

const invalidAccessKey = () =>
  new AppError(
    Code.Unauthenticated,
    "INVALID_ACCESS_KEY",
    "the unidentified access key does not authorise sealed-sender messages to this user",
  );

/** Recipient user JIDs one SendSealedMultiRecipient call may name (delivery allows 1,000 accounts). */
const MAX_SEALED_RECIPIENTS = 1_000;

/**
 * The safety handlers. SendSealed and SendSealedMultiRecipient are open: they never look at
 * `authorization`.
 */
export function createSafetyHandlers(deps: {
  db: Kysely<WaDatabase>;
  link: DeliveryLink;
  directory: Directory;
}): Pick<
  ServiceImpl<Service>,
  | "getSenderCertificate"
  | "setUnidentifiedAccess"
  | "sendSealed"
  | "sendSealedMultiRecipient"
  | "reportMessage"
> {
  const { link, directory } = deps;
  const auth = (ctx: CallContext) => authenticateDevice(deps.db, ctx.metadata);
  return {
    async getSenderCertificate(_req, ctx) {
      const device = await auth(ctx);
      const address = { accountId: device.accountId, deviceId: device.deviceId };
      const [cert, root] = await Promise.all([
        link.sealedSender.getSenderCertificate({ device: address }),
        link.sealedSender.getTrustRoot({}),
      ]);
      return { certificate: cert.certificate, expiresAtMs: cert.expiresAtMs, trustRoot: root.publicKey };
    },

    async setUnidentifiedAccess(req, ctx) {
      const device = await auth(ctx);
      const address = { accountId: device.accountId, deviceId: device.deviceId };
      if (req.disable) await link.sealedSender.disableUnidentifiedAccess({ device: address });
      else
        await link.sealedSender.setUnidentifiedAccess({
          device: address,
          accessKey: req.accessKey,
          unrestricted: req.unrestricted,
        });
      return {};
    },

    async sendSealed(req) {
      const msg = req.message;
      if (!msg) throw new AppError(Code.InvalidArgument, "MESSAGE_REQUIRED", "message is required");
      const to = parseJid(msg.to);
      if (to.kind !== "user")
        throw new AppError(Code.InvalidArgument, "USER_JID_REQUIRED", "sealed sends go to a user JID");
      const ids = new Map<string, string>();
      for (const h of handlesOf(msg)) {
        const id = await directory.findAccountId(h);
        if (id !== undefined) ids.set(handleKey(h), id);
      }
      // Unknown users answer like a wrong key: an open call must not reveal who is registered.
      if (!ids.has(handleKey(to.handle))) throw invalidAccessKey();
      const accountIdOf = (h: Handle) => {
        const id = ids.get(handleKey(h));
        if (id === undefined) throw invalidAccessKey();
        return id;
      };
      const plan = outgoingChatToSend(msg, { sender: create(AddressSchema), accountIdOf });
      if (plan.kind !== "user")
        throw new AppError(Code.InvalidArgument, "USER_JID_REQUIRED", "sealed sends go to a user JID");
      plan.request.sender = undefined;
      for (const [i, m] of plan.request.messages.entries())
        if (m.type !== EnvelopeType.SEALED_SENDER)
          throw new AppError(
            Code.InvalidArgument,
            "INVALID_ENVELOPE_TYPE",
            `participants[${i}].kind must be MESSAGE_KIND_SEALED`,
          );
      const response = await link.sendSealed(plan.request, req.accessKey);
      return { ack: sendResponseToAck(msg.id, response, to.handle) };
    },

    async sendSealedMultiRecipient(req) {
      if (req.recipients.length === 0)
        throw new AppError(Code.InvalidArgument, "RECIPIENTS_REQUIRED", "recipients is required");
      if (req.recipients.length > MAX_SEALED_RECIPIENTS)
        throw new AppError(
          Code.InvalidArgument,
          "TOO_MANY_RECIPIENTS",
          `at most ${MAX_SEALED_RECIPIENTS} recipients per send`,
        );
      const handles = new Map<string, Handle>();
      for (const [i, raw] of req.recipients.entries()) {
        const jid = parseUserJid(raw);
        if (jid.device !== undefined)
          throw new AppError(
            Code.InvalidArgument,
            "USER_JID_REQUIRED",
            `recipients[${i}] must be a user JID, not a device JID`,
          );
        const key = handleKey(jid.handle);
        if (handles.has(key))
          throw new AppError(Code.InvalidArgument, "DUPLICATE_RECIPIENT", `recipients[${i}] is listed twice`);
        handles.set(key, jid.handle);
      }
      // Account id -> handle, to render device mismatches as JIDs.
      const byAccount = new Map<string, Handle>();
      let unknown = false;
      for (const h of handles.values()) {
        const id = await directory.findAccountId(h);
        if (id === undefined) unknown = true;
        else byAccount.set(id, h);
      }
      // An open call must not reveal who is registered: with an unknown JID the send still goes to
      // delivery, with a random key that cannot match, so the answer is exactly that of a wrong key
      // for registered users (malformed messages INVALID_ARGUMENT first, then INVALID_ACCESS_KEY).
      const accessKey = unknown ? randomBytes(req.accessKey.byteLength || 16) : req.accessKey;
      const response = await link.messages.sendMultiRecipientMessage(
        {
          messages: req.messages,
          clientMessageId: req.id,
          clientTimestampMs: req.t,
          ephemeral: req.ephemeral,
          urgent: req.urgent,
          forwarded: req.forwarded,
        },
        { metadata: { [ACCESS_KEY_METADATA]: Buffer.from(accessKey).toString("base64") } },
      );
      if (unknown) throw invalidAccessKey();
      const ack = groupSendResponseToAck(
        req.id,
        create(SendGroupMessageResponseSchema, { result: response.result }),
        (id) => {
          const h = byAccount.get(id);
          if (h === undefined)
            throw new AppError(
              Code.InvalidArgument,
              "RECIPIENT_NOT_LISTED",
              "messages name a recipient that recipients does not list",
            );
          return h;
        },
      );
      return { ack };
    },

    async reportMessage(req, ctx) {
      const device = await auth(ctx);
      let sender: { accountId: string; deviceId: number } | undefined;
      if (req.from !== "") {
        const jid = parseUserJid(req.from);
        const accountId = await directory.findAccountId(jid.handle);
        if (accountId === undefined)
          throw new AppError(
            Code.InvalidArgument,
            "FRANKING_TAG_MISMATCH",
            "the server did not deliver this commitment from this sender",
          );
        sender = { accountId, deviceId: jid.device ?? 0 };
      }
      const r = await link.reports.reportMessage({
        reporter: { accountId: device.accountId, deviceId: device.deviceId },
        messageId: req.serverId,
        sender,
        serverTimestampMs: req.serverT,
        plaintext: req.plaintext,
        frankingKey: req.frankingKey,
        reportTag: req.reportTag,
        serverFrankingTag: req.serverFrankingTag,
        senderCertificate: req.senderCertificate,
        reason: req.reason,
      });
      ctx.log.info({ reportId: r.reportId }, "message reported");
      return { reportId: r.reportId };
    },
  };
}
