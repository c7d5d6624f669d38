import {
  RELATIONSHIP_ACCEPTED,
  RELATIONSHIP_BLOCKED,
  REQUESTS_POLICY_DELIVER_MARKED,
  REQUESTS_POLICY_HOLD,
  relationshipKey,
  type SendPolicies,
} from "@switchboard/storage";

/**
 * What happens to a one-to-one message, decided from metadata only (see docs/safety.md):
 * - `deliver`: the recipient accepted the sender (or it is the sender's own account);
 * - `deliver_marked`: a request delivered at once, marked (recipient policy DELIVER_MARKED);
 * - `hold`: a request held until accepted (recipient policy HOLD; a minor recipient unless its
 *   policy is explicitly DELIVER_MARKED);
 * - `drop`: answered `sent` like any other send but not stored (the recipient blocked the
 *   sender, or the recipient is a minor and the sender an adult it has not accepted).
 */
export type DirectAction = "deliver" | "deliver_marked" | "hold" | "drop";

/** The decision for one one-to-one send. */
export interface DirectDecision {
  action: DirectAction;
  /** No relationship exists in either direction: a new conversation (rate-limited). */
  newConversation: boolean;
  /** The sender has no relationship with the recipient yet: record `sender accepts recipient`. */
  recordSenderRelationship: boolean;
}

/**
 * Decides a one-to-one send of `senderAccountId` to `recipientAccountId` from the batch's
 * relationship facts (read once per batch by `readSendPolicies`). Pure.
 */
export function decideDirect(
  facts: SendPolicies,
  senderAccountId: string,
  recipientAccountId: string,
): DirectDecision {
  if (senderAccountId === recipientAccountId)
    return { action: "deliver", newConversation: false, recordSenderRelationship: false };
  const theirs = facts.relationships.get(relationshipKey(recipientAccountId, senderAccountId));
  const mine = facts.relationships.get(relationshipKey(senderAccountId, recipientAccountId));
  const recordSenderRelationship = mine === undefined;
  if (theirs === RELATIONSHIP_BLOCKED)
    return { action: "drop", newConversation: false, recordSenderRelationship };
  if (theirs === RELATIONSHIP_ACCEPTED)
    return { action: "deliver", newConversation: false, recordSenderRelationship };
  const newConversation = mine === undefined;
  const recipient = facts.accounts.get(recipientAccountId);
  const sender = facts.accounts.get(senderAccountId);
  if (recipient?.minor) {
    // A minor hears nothing from adults it has not accepted. Other minors' requests are held,
    // unless the policy is explicitly DELIVER_MARKED (an app that holds requests itself).
    if (!sender?.minor) return { action: "drop", newConversation, recordSenderRelationship };
    const marked = recipient.requestsPolicy === REQUESTS_POLICY_DELIVER_MARKED;
    return { action: marked ? "deliver_marked" : "hold", newConversation, recordSenderRelationship };
  }
  return {
    action: recipient?.requestsPolicy === REQUESTS_POLICY_HOLD ? "hold" : "deliver_marked",
    newConversation,
    recordSenderRelationship,
  };
}

/** True when a group member blocked the sender: its copies of the sender's group messages are dropped. */
export const hasBlocked = (facts: SendPolicies, memberAccountId: string, senderAccountId: string): boolean =>
  facts.relationships.get(relationshipKey(memberAccountId, senderAccountId)) === RELATIONSHIP_BLOCKED;

/** How adding `inviteeAccountId` to a group by `inviterAccountId` is handled. */
export type InviteAction = "add" | "invite" | "drop";

/**
 * Decides a group addition: members who accepted the inviter are added; blocked inviters' and
 * adults' additions of minors they have no accepted relationship with are dropped (the inviter
 * sees the same as for a held invitation: the account is not a member); accounts that hold
 * requests (and minors) get a held invitation; everyone else is added.
 */
export function decideInvite(
  facts: SendPolicies,
  inviterAccountId: string,
  inviteeAccountId: string,
): InviteAction {
  if (inviterAccountId === inviteeAccountId) return "add";
  const theirs = facts.relationships.get(relationshipKey(inviteeAccountId, inviterAccountId));
  if (theirs === RELATIONSHIP_BLOCKED) return "drop";
  if (theirs === RELATIONSHIP_ACCEPTED) return "add";
  const invitee = facts.accounts.get(inviteeAccountId);
  const inviter = facts.accounts.get(inviterAccountId);
  if (invitee?.minor) {
    if (!inviter?.minor) return "drop";
    return invitee.requestsPolicy === REQUESTS_POLICY_DELIVER_MARKED ? "add" : "invite";
  }
  return invitee?.requestsPolicy === REQUESTS_POLICY_HOLD ? "invite" : "add";
}
