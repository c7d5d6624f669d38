// Who talks to whom: simulated accounts and devices, one-to-one partners and groups, derived
// deterministically from the options and a seed.
import { createRng, shuffle, type Rng } from "./rng.js";

/** The apps whose accounts the load generator simulates. */
export const APP_NAMES = ["whatsapp", "messenger", "instagram"] as const;
/** One of {@link APP_NAMES}. */
export type AppName = (typeof APP_NAMES)[number];

/** A simulated device. `index` is its position in {@link Topology.devices}. */
export interface SimDevice {
  readonly index: number;
  readonly account: number;
  /** 1 for the primary device, 2.. for linked ones. */
  readonly deviceId: number;
  readonly registrationId: number;
}

/** A simulated account. */
export interface SimAccount {
  readonly index: number;
  readonly app: AppName;
  /** Indices of its devices, primary first. */
  readonly devices: readonly number[];
  /** The account it talks to one-to-one. */
  readonly partner: number;
}

/** A simulated group. */
export interface SimGroup {
  readonly index: number;
  /** Member account indices; the first one creates the group. */
  readonly members: readonly number[];
  /** Every member device (the sender is excluded per send). */
  readonly devices: readonly number[];
}

/** The whole simulated population. */
export interface Topology {
  readonly accounts: readonly SimAccount[];
  readonly devices: readonly SimDevice[];
  readonly groups: readonly SimGroup[];
}

/** What {@link createTopology} needs. */
export interface TopologyOptions {
  /** Simulated devices in total (at least 2). */
  devices: number;
  /** Devices per account, 1..6; the last account may get fewer. */
  devicesPerAccount: number;
  /** Relative share of accounts per app (apps with weight 0 are absent). */
  mix: ReadonlyArray<{ app: AppName; weight: number }>;
  groups: number;
  /** Member accounts per group (capped at the number of accounts). */
  groupSize: number;
  seed: number;
}

/** Splits `total` by `weights` (largest remainder), so the parts add up exactly. */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) throw new RangeError("weights must add up to more than 0");
  const exact = weights.map((w) => (total * w) / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, frac: e - Math.floor(e) })).sort((a, b) => b.frac - a.frac);
  for (const { i } of order) {
    if (left-- <= 0) break;
    parts[i] = (parts[i] as number) + 1;
  }
  return parts;
}

/**
 * Builds the population: accounts split over the apps by `mix` (so one-to-one pairs and groups
 * mix apps), paired at random (with an odd count, the last account also talks to the first),
 * and `groups` groups of `groupSize` distinct random member accounts.
 */
export function createTopology(opts: TopologyOptions): Topology {
  if (!Number.isInteger(opts.devices) || opts.devices < 2)
    throw new RangeError("--devices must be at least 2");
  const perAccount = opts.devicesPerAccount;
  const accountCount = Math.ceil(opts.devices / perAccount);
  if (accountCount < 2) throw new RangeError("need at least 2 accounts: lower --devices-per-account");
  const rng = createRng(opts.seed);
  const counts = apportion(
    accountCount,
    opts.mix.map((m) => m.weight),
  );
  const apps: AppName[] = [];
  opts.mix.forEach((m, i) => {
    for (let k = 0; k < (counts[i] ?? 0); k++) apps.push(m.app);
  });
  shuffle(apps, rng);

  const devices: SimDevice[] = [];
  const accountDevices: number[][] = [];
  for (let a = 0; a < accountCount; a++) {
    const n = Math.min(perAccount, opts.devices - a * perAccount);
    const list: number[] = [];
    for (let d = 1; d <= n; d++) {
      list.push(devices.length);
      devices.push({ index: devices.length, account: a, deviceId: d, registrationId: 1 + rng.int(16380) });
    }
    accountDevices.push(list);
  }

  const order = shuffle(
    Array.from({ length: accountCount }, (_, i) => i),
    rng,
  );
  const partner = new Array<number>(accountCount);
  for (let i = 0; i + 1 < order.length; i += 2) {
    const a = order[i] as number;
    const b = order[i + 1] as number;
    partner[a] = b;
    partner[b] = a;
  }
  if (order.length % 2 === 1) partner[order[order.length - 1] as number] = order[0] as number;

  const accounts: SimAccount[] = apps.map((app, i) => ({
    index: i,
    app,
    devices: accountDevices[i] as number[],
    partner: partner[i] as number,
  }));

  const groups: SimGroup[] = [];
  const size = Math.min(opts.groupSize, accountCount);
  for (let g = 0; g < opts.groups; g++) {
    const members = pick(accountCount, size, rng);
    groups.push({
      index: g,
      members,
      devices: members.flatMap((m) => accountDevices[m] as number[]),
    });
  }
  return { accounts, devices, groups };
}

/** `k` distinct numbers from [0, n). */
function pick(n: number, k: number, rng: Rng): number[] {
  if (k * 3 >= n)
    return shuffle(
      Array.from({ length: n }, (_, i) => i),
      rng,
    ).slice(0, k);
  const chosen = new Set<number>();
  while (chosen.size < k) chosen.add(rng.int(n));
  return [...chosen];
}
