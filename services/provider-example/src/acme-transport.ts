// The Acme Chat client's transport: the SDK's delivery-service transport (device credentials,
// libsignal E2EE, the same Envelope as every app), except that an account is created through
// Acme's own signup API, which holds the provider credential. The client generates its identity,
// registration id and device secret locally; Acme's server only forwards them to the registry.
import { create } from "@bufbuild/protobuf";
import { AppError, Code } from "@switchboard/errors";
import {
  App,
  RegisterAccountResponseSchema,
  type RegisterAccountRequest,
  type RegisterAccountResponse,
} from "@switchboard/proto";
import { DeliveryTransport, type AppCredentials, type DeliveryTransportOptions } from "@switchboard/sdk";
import type { SignupResultJson } from "./app.js";

/** Options of createAcmeTransport. */
export interface AcmeTransportOptions extends DeliveryTransportOptions {
  /** Acme Chat's REST API, e.g. `http://127.0.0.1:8090`. */
  acmeUrl: string;
}

/** A Transport for Acme Chat users; see createAcmeTransport. */
export class AcmeTransport extends DeliveryTransport {
  private readonly acmeUrl: string;

  constructor(options: AcmeTransportOptions) {
    super(options);
    this.acmeUrl = options.acmeUrl.replace(/\/$/, "");
  }

  /** Signs up at Acme (`POST /v1/signup`); the handle's value is the Acme username. */
  override async registerAccount(
    request: RegisterAccountRequest,
    _auth: AppCredentials,
  ): Promise<RegisterAccountResponse> {
    const res = await fetch(`${this.acmeUrl}/v1/signup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        username: request.handle?.value ?? "",
        registration_id: request.registrationId,
        password: request.password,
        device_name: request.deviceName,
      }),
      signal: AbortSignal.timeout(15_000),
    });
    const body = (await res.json()) as SignupResultJson & { reason?: string; detail?: string };
    if (!res.ok) {
      const code =
        res.status === 409
          ? Code.AlreadyExists
          : res.status === 400
            ? Code.InvalidArgument
            : Code.Unavailable;
      throw new AppError(
        code,
        body.reason ?? "SIGNUP_FAILED",
        body.detail ?? `signup answered ${res.status}`,
      );
    }
    return create(RegisterAccountResponseSchema, {
      account: {
        id: body.account_id,
        handle: { app: App.THIRD_PARTY, providerId: body.provider_id, value: body.username },
        createdAtMs: BigInt(body.created_at_ms),
      },
      device: { deviceId: body.device_id, registrationId: request.registrationId, name: request.deviceName },
      replaced: false,
    });
  }
}

/**
 * Creates the transport of an Acme Chat device: signup through Acme's API (`acmeUrl`), everything
 * else straight to the delivery service (`target`) as the device itself.
 */
export function createAcmeTransport(options: AcmeTransportOptions): AcmeTransport {
  return new AcmeTransport(options);
}
