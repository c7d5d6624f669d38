// The Transport over the delivery service's gRPC API: Connect for send/receive/ack, unary RPCs
// for the directory, keys and groups.
import * as grpc from "@grpc/grpc-js";
import { AppError, Code } from "@switchboard/errors";
import { createClient as createGrpcClient } from "@switchboard/grpc";
import type { BidiStream, ServiceClient } from "@switchboard/grpc";
import {
  DirectoryService,
  GroupService,
  KeyService,
  MessageService,
  ReportService,
  RequestService,
  SealedSenderService,
} from "@switchboard/proto";
import type {
  AddGroupMembersRequest,
  ConnectRequestSchema,
  ConnectResponse,
  ConnectResponseSchema,
  CreateGroupRequest,
  ErrorStatus,
  GetAccountRequest,
  GetAccountResponse,
  GetGroupRequest,
  GetPreKeyBundlesRequest,
  GetPreKeyBundlesResponse,
  GetPreKeyCountRequest,
  GetPreKeyCountResponse,
  Group,
  MessageRequest,
  RegisterAccountRequest,
  RegisterAccountResponse,
  RegisterDeviceRequest,
  RegisterDeviceResponse,
  RemoveDeviceRequest,
  RemoveGroupMembersRequest,
  ReportMessageRequest,
  ReportMessageResponse,
  RequestsPolicy,
  ResolveHandleRequest,
  ResolveHandleResponse,
  SendGroupMessageRequest,
  SendMessageRequest,
  SendMultiRecipientMessageRequest,
  SendResult,
  UploadKeysRequest,
  UploadKeysResponse,
} from "@switchboard/proto";
import { basicAuthorization, bearerAuthorization } from "./credentials.js";
import { AsyncQueue } from "./internal/async-queue.js";
import { groupSendOutcomeFromProto, sendOutcomeFromProto } from "./outcomes.js";
import type {
  AppCredentials,
  DeviceCredentials,
  GroupSendOutcome,
  ReceiveEvent,
  ReceiveOptions,
  ReceiveSubscription,
  RequestTarget,
  SendOutcome,
  Transport,
} from "./transport.js";

/** Options of createDeliveryTransport. */
export interface DeliveryTransportOptions {
  /** The delivery service's gRPC address, `host:port`. */
  target: string;
  /** Channel credentials; default insecure (use TLS credentials outside local development). */
  channelCredentials?: grpc.ChannelCredentials;
  /** grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** The device to act as; can be set later with setDeviceCredentials. */
  credentials?: DeviceCredentials;
  /** Deadline of unary calls and of waiting for a send's result, ms. Default 15,000. */
  callTimeoutMs?: number;
}

const MAX_ACK_IDS = 1000;

function errorFromStatus(status: ErrorStatus | undefined, fallback: string): AppError {
  if (status === undefined) return new AppError(Code.Unknown, "UNKNOWN", fallback);
  const known = Object.values(Code).includes(status.code);
  const code = known ? (status.code as Code) : Code.Unknown;
  return new AppError(
    code,
    status.reason === "" ? "UNKNOWN" : status.reason,
    status.message === "" ? fallback : status.message,
  );
}

/** One Connect stream: sends matched to results by correlation id, and at most one subscription. */
class ConnectSession {
  readonly pending = new Map<bigint, { resolve: (r: SendResult) => void; reject: (err: unknown) => void }>();
  subscription: AsyncQueue<ReceiveEvent> | undefined;
  closed = false;
  private nextId = 1n;

  constructor(readonly stream: BidiStream<typeof ConnectRequestSchema, typeof ConnectResponseSchema>) {
    void this.read();
  }

  private async read(): Promise<void> {
    try {
      for await (const frame of this.stream.responses) this.onFrame(frame);
      this.fail(new AppError(Code.Unavailable, "STREAM_CLOSED", "the Connect stream ended"));
    } catch (err) {
      this.fail(err);
    }
  }

  private onFrame(response: ConnectResponse): void {
    const frame = response.frame;
    switch (frame.case) {
      case "delivery":
        this.subscription?.push({ kind: "envelope", envelope: frame.value });
        break;
      case "queueEmpty":
        this.subscription?.push({ kind: "queue_empty" });
        break;
      case "sendResult": {
        const waiter = this.pending.get(frame.value.correlationId);
        if (waiter === undefined) break;
        this.pending.delete(frame.value.correlationId);
        waiter.resolve(frame.value);
        break;
      }
      case "displaced":
        this.subscription?.fail(
          new AppError(Code.Aborted, "DISPLACED", "another connection subscribed this device"),
        );
        this.subscription = undefined;
        break;
      case "frameError":
        // A failed subscribe or ack: end the subscription so the client resubscribes (unacked
        // envelopes are redelivered and de-duplicated).
        this.subscription?.fail(errorFromStatus(frame.value.error, "a Connect frame failed"));
        this.subscription = undefined;
        break;
      default:
        break;
    }
  }

  /** Fails everything waiting on this stream; later calls open a new one. */
  fail(err: unknown): void {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
    this.subscription?.fail(err);
    this.subscription = undefined;
  }

  /** Sends a SendFrame or SendGroupFrame and waits for its SendResult. */
  async call(
    frame: (correlationId: bigint) => Parameters<typeof this.stream.send>[0],
    timeoutMs: number,
  ): Promise<SendResult> {
    const correlationId = this.nextId++;
    let timer: NodeJS.Timeout | undefined;
    const result = new Promise<SendResult>((resolve, reject) => {
      this.pending.set(correlationId, { resolve, reject });
      timer = setTimeout(() => {
        this.pending.delete(correlationId);
        reject(new AppError(Code.DeadlineExceeded, "SEND_TIMEOUT", `no send result within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      await this.stream.send(frame(correlationId));
      return await result;
    } catch (err) {
      this.pending.delete(correlationId);
      throw err;
    } finally {
      clearTimeout(timer);
      // The result promise may reject after send() failed; it is handled here already.
      result.catch(() => {});
    }
  }
}

/**
 * Creates a Transport over the delivery service's gRPC API. One Connect stream (opened on first
 * use, reopened after a failure) carries sends, the receive subscription and acks; the other
 * calls are unary. Failures are AppErrors with the server's code and reason.
 */
export function createDeliveryTransport(options: DeliveryTransportOptions): DeliveryTransport {
  return new DeliveryTransport(options);
}

/** The delivery service's gRPC Transport; see createDeliveryTransport. */
export class DeliveryTransport implements Transport {
  private readonly channel: grpc.Client;
  private readonly directory: ServiceClient<typeof DirectoryService>;
  private readonly keys: ServiceClient<typeof KeyService>;
  private readonly messages: ServiceClient<typeof MessageService>;
  private readonly groups: ServiceClient<typeof GroupService>;
  private readonly reports: ServiceClient<typeof ReportService>;
  private readonly requests: ServiceClient<typeof RequestService>;
  private readonly sealedSender: ServiceClient<typeof SealedSenderService>;
  /** A separate channel without credentials for sealed-sender sends (opened on first use). */
  private anonymousChannel:
    { channel: grpc.Client; messages: ServiceClient<typeof MessageService> } | undefined;
  private readonly target: string;
  private readonly channelCredentials: grpc.ChannelCredentials;
  private readonly timeoutMs: number;
  private credentials: DeviceCredentials | undefined;
  private session: ConnectSession | undefined;

  constructor(options: DeliveryTransportOptions) {
    this.channel = new grpc.Client(
      options.target,
      options.channelCredentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
    this.credentials = options.credentials;
    this.timeoutMs = options.callTimeoutMs ?? 15_000;
    const clientOptions = {
      metadata: (): Record<string, string> =>
        this.credentials === undefined ? {} : { authorization: basicAuthorization(this.credentials) },
      defaultDeadlineMs: this.timeoutMs,
    };
    this.directory = createGrpcClient(DirectoryService, this.channel, clientOptions);
    this.keys = createGrpcClient(KeyService, this.channel, clientOptions);
    this.messages = createGrpcClient(MessageService, this.channel, clientOptions);
    this.groups = createGrpcClient(GroupService, this.channel, clientOptions);
    this.reports = createGrpcClient(ReportService, this.channel, clientOptions);
    this.requests = createGrpcClient(RequestService, this.channel, clientOptions);
    this.sealedSender = createGrpcClient(SealedSenderService, this.channel, clientOptions);
    this.target = options.target;
    this.channelCredentials = options.channelCredentials ?? grpc.credentials.createInsecure();
  }

  reportMessage(request: ReportMessageRequest): Promise<ReportMessageResponse> {
    return this.reports.reportMessage(request);
  }

  async getSenderCertificate(): Promise<{ certificate: Uint8Array; expiresAtMs: number }> {
    const r = await this.sealedSender.getSenderCertificate({});
    return { certificate: r.certificate, expiresAtMs: Number(r.expiresAtMs) };
  }

  async getSealedSenderTrustRoot(): Promise<Uint8Array> {
    return (await this.sealedSender.getTrustRoot({})).publicKey;
  }

  async setUnidentifiedAccess(
    access: { accessKey?: Uint8Array; unrestricted?: boolean } | undefined,
  ): Promise<void> {
    if (access === undefined) await this.sealedSender.disableUnidentifiedAccess({});
    else
      await this.sealedSender.setUnidentifiedAccess({
        accessKey: access.accessKey ?? new Uint8Array(0),
        unrestricted: access.unrestricted ?? false,
      });
  }

  /**
   * Sends over a separate channel (its own connection, no subchannel sharing) that never carries
   * this device's credentials: only the recipient's access key.
   */
  async sendSealedMessage(request: SendMessageRequest, accessKey: Uint8Array): Promise<SendOutcome> {
    const response = await this.anonymousMessages().sendMessage(request, {
      metadata: { "unidentified-access-key": Buffer.from(accessKey).toString("base64") },
    });
    return sendOutcomeFromProto(response);
  }

  /** Like {@link sendSealedMessage}, with the recipients' combined access key, on the same channel. */
  async sendSealedMultiRecipientMessage(
    request: SendMultiRecipientMessageRequest,
    combinedAccessKey: Uint8Array,
  ): Promise<GroupSendOutcome> {
    const response = await this.anonymousMessages().sendMultiRecipientMessage(request, {
      metadata: { "unidentified-access-key": Buffer.from(combinedAccessKey).toString("base64") },
    });
    return groupSendOutcomeFromProto(response);
  }

  private anonymousMessages(): ServiceClient<typeof MessageService> {
    if (this.anonymousChannel === undefined) {
      const channel = new grpc.Client(this.target, this.channelCredentials, {
        "grpc.use_local_subchannel_pool": 1,
      });
      this.anonymousChannel = {
        channel,
        messages: createGrpcClient(MessageService, channel, { defaultDeadlineMs: this.timeoutMs }),
      };
    }
    return this.anonymousChannel.messages;
  }

  setDeviceCredentials(credentials: DeviceCredentials): void {
    this.credentials = credentials;
    // A stream authenticates once, when it opens: drop one opened under other credentials.
    this.resetSession(
      new AppError(Code.Unauthenticated, "CREDENTIALS_CHANGED", "device credentials changed"),
    );
  }

  async registerAccount(
    request: RegisterAccountRequest,
    auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    return this.directory.registerAccount(request, {
      metadata: { authorization: bearerAuthorization(auth.appToken) },
    });
  }

  async registerDevice(
    request: RegisterDeviceRequest,
    auth?: AppCredentials,
  ): Promise<RegisterDeviceResponse> {
    return this.directory.registerDevice(
      request,
      auth === undefined ? {} : { metadata: { authorization: bearerAuthorization(auth.appToken) } },
    );
  }

  async removeDevice(request: RemoveDeviceRequest): Promise<void> {
    await this.directory.removeDevice(request);
  }

  uploadKeys(request: UploadKeysRequest): Promise<UploadKeysResponse> {
    return this.keys.uploadKeys(request);
  }

  getPreKeyBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    return this.keys.getPreKeyBundles(request);
  }

  getPreKeyCount(request: GetPreKeyCountRequest): Promise<GetPreKeyCountResponse> {
    return this.keys.getPreKeyCount(request);
  }

  async listMessageRequests(): Promise<MessageRequest[]> {
    return (await this.requests.listMessageRequests({})).requests;
  }

  async acceptMessageRequest(target: RequestTarget): Promise<number> {
    return (await this.requests.acceptMessageRequest(target)).released;
  }

  async declineMessageRequest(target: RequestTarget): Promise<number> {
    return (await this.requests.declineMessageRequest(target)).deleted;
  }

  async block(peerAccountId: string): Promise<void> {
    await this.requests.block({ peerAccountId });
  }

  async unblock(peerAccountId: string): Promise<void> {
    await this.requests.unblock({ peerAccountId });
  }

  async setRequestsPolicy(policy: RequestsPolicy): Promise<void> {
    await this.requests.setRequestsPolicy({ policy });
  }

  async setThirdPartyReachable(reachable: boolean): Promise<boolean> {
    return (await this.directory.setThirdPartyReachable({ reachable })).reachable;
  }

  async getThirdPartyReachable(): Promise<boolean> {
    return (await this.directory.getThirdPartyReachable({})).reachable;
  }

  resolveHandle(request: ResolveHandleRequest): Promise<ResolveHandleResponse> {
    return this.directory.resolveHandle(request);
  }

  getAccount(request: GetAccountRequest): Promise<GetAccountResponse> {
    return this.directory.getAccount(request);
  }

  async sendMessage(request: SendMessageRequest): Promise<SendOutcome> {
    const result = await this.connection().call(
      (correlationId) => ({ frame: { case: "send", value: { correlationId, request } } }),
      this.timeoutMs,
    );
    if (result.result.case === "send") return sendOutcomeFromProto(result.result.value);
    throw errorFromStatus(result.result.case === "error" ? result.result.value : undefined, "send failed");
  }

  async sendGroupMessage(request: SendGroupMessageRequest): Promise<GroupSendOutcome> {
    const result = await this.connection().call(
      (correlationId) => ({ frame: { case: "sendGroup", value: { correlationId, request } } }),
      this.timeoutMs,
    );
    if (result.result.case === "sendGroup") return groupSendOutcomeFromProto(result.result.value);
    throw errorFromStatus(
      result.result.case === "error" ? result.result.value : undefined,
      "group send failed",
    );
  }

  async createGroup(request: CreateGroupRequest): Promise<Group> {
    return requireGroup((await this.groups.createGroup(request)).group);
  }

  async addGroupMembers(request: AddGroupMembersRequest): Promise<Group> {
    return requireGroup((await this.groups.addGroupMembers(request)).group);
  }

  async removeGroupMembers(request: RemoveGroupMembersRequest): Promise<Group> {
    return requireGroup((await this.groups.removeGroupMembers(request)).group);
  }

  async getGroup(request: GetGroupRequest): Promise<Group> {
    return requireGroup((await this.groups.getGroup(request)).group);
  }

  receive(options: ReceiveOptions = {}): ReceiveSubscription {
    const session = this.connection();
    const queue = new AsyncQueue<ReceiveEvent>();
    session.subscription?.end(true);
    session.subscription = queue;
    const device = this.device();
    session.stream
      .send({ frame: { case: "subscribe", value: { device, window: options.window ?? 0 } } })
      .catch((err: unknown) => queue.fail(err));
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      close: () => {
        if (queue.closed) return;
        queue.end(true);
        if (session.subscription !== queue || session.closed) return;
        session.subscription = undefined;
        // Best effort: a failed unsubscribe only means the stream is already gone.
        session.stream.send({ frame: { case: "unsubscribe", value: { device } } }).catch(() => {});
      },
    };
  }

  async ack(messageIds: string[]): Promise<void> {
    const device = this.device();
    for (let i = 0; i < messageIds.length; i += MAX_ACK_IDS) {
      await this.connection().stream.send({
        frame: { case: "ack", value: { device, messageIds: messageIds.slice(i, i + MAX_ACK_IDS) } },
      });
    }
  }

  async close(): Promise<void> {
    this.resetSession(new AppError(Code.Canceled, "TRANSPORT_CLOSED", "the transport was closed"));
    this.channel.close();
    this.anonymousChannel?.channel.close();
  }

  private device(): { accountId: string; deviceId: number } {
    if (this.credentials === undefined) {
      throw new AppError(Code.Unauthenticated, "NO_CREDENTIALS", "no device credentials set");
    }
    return { accountId: this.credentials.accountId, deviceId: this.credentials.deviceId };
  }

  private connection(): ConnectSession {
    if (this.session === undefined || this.session.closed) {
      this.device();
      this.session = new ConnectSession(this.messages.connect());
    }
    return this.session;
  }

  private resetSession(reason: AppError): void {
    const session = this.session;
    this.session = undefined;
    if (session === undefined) return;
    session.fail(reason);
    session.stream.cancel();
  }
}

function requireGroup(group: Group | undefined): Group {
  if (group === undefined) throw new AppError(Code.Internal, "INVALID_RESPONSE", "response without a group");
  return group;
}
