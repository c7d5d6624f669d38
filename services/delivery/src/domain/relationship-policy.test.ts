import {
  RELATIONSHIP_ACCEPTED,
  RELATIONSHIP_BLOCKED,
  REQUESTS_POLICY_DELIVER_MARKED,
  REQUESTS_POLICY_HOLD,
  relationshipKey,
  type SendPolicies,
} from "@switchboard/storage";
import { describe, expect, test } from "vitest";
import { decideDirect, decideInvite, hasBlocked } from "./relationship-policy.js";

const A = "a";
const B = "b";

function facts(
  over: {
    rel?: Array<[string, string, number]>;
    accounts?: Record<string, { minor?: boolean; requestsPolicy?: number }>;
  } = {},
): SendPolicies {
  const accounts: Record<string, { minor?: boolean; requestsPolicy?: number }> = {
    [A]: {},
    [B]: {},
    ...over.accounts,
  };
  return {
    relationships: new Map((over.rel ?? []).map(([o, p, s]) => [relationshipKey(o, p), s])),
    accounts: new Map(
      Object.entries(accounts).map(([id, a]) => [
        id,
        { minor: a.minor ?? false, requestsPolicy: a.requestsPolicy ?? 0 },
      ]),
    ),
  };
}

describe("decideDirect", () => {
  test("marks a stranger's first message and counts it as a new conversation", () => {
    expect(decideDirect(facts(), A, B)).toEqual({
      action: "deliver_marked",
      newConversation: true,
      recordSenderRelationship: true,
    });
  });

  test("holds for recipients with the HOLD policy; delivers once they accepted the sender", () => {
    const hold = { accounts: { [B]: { requestsPolicy: REQUESTS_POLICY_HOLD } } };
    expect(decideDirect(facts(hold), A, B).action).toBe("hold");
    expect(decideDirect(facts({ ...hold, rel: [[B, A, RELATIONSHIP_ACCEPTED]] }), A, B)).toEqual({
      action: "deliver",
      newConversation: false,
      recordSenderRelationship: true,
    });
  });

  test("a conversation the sender started is not new, and a reply to it is delivered unmarked", () => {
    const started = facts({ rel: [[A, B, RELATIONSHIP_ACCEPTED]] });
    expect(decideDirect(started, A, B)).toMatchObject({
      newConversation: false,
      recordSenderRelationship: false,
    });
    expect(decideDirect(started, B, A)).toMatchObject({ action: "deliver", newConversation: false });
  });

  test("drops messages of a blocked sender and of adults to minors they are strangers to", () => {
    expect(decideDirect(facts({ rel: [[B, A, RELATIONSHIP_BLOCKED]] }), A, B).action).toBe("drop");
    expect(decideDirect(facts({ accounts: { [B]: { minor: true } } }), A, B).action).toBe("drop");
    expect(
      decideDirect(
        facts({ accounts: { [B]: { minor: true, requestsPolicy: REQUESTS_POLICY_DELIVER_MARKED } } }),
        A,
        B,
      ).action,
    ).toBe("drop");
  });

  test("holds a minor's requests from other minors unless its policy is explicitly DELIVER_MARKED", () => {
    const minors = { [A]: { minor: true }, [B]: { minor: true } };
    expect(decideDirect(facts({ accounts: minors }), A, B).action).toBe("hold");
    expect(
      decideDirect(
        facts({
          accounts: { ...minors, [B]: { minor: true, requestsPolicy: REQUESTS_POLICY_DELIVER_MARKED } },
        }),
        A,
        B,
      ).action,
    ).toBe("deliver_marked");
  });

  test("delivers to the sender's own account", () => {
    expect(decideDirect(facts({ accounts: { [A]: { minor: true } } }), A, A).action).toBe("deliver");
  });
});

describe("decideInvite", () => {
  test("adds accepted and deliver-marked accounts, invites holders, drops minors and blockers", () => {
    expect(decideInvite(facts(), A, B)).toBe("add");
    expect(decideInvite(facts({ accounts: { [B]: { requestsPolicy: REQUESTS_POLICY_HOLD } } }), A, B)).toBe(
      "invite",
    );
    expect(decideInvite(facts({ accounts: { [B]: { minor: true } } }), A, B)).toBe("drop");
    expect(decideInvite(facts({ accounts: { [A]: { minor: true }, [B]: { minor: true } } }), A, B)).toBe(
      "invite",
    );
    expect(decideInvite(facts({ rel: [[B, A, RELATIONSHIP_BLOCKED]] }), A, B)).toBe("drop");
    expect(
      decideInvite(facts({ accounts: { [B]: { minor: true } }, rel: [[B, A, RELATIONSHIP_ACCEPTED]] }), A, B),
    ).toBe("add");
  });

  test("hasBlocked reads the member's relationship to the sender", () => {
    expect(hasBlocked(facts({ rel: [[B, A, RELATIONSHIP_BLOCKED]] }), B, A)).toBe(true);
    expect(hasBlocked(facts({ rel: [[A, B, RELATIONSHIP_BLOCKED]] }), B, A)).toBe(false);
  });
});
