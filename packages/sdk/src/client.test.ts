import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone, create } from "@bufbuild/protobuf";
import { PreKeySignalMessage, ProtocolAddress, groupDecrypt } from "@signalapp/libsignal-client";
import { AppError, Code } from "@switchboard/errors";
import {
  AccountSchema,
  AccountWithDevicesSchema,
  App,
  DeviceSchema,
  EnvelopeSchema,
  EnvelopeType,
  GroupSchema,
  PreKeyBundleSchema,
  content,
} from "@switchboard/proto";
import type {
  AddGroupMembersRequest,
  CreateGroupRequest,
  EcPreKey,
  Envelope,
  GetAccountRequest,
  GetAccountResponse,
  GetGroupRequest,
  GetPreKeyBundlesRequest,
  GetPreKeyBundlesResponse,
  GetPreKeyCountRequest,
  GetPreKeyCountResponse,
  Group,
  RegisterAccountRequest,
  RegisterAccountResponse,
  RegisterDeviceRequest,
  RegisterDeviceResponse,
  RemoveDeviceRequest,
  RemoveGroupMembersRequest,
  ResolveHandleRequest,
  ResolveHandleResponse,
  SendGroupMessageRequest,
  SendMessageRequest,
  SignedPreKey,
  UploadKeysRequest,
  UploadKeysResponse,
} from "@switchboard/proto";
import { afterEach, describe, expect, it } from "vitest";
import { createClient, type SwitchboardClient } from "./client.js";
import type { ClientEvents } from "./events.js";
import { recordEvents, type RecordedEvents } from "./record-events.js";
import { AsyncQueue } from "./internal/async-queue.js";
import { createMemoryStore, type ClientStore } from "./store/client-store.js";
import { createFileStore } from "./store/file-store.js";
import type {
  AppCredentials,
  DeviceCredentials,
  GroupDeviceMismatch,
  GroupSendOutcome,
  ReceiveEvent,
  ReceiveSubscription,
  SendOutcome,
  Transport,
} from "./transport.js";

// ---- a tiny in-memory delivery service (a test double for unit tests of client logic) ---------

const APP_TOKEN = "test-app-token";

interface FakeDevice {
  deviceId: number;
  registrationId: number;
  password: string;
  identityKey?: Uint8Array;
  signedPreKey?: SignedPreKey;
  lastResort?: SignedPreKey;
  preKeys: EcPreKey[];
  kyberPreKeys: SignedPreKey[];
  queue: Envelope[];
  subscriber?: AsyncQueue<ReceiveEvent>;
}

interface FakeAccount {
  id: string;
  handle: string;
  devices: Map<number, FakeDevice>;
}

interface FakeGroup {
  id: string;
  creator: string;
  members: Set<string>;
  revision: number;
}

class FakeServer {
  readonly accounts = new Map<string, FakeAccount>();
  readonly groups = new Map<string, FakeGroup>();
  /** Every one-to-one envelope and group ciphertext committed, every send outcome and one-to-one request. */
  readonly log: {
    envelopes: Envelope[];
    groupCiphertexts: Uint8Array[];
    outcomes: string[];
    requests: SendMessageRequest[];
  } = {
    envelopes: [],
    groupCiphertexts: [],
    outcomes: [],
    requests: [],
  };
  private readonly sent = new Map<string, SendOutcome>();

  transport(): FakeTransport {
    return new FakeTransport(this);
  }

  account(accountId: string): FakeAccount {
    const account = this.accounts.get(accountId);
    if (account === undefined) throw new AppError(Code.NotFound, "ACCOUNT_NOT_FOUND", accountId);
    return account;
  }

  device(accountId: string, deviceId: number): FakeDevice {
    const device = this.account(accountId).devices.get(deviceId);
    if (device === undefined)
      throw new AppError(Code.NotFound, "DEVICE_NOT_FOUND", `${accountId}.${deviceId}`);
    return device;
  }

  authenticate(credentials: DeviceCredentials | undefined): FakeDevice & { accountId: string } {
    if (credentials === undefined)
      throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "no credentials");
    const device = this.accounts.get(credentials.accountId)?.devices.get(credentials.deviceId);
    if (device === undefined || device.password !== credentials.password) {
      throw new AppError(Code.Unauthenticated, "BAD_CREDENTIALS", "bad credentials");
    }
    return Object.assign(device, { accountId: credentials.accountId });
  }

  newDevice(deviceId: number, registrationId: number, password: string): FakeDevice {
    return { deviceId, registrationId, password, preKeys: [], kyberPreKeys: [], queue: [] };
  }

  enqueue(device: FakeDevice, envelope: Envelope): void {
    if (envelope.ephemeral) {
      device.subscriber?.push({ kind: "envelope", envelope });
      return;
    }
    device.queue.push(envelope);
    device.subscriber?.push({ kind: "envelope", envelope });
  }

  recordSend(key: string, outcome: SendOutcome): SendOutcome {
    this.log.outcomes.push(outcome.kind);
    if (outcome.kind === "sent") this.sent.set(key, outcome);
    return outcome;
  }

  previousSend(key: string): SendOutcome | undefined {
    const previous = this.sent.get(key);
    return previous?.kind === "sent" ? { ...previous, duplicate: true } : undefined;
  }

  groupProto(group: FakeGroup): Group {
    return create(GroupSchema, {
      id: group.id,
      creatorAccountId: group.creator,
      revision: BigInt(group.revision),
      members: [...group.members].sort().map((id) => this.accountProto(this.account(id))),
    });
  }

  accountProto(account: FakeAccount) {
    return create(AccountWithDevicesSchema, {
      account: create(AccountSchema, {
        id: account.id,
        handle: { app: App.WHATSAPP, value: account.handle },
      }),
      devices: [...account.devices.values()]
        .sort((a, b) => a.deviceId - b.deviceId)
        .map((d) => create(DeviceSchema, { deviceId: d.deviceId, registrationId: d.registrationId })),
    });
  }
}

class FakeTransport implements Transport {
  credentials: DeviceCredentials | undefined;

  constructor(private readonly server: FakeServer) {}

  setDeviceCredentials(credentials: DeviceCredentials): void {
    this.credentials = credentials;
  }

  async registerAccount(
    request: RegisterAccountRequest,
    auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    if (auth.appToken !== APP_TOKEN)
      throw new AppError(Code.Unauthenticated, "BAD_APP_TOKEN", "bad app token");
    const handle = request.handle?.value ?? "";
    if ([...this.server.accounts.values()].some((a) => a.handle === handle)) {
      throw new AppError(Code.AlreadyExists, "HANDLE_TAKEN", handle);
    }
    const account: FakeAccount = { id: randomUUID(), handle, devices: new Map() };
    account.devices.set(1, this.server.newDevice(1, request.registrationId, request.password));
    this.server.accounts.set(account.id, account);
    return {
      $typeName: "switchboard.delivery.v1.RegisterAccountResponse",
      account: this.server.accountProto(account).account,
      device: create(DeviceSchema, { deviceId: 1, registrationId: request.registrationId }),
      replaced: false,
    };
  }

  async registerDevice(
    request: RegisterDeviceRequest,
    auth?: AppCredentials,
  ): Promise<RegisterDeviceResponse> {
    if (auth === undefined) {
      const caller = this.server.authenticate(this.credentials);
      if (caller.accountId !== request.accountId || caller.deviceId !== 1) {
        throw new AppError(Code.PermissionDenied, "NOT_PRIMARY", "only the primary device links devices");
      }
    } else if (auth.appToken !== APP_TOKEN) {
      throw new AppError(Code.Unauthenticated, "BAD_APP_TOKEN", "bad app token");
    }
    const account = this.server.account(request.accountId);
    let deviceId = 2;
    while (account.devices.has(deviceId)) deviceId++;
    account.devices.set(deviceId, this.server.newDevice(deviceId, request.registrationId, request.password));
    return {
      $typeName: "switchboard.delivery.v1.RegisterDeviceResponse",
      device: create(DeviceSchema, { deviceId, registrationId: request.registrationId }),
    };
  }

  async removeDevice(request: RemoveDeviceRequest): Promise<void> {
    this.server.authenticate(this.credentials);
    if (request.deviceId === 1)
      throw new AppError(Code.FailedPrecondition, "PRIMARY_DEVICE", "cannot remove device 1");
    const account = this.server.account(request.accountId);
    account.devices
      .get(request.deviceId)
      ?.subscriber?.fail(new AppError(Code.Unauthenticated, "DEVICE_REMOVED", "removed"));
    account.devices.delete(request.deviceId);
  }

  async uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse> {
    const device = this.server.authenticate(this.credentials);
    if (request.identityKey.length > 0) device.identityKey = request.identityKey;
    if (request.signedPreKey !== undefined) device.signedPreKey = request.signedPreKey;
    if (request.lastResortKyberPreKey !== undefined) device.lastResort = request.lastResortKyberPreKey;
    // As the delivery service does, a key with an id already stored replaces the old key.
    const replace = <K extends { keyId: number }>(stored: K[], uploaded: K[]): K[] => [
      ...stored.filter((k) => !uploaded.some((u) => u.keyId === k.keyId)),
      ...uploaded,
    ];
    device.preKeys = replace(device.preKeys, request.oneTimePreKeys);
    device.kyberPreKeys = replace(device.kyberPreKeys, request.kyberPreKeys);
    return {
      $typeName: "switchboard.delivery.v1.UploadKeysResponse",
      oneTimePreKeyCount: device.preKeys.length,
      kyberPreKeyCount: device.kyberPreKeys.length,
    };
  }

  async getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    this.server.authenticate(this.credentials);
    const account = this.server.accounts.get(request.accountId);
    const wanted =
      account === undefined
        ? []
        : [...account.devices.values()].filter(
            (d) => request.deviceId === 0 || d.deviceId === request.deviceId,
          );
    if (account === undefined || wanted.length === 0) {
      return {
        $typeName: "switchboard.delivery.v1.GetPreKeyBundlesResponse",
        result: { case: "notFound", value: { $typeName: "switchboard.delivery.v1.NotFoundDevices" } },
      };
    }
    const bundles = wanted
      .filter((d) => d.identityKey !== undefined)
      .map((d) => {
        const kyber = d.kyberPreKeys.shift();
        return create(PreKeyBundleSchema, {
          deviceId: d.deviceId,
          registrationId: d.registrationId,
          identityKey: d.identityKey,
          signedPreKey: d.signedPreKey,
          oneTimePreKey: d.preKeys.shift(),
          kyberPreKey: kyber ?? d.lastResort,
          kyberPreKeyIsLastResort: kyber === undefined,
        });
      });
    return {
      $typeName: "switchboard.delivery.v1.GetPreKeyBundlesResponse",
      result: {
        case: "bundles",
        value: { $typeName: "switchboard.delivery.v1.PreKeyBundles", app: App.WHATSAPP, bundles },
      },
    };
  }

  async getPreKeyCount(_request: GetPreKeyCountRequest): Promise<GetPreKeyCountResponse> {
    const device = this.server.authenticate(this.credentials);
    return {
      $typeName: "switchboard.delivery.v1.GetPreKeyCountResponse",
      oneTimePreKeyCount: device.preKeys.length,
      kyberPreKeyCount: device.kyberPreKeys.length,
    };
  }

  async resolveHandle(request: ResolveHandleRequest): Promise<ResolveHandleResponse> {
    const account = [...this.server.accounts.values()].find((a) => a.handle === request.handle?.value);
    return account === undefined
      ? {
          $typeName: "switchboard.delivery.v1.ResolveHandleResponse",
          result: { case: "notFound", value: { $typeName: "switchboard.delivery.v1.NotFound" } },
        }
      : {
          $typeName: "switchboard.delivery.v1.ResolveHandleResponse",
          result: { case: "found", value: this.server.accountProto(account) },
        };
  }

  async getAccount(request: GetAccountRequest): Promise<GetAccountResponse> {
    const account = this.server.accounts.get(request.accountId);
    return account === undefined
      ? {
          $typeName: "switchboard.delivery.v1.GetAccountResponse",
          result: { case: "notFound", value: { $typeName: "switchboard.delivery.v1.NotFound" } },
        }
      : {
          $typeName: "switchboard.delivery.v1.GetAccountResponse",
          result: { case: "found", value: this.server.accountProto(account) },
        };
  }

  async sendMessage(request: SendMessageRequest): Promise<SendOutcome> {
    this.server.log.requests.push(request);
    const sender = this.server.authenticate(this.credentials);
    const key = `${sender.accountId}.${sender.deviceId}|${request.clientMessageId}`;
    const previous = this.server.previousSend(key);
    if (previous !== undefined) return previous;
    const destination = this.server.accounts.get(request.destinationAccountId);
    if (destination === undefined) return this.server.recordSend(key, { kind: "not_found" });
    const expected = [...destination.devices.keys()].filter(
      (d) => !(destination.id === sender.accountId && d === sender.deviceId),
    );
    const covered = request.messages.map((m) => m.deviceId);
    const missingDevices = expected.filter((d) => !covered.includes(d));
    const extraDevices = covered.filter((d) => !expected.includes(d));
    if (missingDevices.length > 0 || extraDevices.length > 0) {
      return this.server.recordSend(key, {
        kind: "mismatched",
        accountId: destination.id,
        missingDevices,
        extraDevices,
      });
    }
    const staleDevices = request.messages
      .filter((m) => destination.devices.get(m.deviceId)?.registrationId !== m.registrationId)
      .map((m) => m.deviceId);
    if (staleDevices.length > 0)
      return this.server.recordSend(key, { kind: "stale", accountId: destination.id, staleDevices });
    const messageId = randomUUID();
    const now = Date.now();
    for (const m of request.messages) {
      const envelope = create(EnvelopeSchema, {
        id: messageId,
        clientMessageId: request.clientMessageId,
        type: m.type,
        source: { accountId: sender.accountId, deviceId: sender.deviceId },
        sourceRegistrationId: sender.registrationId,
        destination: { accountId: destination.id, deviceId: m.deviceId },
        content: m.content,
        serverTimestampMs: BigInt(now),
        clientTimestampMs: request.clientTimestampMs,
        ephemeral: request.ephemeral,
        urgent: request.urgent,
      });
      this.server.log.envelopes.push(envelope);
      this.server.enqueue(this.server.device(destination.id, m.deviceId), envelope);
    }
    return this.server.recordSend(key, { kind: "sent", messageId, serverTimestampMs: now, duplicate: false });
  }

  async sendGroupMessage(request: SendGroupMessageRequest): Promise<GroupSendOutcome> {
    const sender = this.server.authenticate(this.credentials);
    const group = this.server.groups.get(request.groupId);
    if (group === undefined || !group.members.has(sender.accountId)) {
      this.server.log.outcomes.push("not_a_member");
      return { kind: "not_a_member" };
    }
    const recipients = [...group.members].flatMap((accountId) =>
      [...this.server.account(accountId).devices.values()]
        .filter((d) => !(accountId === sender.accountId && d.deviceId === sender.deviceId))
        .map((d) => ({ accountId, device: d })),
    );
    if (request.expectedRecipients.length > 0) {
      const mismatches = new Map<string, GroupDeviceMismatch>();
      const entry = (accountId: string) => {
        const e = mismatches.get(accountId) ?? {
          accountId,
          missingDevices: [],
          extraDevices: [],
          staleDevices: [],
        };
        mismatches.set(accountId, e);
        return e;
      };
      const expected = new Map(
        request.expectedRecipients.flatMap((r) =>
          r.devices.map((d) => [`${r.accountId}.${d.deviceId}`, d.registrationId] as const),
        ),
      );
      for (const { accountId, device } of recipients) {
        const registrationId = expected.get(`${accountId}.${device.deviceId}`);
        if (registrationId === undefined) entry(accountId).missingDevices.push(device.deviceId);
        else if (registrationId !== device.registrationId)
          entry(accountId).staleDevices.push(device.deviceId);
      }
      for (const r of request.expectedRecipients) {
        for (const d of r.devices) {
          if (!recipients.some((x) => x.accountId === r.accountId && x.device.deviceId === d.deviceId))
            entry(r.accountId).extraDevices.push(d.deviceId);
        }
      }
      if (mismatches.size > 0) {
        this.server.log.outcomes.push("group_mismatched");
        return { kind: "mismatched", accounts: [...mismatches.values()] };
      }
    }
    const messageId = randomUUID();
    this.server.log.groupCiphertexts.push(request.content);
    for (const { accountId, device } of recipients) {
      this.server.enqueue(
        device,
        create(EnvelopeSchema, {
          id: messageId,
          clientMessageId: request.clientMessageId,
          type: EnvelopeType.SENDER_KEY_MESSAGE,
          source: { accountId: sender.accountId, deviceId: sender.deviceId },
          destination: { accountId, deviceId: device.deviceId },
          content: request.content,
          serverTimestampMs: BigInt(Date.now()),
          clientTimestampMs: request.clientTimestampMs,
          ephemeral: request.ephemeral,
          groupId: group.id,
        }),
      );
    }
    this.server.log.outcomes.push("sent");
    return { kind: "sent", messageId, serverTimestampMs: Date.now(), duplicate: false };
  }

  async createGroup(request: CreateGroupRequest): Promise<Group> {
    const caller = this.server.authenticate(this.credentials);
    const group: FakeGroup = {
      id: randomUUID(),
      creator: caller.accountId,
      members: new Set([caller.accountId, ...request.memberAccountIds]),
      revision: 1,
    };
    this.server.groups.set(group.id, group);
    return this.server.groupProto(group);
  }

  async addGroupMembers(request: AddGroupMembersRequest): Promise<Group> {
    const group = this.member(request.groupId);
    for (const id of request.accountIds) group.members.add(id);
    group.revision++;
    return this.server.groupProto(group);
  }

  async removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group> {
    const group = this.member(request.groupId);
    for (const id of request.accountIds) group.members.delete(id);
    group.revision++;
    return this.server.groupProto(group);
  }

  async getGroup(request: GetGroupRequest): Promise<Group> {
    return this.server.groupProto(this.member(request.groupId));
  }

  receive(): ReceiveSubscription {
    const device = this.server.authenticate(this.credentials);
    device.subscriber?.fail(new AppError(Code.Aborted, "DISPLACED", "displaced"));
    const queue = new AsyncQueue<ReceiveEvent>();
    for (const envelope of device.queue) queue.push({ kind: "envelope", envelope });
    queue.push({ kind: "queue_empty" });
    device.subscriber = queue;
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      close: () => {
        queue.end(true);
        if (device.subscriber === queue) device.subscriber = undefined;
      },
    };
  }

  async ack(messageIds: string[]): Promise<void> {
    const device = this.server.authenticate(this.credentials);
    const acked = device.queue.filter((e) => messageIds.includes(e.id));
    device.queue = device.queue.filter((e) => !messageIds.includes(e.id));
    for (const e of acked) {
      if (e.groupId !== "" || e.type === EnvelopeType.SERVER_DELIVERY_RECEIPT || e.source === undefined)
        continue;
      const senderDevice = this.server.accounts.get(e.source.accountId)?.devices.get(e.source.deviceId);
      if (senderDevice === undefined) continue;
      this.server.enqueue(
        senderDevice,
        create(EnvelopeSchema, {
          id: randomUUID(),
          clientMessageId: e.clientMessageId,
          type: EnvelopeType.SERVER_DELIVERY_RECEIPT,
          source: { accountId: device.accountId, deviceId: device.deviceId },
          destination: e.source,
          clientTimestampMs: e.clientTimestampMs,
        }),
      );
    }
  }

  async close(): Promise<void> {}

  private member(groupId: string): FakeGroup {
    const caller = this.server.authenticate(this.credentials);
    const group = this.server.groups.get(groupId);
    if (group === undefined || !group.members.has(caller.accountId))
      throw new AppError(Code.NotFound, "GROUP_NOT_FOUND", groupId);
    return group;
  }
}

// ---- fixtures -----------------------------------------------------------------------------------

type Recorded = RecordedEvents;

interface TestDevice {
  client: SwitchboardClient;
  transport: FakeTransport;
  store: ClientStore;
  events: Recorded;
  accountId: string;
  deviceId: number;
}

function record(client: SwitchboardClient): Recorded {
  const events = recordEvents(client);
  return events;
}

async function openDevice(server: FakeServer, store: ClientStore = createMemoryStore()) {
  const transport = server.transport();
  const client = await createClient({ transport, store, preKeyBatchSize: 5, preKeyRefillThreshold: 3 });
  return { client, transport, store, events: record(client) };
}

async function registerUser(server: FakeServer, handle: string, store?: ClientStore): Promise<TestDevice> {
  const device = await openDevice(server, store);
  const { accountId, deviceId } = await device.client.registerAccount({
    handle: { app: App.WHATSAPP, value: handle },
    appToken: APP_TOKEN,
  });
  return { ...device, accountId, deviceId };
}

async function linkDevice(server: FakeServer, primary: TestDevice): Promise<TestDevice> {
  const device = await openDevice(server);
  const request = await device.client.createDeviceLinkRequest({
    accountId: primary.accountId,
    deviceName: "laptop",
  });
  const linked = await primary.client.approveDeviceLink(request);
  const { accountId, deviceId } = await device.client.completeDeviceLink({
    accountId: primary.accountId,
    deviceId: linked.deviceId,
  });
  return { ...device, accountId, deviceId };
}

/** Processes every queued envelope of the given devices until all their queues are empty. */
async function pump(server: FakeServer, ...devices: TestDevice[]): Promise<void> {
  for (let round = 0; round < 20; round++) {
    let processed = 0;
    for (const d of devices) {
      const queued = server.accounts.get(d.accountId)?.devices.get(d.deviceId)?.queue ?? [];
      for (const envelope of [...queued]) {
        await d.client.processEnvelope(envelope);
        processed++;
      }
    }
    if (processed === 0) return;
  }
  throw new Error("queues did not drain");
}

function texts(device: TestDevice): string[] {
  return device.events.message.map((m) => m.message.text);
}

function envelopesTo(server: FakeServer, device: TestDevice): Envelope[] {
  return server.log.envelopes.filter(
    (e) => e.destination?.accountId === device.accountId && e.destination.deviceId === device.deviceId,
  );
}

function noFailures(...devices: TestDevice[]): void {
  for (const d of devices) {
    expect(d.events.decryptionFailed).toEqual([]);
    expect(d.events.error).toEqual([]);
  }
}

// ---- tests ----------------------------------------------------------------------------------------

describe("SwitchboardClient", () => {
  it("establishes PQXDH sessions both ways: pre-key messages first, ratchet messages after", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000001");
    const bob = await registerUser(server, "+15550000002");
    const bobKyberBefore = server.device(bob.accountId, 1).kyberPreKeys.length;

    const sent = await alice.client.sendMessage(bob.accountId, { text: "hi bob" });
    expect(sent.kind).toBe("sent");
    const first = envelopesTo(server, bob)[0];
    expect(first?.type).toBe(EnvelopeType.PREKEY_MESSAGE);
    // Version 4 pre-key messages are PQXDH (X3DH plus a Kyber-1024 encapsulation).
    expect(PreKeySignalMessage.deserialize(new Uint8Array(first?.content ?? [])).version()).toBe(4);
    expect(server.device(bob.accountId, 1).kyberPreKeys.length).toBe(bobKyberBefore - 1);

    await pump(server, bob);
    expect(texts(bob)).toEqual(["hi bob"]);
    expect(bob.events.message[0]?.meta.sender).toEqual({ accountId: alice.accountId, deviceId: 1 });

    await bob.client.sendMessage(alice.accountId, { text: "hi alice" });
    await pump(server, alice);
    await alice.client.sendMessage(bob.accountId, { text: "how are you?" });
    await pump(server, bob);

    expect(texts(alice)).toEqual(["hi alice"]);
    expect(texts(bob)).toEqual(["hi bob", "how are you?"]);
    expect(envelopesTo(server, alice).map((e) => e.type)).toEqual([EnvelopeType.CIPHERTEXT]);
    expect(envelopesTo(server, bob).map((e) => e.type)).toEqual([
      EnvelopeType.PREKEY_MESSAGE,
      EnvelopeType.CIPHERTEXT,
    ]);
    // Acknowledged one-to-one messages come back as server delivery receipts.
    expect(alice.events.deliveryReceipt.map((r) => r.meta.clientMessageId)).toContain(
      sent.kind === "sent" ? sent.clientMessageId : "",
    );

    const aliceView = await alice.client.safetyNumber(bob.accountId, 1);
    const bobView = await bob.client.safetyNumber(alice.accountId, 1);
    expect(aliceView?.displayable).toMatch(/^\d{60}$/);
    expect(aliceView?.displayable).toBe(bobView?.displayable);
    expect(
      await alice.client.verifySafetyNumber(bob.accountId, 1, bobView?.scannable ?? new Uint8Array()),
    ).toBe(true);
    noFailures(alice, bob);
  });

  it("asks for no server delivery receipt when sent with serverReceipt: false", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000021");
    const bob = await registerUser(server, "+15550000022");
    await alice.client.sendMessage(bob.accountId, { text: "quiet", serverReceipt: false });
    await alice.client.sendMessage(bob.accountId, { text: "loud" });
    await alice.client.sendMessage(bob.accountId, { text: "loud too", serverReceipt: true });
    expect(
      server.log.requests
        .filter((r) => r.destinationAccountId === bob.accountId)
        .map((r) => r.noDeliveryReceipt),
    ).toEqual([true, false, false]);
  });

  it("delivers receipts, and typing indicators only to connected devices", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000011");
    const bob = await registerUser(server, "+15550000012");
    const sent = await alice.client.sendMessage(bob.accountId, { text: "read me" });
    await pump(server, bob);
    const timestampMs = bob.events.message[0]?.message.timestampMs ?? 0n;
    expect(sent.kind === "sent" && BigInt(sent.timestampMs)).toBe(timestampMs);

    await bob.client.sendReceipt(alice.accountId, content.ReceiptType.READ, [timestampMs]);
    await bob.client.sendTyping({ accountId: alice.accountId }, content.TypingAction.STARTED);
    await pump(server, alice);
    expect(alice.events.receipt.map((r) => [r.receipt.type, r.receipt.timestampsMs])).toEqual([
      [content.ReceiptType.READ, [timestampMs]],
    ]);
    expect(alice.events.typing).toEqual([]);

    const received = new Promise<ClientEvents["typing"]>((resolve) => alice.client.on("typing", resolve));
    const drained = new Promise<void>((resolve) => alice.client.on("queueEmpty", () => resolve()));
    alice.client.start();
    await drained;
    await bob.client.sendTyping({ accountId: alice.accountId }, content.TypingAction.STARTED);
    expect((await received).typing.action).toBe(content.TypingAction.STARTED);
    await alice.client.stop();
    noFailures(alice, bob);
  });

  it("sends SyncMessage copies to the sender's other devices", async () => {
    const server = new FakeServer();
    const alice1 = await registerUser(server, "+15550000021");
    const alice2 = await linkDevice(server, alice1);
    const bob = await registerUser(server, "+15550000022");
    expect(alice2.deviceId).toBe(2);

    await alice1.client.sendMessage(bob.accountId, { text: "from the phone" });
    await pump(server, bob, alice2);
    expect(texts(bob)).toEqual(["from the phone"]);
    expect(alice2.events.sync.map((s) => [s.destinationAccountId, s.message.text])).toEqual([
      [bob.accountId, "from the phone"],
    ]);
    expect(texts(alice2)).toEqual([]);

    await alice2.client.sendMessage(bob.accountId, { text: "from the laptop" });
    await pump(server, bob, alice1);
    expect(texts(bob)).toEqual(["from the phone", "from the laptop"]);
    expect(bob.events.message[1]?.meta.sender.deviceId).toBe(2);
    expect(alice1.events.sync.map((s) => s.message.text)).toEqual(["from the laptop"]);

    // Bob replies to both of Alice's devices.
    await bob.client.sendMessage(alice1.accountId, { text: "hello both" });
    await pump(server, alice1, alice2);
    expect(texts(alice1)).toEqual(["hello both"]);
    expect(texts(alice2)).toEqual(["hello both"]);
    noFailures(alice1, alice2, bob);
  });

  it("repairs a mismatched device list and retries the send", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000031");
    const bob1 = await registerUser(server, "+15550000032");
    await alice.client.sendMessage(bob1.accountId, { text: "one" });
    await pump(server, bob1);

    const bob2 = await linkDevice(server, bob1);
    server.log.outcomes.length = 0;
    await alice.client.sendMessage(bob1.accountId, { text: "two" });
    expect(server.log.outcomes).toEqual(["mismatched", "sent"]);
    await pump(server, bob1, bob2);
    expect(texts(bob1)).toEqual(["one", "two"]);
    expect(texts(bob2)).toEqual(["two"]);

    await bob1.client.unlinkDevice(bob2.deviceId);
    server.log.outcomes.length = 0;
    await alice.client.sendMessage(bob1.accountId, { text: "three" });
    expect(server.log.outcomes).toEqual(["mismatched", "sent"]);
    await pump(server, bob1);
    expect(texts(bob1)).toEqual(["one", "two", "three"]);

    const missing = await alice.client.sendMessage(randomUUID(), { text: "nobody" });
    expect(missing).toEqual({ kind: "recipient_not_found" });
    noFailures(alice, bob1);
  });

  it("repairs a stale device and surfaces its identity key change with a new safety number", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000041");
    const bob1 = await registerUser(server, "+15550000042");
    const bob2 = await linkDevice(server, bob1);
    await alice.client.sendMessage(bob1.accountId, { text: "before" });
    await pump(server, bob1, bob2);
    const before = await alice.client.safetyNumber(bob1.accountId, 2);

    // Bob reinstalls his second device: same device id, new registration id and identity key.
    await bob1.client.unlinkDevice(2);
    let reinstalled: TestDevice;
    do {
      server.account(bob1.accountId).devices.delete(2);
      reinstalled = await linkDevice(server, bob1);
    } while (server.device(bob1.accountId, 2).registrationId === bob2.client["local"]?.registrationId);
    expect(reinstalled.deviceId).toBe(2);

    server.log.outcomes.length = 0;
    await alice.client.sendMessage(bob1.accountId, { text: "after" });
    expect(server.log.outcomes).toEqual(["stale", "sent"]);
    await pump(server, bob1, reinstalled);
    expect(texts(reinstalled)).toEqual(["after"]);

    expect(alice.events.identityChanged).toHaveLength(1);
    const change = alice.events.identityChanged[0];
    expect(change).toMatchObject({ accountId: bob1.accountId, deviceId: 2 });
    expect(change?.safetyNumber).not.toBe(before?.displayable);
    expect(change?.safetyNumber).toBe(
      (await reinstalled.client.safetyNumber(alice.accountId, 1))?.displayable,
    );
    noFailures(alice, bob1, reinstalled);
  });

  it("sends group messages with sender keys and rotates the key when a member is removed", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000051");
    const bob = await registerUser(server, "+15550000052");
    const carol = await registerUser(server, "+15550000053");
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);

    const first = await alice.client.sendGroupMessage(group.id, { text: "hello group" });
    expect(first.kind).toBe("sent");
    await pump(server, bob, carol);
    for (const member of [bob, carol]) {
      expect(texts(member)).toEqual(["hello group"]);
      expect(member.events.message[0]?.meta.groupId).toBe(group.id);
      expect(member.events.message[0]?.message.group?.groupId).toBe(group.id);
    }
    // The sender key went pairwise; the message itself once, as one sender-key ciphertext.
    expect(envelopesTo(server, bob).map((e) => e.type)).toEqual([EnvelopeType.PREKEY_MESSAGE]);
    expect(server.log.groupCiphertexts).toHaveLength(1);

    await alice.client.sendGroupMessage(group.id, { text: "no redistribution needed" });
    expect(envelopesTo(server, bob)).toHaveLength(1);
    await pump(server, bob, carol);

    const before = await alice.client.groupDistributionId(group.id);
    await alice.client.removeGroupMembers(group.id, [carol.accountId]);
    expect(await alice.client.groupDistributionId(group.id)).not.toBe(before);
    await alice.client.sendGroupMessage(group.id, { text: "carol is gone" });
    await pump(server, bob, carol);
    expect(texts(bob)).toEqual(["hello group", "no redistribution needed", "carol is gone"]);
    expect(texts(carol)).toEqual(["hello group", "no redistribution needed"]);

    // Carol's copy of the old sender key cannot read the new ciphertext.
    const latest = server.log.groupCiphertexts.at(-1) ?? new Uint8Array();
    await expect(
      groupDecrypt(ProtocolAddress.new(alice.accountId, 1), carol.store.senderKey, new Uint8Array(latest)),
    ).rejects.toThrow();

    // Bob still had Carol in his view: the server reports her devices as extra, Bob refreshes
    // the group, rotates his own sender key and retries.
    await bob.client.sendGroupMessage(group.id, { text: "bob to the group" });
    await bob.client.getGroup(group.id);
    server.log.outcomes.length = 0;
    await alice.client.sendGroupMessage(group.id, { text: "still here" });
    expect(server.log.outcomes).toEqual(["sent"]);
    await pump(server, alice, bob, carol);
    expect(texts(alice)).toEqual(["bob to the group"]);
    expect(texts(carol)).toEqual(["hello group", "no redistribution needed"]);
    noFailures(alice, bob, carol);
  });

  it("rotates a sender key when it learns of a removal through a mismatched group send", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000061");
    const bob = await registerUser(server, "+15550000062");
    const carol = await registerUser(server, "+15550000063");
    const group = await alice.client.createGroup([bob.accountId, carol.accountId]);
    await bob.client.sendGroupMessage(group.id, { text: "bob's first" });
    await pump(server, alice, carol);
    const before = await bob.client.groupDistributionId(group.id);

    await alice.client.removeGroupMembers(group.id, [carol.accountId]);
    server.log.outcomes.length = 0;
    await bob.client.sendGroupMessage(group.id, { text: "bob's second" });
    expect(server.log.outcomes[0]).toBe("group_mismatched");
    expect(server.log.outcomes.at(-1)).toBe("sent");
    expect(await bob.client.groupDistributionId(group.id)).not.toBe(before);
    await pump(server, alice, carol);
    expect(texts(alice)).toEqual(["bob's first", "bob's second"]);
    expect(texts(carol)).toEqual(["bob's first"]);
    noFailures(alice, bob, carol);
  });

  it("gives group messages of one's own other devices as sync", async () => {
    const server = new FakeServer();
    const alice1 = await registerUser(server, "+15550000071");
    const alice2 = await linkDevice(server, alice1);
    const bob = await registerUser(server, "+15550000072");
    const group = await alice1.client.createGroup([bob.accountId]);
    await alice1.client.sendGroupMessage(group.id, { text: "to the group" });
    await pump(server, alice2, bob);
    expect(texts(bob)).toEqual(["to the group"]);
    expect(alice2.events.sync.map((s) => [s.destinationAccountId, s.message.text, s.meta.groupId])).toEqual([
      [undefined, "to the group", group.id],
    ]);
    noFailures(alice1, alice2, bob);
  });

  it("resets its identity: peers see the new key with the next message and keep talking", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000131");
    const bob = await registerUser(server, "+15550000132");
    const group = await bob.client.createGroup([alice.accountId]);
    await bob.client.sendGroupMessage(group.id, { text: "group before" });
    await alice.client.sendMessage(bob.accountId, { text: "before" });
    await pump(server, alice, bob);
    const before = await alice.client.safetyNumber(bob.accountId, 1);
    const distributionId = await bob.client.groupDistributionId(group.id);
    const kyberIds = server.device(bob.accountId, 1).kyberPreKeys.map((k) => k.keyId);

    await bob.client.resetIdentity();
    const bobServer = server.device(bob.accountId, 1);
    // One-time Kyber keys are re-signed under the same ids; none signed by the old key remains.
    expect(bobServer.kyberPreKeys.map((k) => k.keyId).sort((a, b) => a - b)).toEqual(kyberIds);
    expect(await bob.client.groupDistributionId(group.id)).not.toBe(distributionId);
    // The reset to Alice is an empty Content: a pre-key message she reads without an app event.
    expect(envelopesTo(server, alice).at(-1)?.type).toBe(EnvelopeType.PREKEY_MESSAGE);
    await pump(server, alice);
    expect(alice.events.identityChanged).toEqual([
      {
        accountId: bob.accountId,
        deviceId: 1,
        safetyNumber: (await bob.client.safetyNumber(alice.accountId, 1))?.displayable,
      },
    ]);
    expect(alice.events.identityChanged[0]?.safetyNumber).not.toBe(before?.displayable);

    await alice.client.sendMessage(bob.accountId, { text: "after" });
    await bob.client.sendGroupMessage(group.id, { text: "group after" });
    const carol = await registerUser(server, "+15550000133");
    await carol.client.sendMessage(bob.accountId, { text: "from a newcomer" });
    await pump(server, alice, bob);
    expect(texts(bob)).toEqual(["before", "after", "from a newcomer"]);
    expect(texts(alice)).toEqual(["group before", "group after"]);
    noFailures(alice, bob, carol);
  });

  it("resets the session with a device whose message fails to decrypt, at most once a minute", async () => {
    let nowMs = Date.now();
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000141");
    const bobStore = createMemoryStore();
    const bobTransport = server.transport();
    const bob0 = await createClient({ transport: bobTransport, store: bobStore, now: () => nowMs });
    const bobEvents = record(bob0);
    const registered = await bob0.registerAccount({
      handle: { app: App.WHATSAPP, value: "+15550000142" },
      appToken: APP_TOKEN,
    });
    const bob: TestDevice = {
      client: bob0,
      transport: bobTransport,
      store: bobStore,
      events: bobEvents,
      ...registered,
    };
    await alice.client.sendMessage(bob.accountId, { text: "one" });
    await pump(server, bob);
    // Bob loses his session with Alice (as after restoring an old backup).
    await bobStore.session.deleteSession(ProtocolAddress.new(alice.accountId, 1));

    await alice.client.sendMessage(bob.accountId, { text: "lost" });
    await alice.client.sendMessage(bob.accountId, { text: "lost too" });
    await pump(server, bob);
    expect(bob.events.decryptionFailed).toHaveLength(2);
    const resets = envelopesTo(server, alice).filter((e) => e.type === EnvelopeType.PREKEY_MESSAGE);
    expect(resets).toHaveLength(1);
    await pump(server, alice);
    expect(alice.events.identityChanged).toEqual([]);
    await alice.client.sendMessage(bob.accountId, { text: "healed" });
    await pump(server, bob);
    expect(texts(bob)).toEqual(["one", "healed"]);

    // A minute later another failure resets the session again.
    await bobStore.session.deleteSession(ProtocolAddress.new(alice.accountId, 1));
    nowMs += 61_000;
    await alice.client.sendMessage(bob.accountId, { text: "lost again" });
    await pump(server, bob);
    expect(envelopesTo(server, alice).filter((e) => e.type === EnvelopeType.PREKEY_MESSAGE)).toHaveLength(2);
    expect(alice.events.error).toEqual([]);
    expect(bob.events.error).toEqual([]);
  });

  it("answers not_a_member to a group send by a removed member that never sent to the group", async () => {
    const server = new FakeServer();
    const alice = await registerUser(server, "+15550000151");
    const bob = await registerUser(server, "+15550000152");
    const group = await alice.client.createGroup([bob.accountId]);
    await alice.client.removeGroupMembers(group.id, [bob.accountId]);
    expect(await bob.client.sendGroupMessage(group.id, { text: "still here?" })).toEqual({
      kind: "not_a_member",
    });
  });

  describe("de-duplication", () => {
    const dirs: string[] = [];
    afterEach(async () => {
      for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
    });

    it("drops a redelivered envelope, also after a restart from the file store", async () => {
      const dir = await mkdtemp(join(tmpdir(), "sdk-dedupe-"));
      dirs.push(dir);
      const path = join(dir, "bob.json");
      const server = new FakeServer();
      const alice = await registerUser(server, "+15550000081");
      const bob = await registerUser(server, "+15550000082", await createFileStore(path));

      await alice.client.sendMessage(bob.accountId, { text: "once" });
      const envelope = clone(EnvelopeSchema, server.device(bob.accountId, 1).queue[0] as Envelope);
      await pump(server, bob);
      await bob.client.processEnvelope(envelope);
      // Same sender and client message id under a new server id is the same message too.
      await bob.client.processEnvelope(create(EnvelopeSchema, { ...envelope, id: randomUUID() }));
      expect(texts(bob)).toEqual(["once"]);
      noFailures(bob);

      await bob.client.close();
      await bob.store.close();
      const restarted = await openDevice(server, await createFileStore(path));
      restarted.transport.setDeviceCredentials(bob.transport.credentials as DeviceCredentials);
      const bobAgain: TestDevice = { ...restarted, accountId: bob.accountId, deviceId: 1 };
      await bobAgain.client.processEnvelope(envelope);
      expect(bobAgain.events.message).toEqual([]);

      // The ratchet state survived the restart as well.
      await alice.client.sendMessage(bob.accountId, { text: "twice" });
      await pump(server, bobAgain);
      expect(texts(bobAgain)).toEqual(["twice"]);
      noFailures(bobAgain);
    });

    it("replays content that was decrypted but not yet handled when the process stopped", async () => {
      const server = new FakeServer();
      const alice = await registerUser(server, "+15550000091");
      const store = createMemoryStore();
      const bob = await registerUser(server, "+15550000092", store);
      await alice.client.sendMessage(bob.accountId, { text: "survives a crash" });
      const envelope = server.device(bob.accountId, 1).queue[0] as Envelope;

      // Simulate a crash between decryption and delivery: ingest only.
      await bob.client["exclusive"](() => bob.client["ingestLocked"](envelope));
      expect(bob.events.message).toEqual([]);
      const snapshot = store.snapshot();
      expect(snapshot.pending).toHaveLength(1);

      const restarted = await openDevice(server, createMemoryStore({ data: snapshot }));
      const messages = new Promise<ClientEvents["message"]>((resolve) =>
        restarted.client.on("message", resolve),
      );
      const drained = new Promise<void>((resolve) => restarted.client.on("queueEmpty", () => resolve()));
      restarted.client.start();
      expect((await messages).message.text).toBe("survives a crash");
      // The redelivered envelope is recognised and acknowledged without a second delivery.
      await drained;
      await restarted.client.stop();
      expect(restarted.events.message).toHaveLength(1);
      expect((restarted.store as ReturnType<typeof createMemoryStore>).snapshot().pending).toEqual([]);
      expect(
        server.device(bob.accountId, 1).queue.filter((e) => e.type !== EnvelopeType.SERVER_DELIVERY_RECEIPT),
      ).toEqual([]);
    });
  });

  it("refills one-time pre-keys below the threshold and keeps a rotated signed pre-key for in-flight messages", async () => {
    const server = new FakeServer();
    const bob = await registerUser(server, "+15550000101");
    const senders = await Promise.all([1, 2, 3].map((i) => registerUser(server, `+1555000011${i}`)));
    // Dave fetches Bob's current bundle now and writes to him after the rotation.
    const dave = senders[2] as TestDevice;
    for (const s of senders.slice(0, 2)) await s.client.sendMessage(bob.accountId, { text: "hello" });
    await dave.client.sendMessage(bob.accountId, { text: "built before the rotation" });
    const bobServer = server.device(bob.accountId, 1);
    expect(bobServer.preKeys).toHaveLength(2);
    expect(bobServer.kyberPreKeys).toHaveLength(2);

    const oldSignedId = bobServer.signedPreKey?.keyId;
    const report = await bob.client.rotateSignedPreKey();
    expect(report).toEqual({ uploadedPreKeys: 5, uploadedKyberPreKeys: 5, rotatedSignedPreKey: true });
    expect(bobServer.preKeys).toHaveLength(7);
    expect(bobServer.signedPreKey?.keyId).not.toBe(oldSignedId);

    await pump(server, bob);
    expect(texts(bob)).toEqual(["hello", "hello", "built before the rotation"]);
    expect(await bob.client.maintainKeys()).toEqual({
      uploadedPreKeys: 0,
      uploadedKyberPreKeys: 0,
      rotatedSignedPreKey: false,
    });

    const erin = await registerUser(server, "+15550000120");
    await erin.client.sendMessage(bob.accountId, { text: "new bundle" });
    await pump(server, bob);
    expect(texts(bob).at(-1)).toBe("new bundle");
    noFailures(bob);
  });
});
