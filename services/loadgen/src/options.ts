// What a load test run is told to do.
import type { WatchedProcess } from "./proc-sampler.js";
import type { AppName } from "./topology.js";

/**
 * The `--mode`s: ways to drive the system. `delivery-stream` and `delivery-unary` use the delivery
 * service's gRPC API with app tokens; `gateways` uses each app's gateway with device credentials.
 */
export const MODES = ["delivery-stream", "delivery-unary", "gateways"] as const;
/** One of {@link MODES}. */
export type Mode = (typeof MODES)[number];

/** Every option of a run; {@link DEFAULTS} documents the defaults. */
export interface LoadgenOptions {
  /** The delivery service, `host:port`. */
  target: string;
  /** App tokens by app (the delivery service's `APP_TOKENS`). Never written to reports. */
  appTokens: Partial<Record<AppName, string>>;
  /** Simulated devices in total. */
  devices: number;
  /** Devices per account (1..6): a one-to-one send carries one ciphertext per recipient device. */
  devicesPerAccount: number;
  /** Share of accounts per app. */
  mix: Array<{ app: AppName; weight: number }>;
  groups: number;
  /** Member accounts per group. */
  groupSize: number;
  /** Fraction of sends that are group sends (0..1). */
  groupShare: number;
  /** Payload bytes per message, header included (for `signal`: approximately). */
  sizeBytes: number;
  /** Open loop: sends per second, scheduled at fixed intervals. Ignored with `closedLoop`. */
  ratePerSecond: number;
  /** Closed loop: keep `inflight` sends outstanding, as fast as they complete (see `until`). */
  closedLoop: boolean;
  /**
   * Closed loop: when a send stops counting as outstanding — once every recipient device has it
   * (`delivered`: what the system sustains end to end), or once its result arrives (`result`:
   * offers more than the push path may keep up with).
   */
  until: "delivered" | "result";
  /** Closed loop: sends outstanding. Open loop: the most sends outstanding (later ones wait, late). */
  inflight: number;
  durationSeconds: number;
  warmupSeconds: number;
  mode: Mode;
  payload: "random" | "signal";
  /** Signal payloads: pre-encrypted ciphertexts per (sender, recipient device) and (sender, group). */
  signalPoolSize: number;
  /** Connect streams per app token. */
  streams: number;
  /** `gateways` mode: where the gateways listen (each app's accounts use their own gateway). */
  gateways: {
    /** WhatsApp-style gateway, gRPC `host:port`. */
    whatsapp?: string;
    /** Its development admin endpoint (verification codes), `http://host:port`. */
    whatsappAdmin?: string;
    /** Messenger-style gateway base URL. */
    messenger?: string;
    /** Instagram-style gateway base URL. */
    instagram?: string;
  };
  /** Unacknowledged deliveries in flight per device (1..1000). */
  window: number;
  /** `gateways`: Messenger-style sends as frames on the device's WebSocket, or as POST requests. */
  messengerSends: "socket" | "http";
  /**
   * Whether one-to-one sends ask for server delivery receipts (the default, as a client that
   * relies on them); false sends with `no_delivery_receipt`, as a client that sends its own
   * end-to-end receipts.
   */
  serverReceipts: boolean;
  /** `gateways`: HTTP/2 connections shared by the WhatsApp-style devices; 0: one per device. */
  whatsappConnections: number;
  /** WhatsApp-style Chat streams over the lean HTTP/2 client (`h2`) or the SDK's grpc-js channel. */
  whatsappChat: "h2" | "grpc-js";
  /** Directory for report.json and report.html; undefined writes none. */
  outDir: string | undefined;
  /** Title of the report. */
  name: string;
  /** Processes whose CPU and RSS are sampled every second (with their descendants). */
  watch: WatchedProcess[];
  /**
   * A saved population to reuse (skipping registration) when the file exists; otherwise the
   * registered population is saved there. Undefined: register a fresh population.
   */
  populationFile: string | undefined;
  /** Registrations in flight at once during setup. */
  registerConcurrency: number;
  /** After traffic stops: give up waiting for deliveries after this long without any event. */
  drainQuietSeconds: number;
  /** After traffic stops: wait at most this long for everything owed. */
  drainTimeoutSeconds: number;
  /** A send without a result after this long fails (DEADLINE_EXCEEDED). */
  sendTimeoutSeconds: number;
  /** Seed of the topology and traffic choices. */
  seed: number;
  /** Interval of the live progress line and the report's time series. */
  intervalMs: number;
}

/** Defaults of the options that have one. */
export const DEFAULTS = {
  target: "127.0.0.1:50051",
  devices: 100,
  devicesPerAccount: 1,
  groups: 0,
  groupSize: 10,
  groupShare: 0.2,
  sizeBytes: 256,
  ratePerSecond: 1000,
  closedLoopInflight: 500,
  openLoopInflight: 20_000,
  durationSeconds: 10,
  warmupSeconds: 2,
  mode: "delivery-stream" as Mode,
  payload: "random" as const,
  signalPoolSize: 16,
  streams: 2,
  window: 500,
  messengerSends: "socket" as const,
  serverReceipts: true,
  whatsappConnections: 0,
  whatsappChat: "h2" as const,
  registerConcurrency: 16,
  drainQuietSeconds: 5,
  drainTimeoutSeconds: 60,
  sendTimeoutSeconds: 15,
  intervalMs: 1000,
  /** Weights used for the apps that have a token when `--mix` is not given. */
  mix: { whatsapp: 40, messenger: 30, instagram: 30 },
};
