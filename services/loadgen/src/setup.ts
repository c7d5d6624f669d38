// Setup through the system's own API: accounts, linked devices and groups, registered
// concurrently (each registration costs the server an scrypt hash) with progress reports.
import { randomBytes } from "node:crypto";
import { isAppError } from "@switchboard/errors";
import type { DeviceRef, Driver } from "./drivers/driver.js";
import type { AppName, Topology } from "./topology.js";

/** The server-side identities of a topology. */
export interface Registered {
  /** By simulated device index. */
  devices: DeviceRef[];
  /** By simulated account index. */
  accountIds: string[];
  /** By simulated group index. */
  groupIds: string[];
}

/** Options of {@link registerPopulation}. */
export interface RegisterOptions {
  /** Registrations in flight at once. */
  concurrency: number;
  /** A 6-digit number unique to the run, used in handles. */
  runTag: number;
  /** Called after each device or group is registered. */
  onProgress?: (what: "devices" | "groups", done: number, total: number) => void;
}

const MAX_HANDLE_ATTEMPTS = 5;

/**
 * A handle unique to (run, account): `+1<tag><index>` for WhatsApp-style accounts, a numeric id
 * for Messenger-style ones, `lg_<tag>_<index>` for Instagram-style ones.
 */
export function handleFor(app: AppName, runTag: number, account: number): string {
  const tag = String(runTag % 1_000_000).padStart(6, "0");
  const idx = String(account).padStart(7, "0");
  switch (app) {
    case "whatsapp":
      return `+1${tag}${idx}`;
    case "messenger":
      return `9${tag}${idx}`;
    case "instagram":
      return `lg_${tag}_${account}`;
  }
}

/** Runs `task(i)` for i in [0, n) with at most `concurrency` at once; fails on the first error. */
export async function forEachConcurrently(
  n: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const failures: unknown[] = [];
  const worker = async () => {
    while (failures.length === 0 && next < n) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, worker));
  const [first] = failures;
  if (failures.length > 0) throw first instanceof Error ? first : new Error("task failed", { cause: first });
}

const password = () => randomBytes(24).toString("base64url");

/**
 * Registers every account (primary device, then its linked devices) and creates every group.
 * A handle already taken (an earlier run with the same tag) is retried under another tag.
 */
export async function registerPopulation(
  driver: Driver,
  topology: Topology,
  opts: RegisterOptions,
): Promise<Registered> {
  const devices = new Array<DeviceRef>(topology.devices.length);
  const accountIds = new Array<string>(topology.accounts.length);
  let doneDevices = 0;
  await forEachConcurrently(topology.accounts.length, opts.concurrency, async (a) => {
    const account = topology.accounts[a];
    if (!account) return;
    const [primaryIndex, ...linked] = account.devices;
    const primary = topology.devices[primaryIndex as number];
    if (!primary) return;
    let accountId: string;
    let primaryRef: DeviceRef;
    for (let attempt = 0; ; attempt++) {
      try {
        const tag = opts.runTag + attempt * 7919;
        const handle = handleFor(account.app, tag, a);
        const r = await driver.registerAccount({
          app: account.app,
          handle,
          registrationId: primary.registrationId,
          password: password(),
        });
        accountId = r.accountId;
        primaryRef = {
          app: account.app,
          accountId,
          deviceId: 1,
          registrationId: primary.registrationId,
          handle: r.handle ?? handle,
          ...(r.secret === undefined ? {} : { secret: r.secret }),
        };
        break;
      } catch (err) {
        if (!(isAppError(err) && err.reason === "HANDLE_TAKEN") || attempt + 1 >= MAX_HANDLE_ATTEMPTS)
          throw err;
      }
    }
    accountIds[a] = accountId;
    devices[primary.index] = primaryRef;
    opts.onProgress?.("devices", ++doneDevices, topology.devices.length);
    for (const d of linked) {
      const sim = topology.devices[d];
      if (!sim) continue;
      const { deviceId, secret } = await driver.registerDevice({
        app: account.app,
        accountId,
        registrationId: sim.registrationId,
        password: password(),
      });
      devices[d] = {
        app: account.app,
        accountId,
        deviceId,
        registrationId: sim.registrationId,
        ...(primaryRef.handle === undefined ? {} : { handle: primaryRef.handle }),
        ...(secret === undefined ? {} : { secret }),
      };
      opts.onProgress?.("devices", ++doneDevices, topology.devices.length);
    }
  });

  const groupIds = new Array<string>(topology.groups.length);
  let doneGroups = 0;
  await forEachConcurrently(topology.groups.length, opts.concurrency, async (g) => {
    const group = topology.groups[g];
    if (!group) return;
    const [creator, ...others] = group.members;
    const requester = devices[topology.accounts[creator as number]?.devices[0] as number];
    if (!requester) throw new Error(`group ${g} has no creator device`);
    groupIds[g] = await driver.createGroup(
      requester,
      others.map((m) => devices[topology.accounts[m]?.devices[0] as number] as DeviceRef),
    );
    opts.onProgress?.("groups", ++doneGroups, topology.groups.length);
  });
  return { devices, accountIds, groupIds };
}

/**
 * Lets every device meet the accounts it exchanges messages with (its partner, the accounts
 * whose partner it is, its groups' other members), when the driver needs that
 * ({@link Driver.introduce}): gateway clients resolve addresses and accept contacts up front so
 * the measured traffic carries no first-contact lookups or message requests.
 */
export async function introducePopulation(
  driver: Driver,
  topology: Topology,
  registered: Registered,
  opts: {
    concurrency: number;
    /** The population was registered by an earlier run (what the system remembers is done). */
    reusedPopulation: boolean;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<void> {
  const introduce = driver.introduce?.bind(driver);
  if (!introduce) return;
  const peersOf = topology.accounts.map(() => new Set<number>());
  for (const a of topology.accounts) {
    if (a.partner === a.index) continue;
    peersOf[a.index]?.add(a.partner);
    peersOf[a.partner]?.add(a.index);
  }
  for (const g of topology.groups)
    for (const m of g.members) for (const o of g.members) if (m !== o) peersOf[m]?.add(o);
  const primaryOf = (account: number) =>
    registered.devices[topology.accounts[account]?.devices[0] as number] as DeviceRef;
  let done = 0;
  await forEachConcurrently(topology.devices.length, opts.concurrency, async (d) => {
    const sim = topology.devices[d];
    const device = registered.devices[d];
    if (!sim || !device) return;
    await introduce(device, [...(peersOf[sim.account] ?? [])].map(primaryOf), {
      reusedPopulation: opts.reusedPopulation,
    });
    opts.onProgress?.(++done, topology.devices.length);
  });
}
