// Reusing a registered population across runs: registering 1,000+ devices costs the server an
// scrypt hash each, so a run can save what it registered and later runs against the same
// database can load it instead.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Registered } from "./setup.js";
import type { TopologyOptions } from "./topology.js";

/** A saved population: the topology it was derived from and the server-side ids. */
export interface SavedPopulation {
  version: 1;
  savedAt: string;
  /** The delivery service it was registered with (informational: any instance of its database works). */
  target: string;
  topology: TopologyOptions;
  registered: Registered;
}

/** The options that must match for a saved population to be reused. */
export const populationKey = (t: TopologyOptions) =>
  JSON.stringify({
    devices: t.devices,
    devicesPerAccount: t.devicesPerAccount,
    mix: t.mix,
    groups: t.groups,
    groupSize: t.groupSize,
  });

/** Loads a saved population, or undefined when the file does not exist. */
export async function loadPopulation(path: string): Promise<SavedPopulation | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const saved = JSON.parse(text) as SavedPopulation;
  if (saved.version !== 1 || !saved.registered || !saved.topology)
    throw new Error(`${path} is not a saved load-test population`);
  return saved;
}

/**
 * Saves a population. Delivery modes save no credentials (devices are driven with app tokens);
 * the gateway mode saves each device's token or secret (test accounts only), so the file is
 * written readable by its owner only.
 */
export async function savePopulation(path: string, population: SavedPopulation): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(population)}\n`, { mode: 0o600 });
}
