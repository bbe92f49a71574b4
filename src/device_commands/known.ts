/**
 * The devices a command may be sent to: provisioned, seen since start, or remembered in the
 * table from earlier runs. Bounded like the table behind it: the longest known goes first.
 */
import { type CommandStore, MAX_COMMAND_DEVICES } from "./store.ts";

export class KnownDevices {
  readonly #known = new Set<string>();
  readonly #fresh = new Set<string>();

  constructor(
    private readonly store: CommandStore,
    /** Provisioned, or seen since the agent started (the device registry). */
    private readonly isKnownElsewhere: (device: string) => boolean,
    private readonly seenDevices: () => readonly string[],
  ) {}

  /** Loads what earlier runs remembered. */
  load(): void {
    for (const d of this.store.knownDevices()) this.#known.add(d);
  }

  remember(device: string): void {
    if (this.#known.has(device)) return;
    if (this.#known.size >= MAX_COMMAND_DEVICES) this.#known.delete(this.#known.values().next().value!);
    this.#known.add(device);
    if (this.#fresh.size < MAX_COMMAND_DEVICES) this.#fresh.add(device);
  }

  has(device: string): boolean {
    if (this.#known.has(device)) return true;
    if (this.isKnownElsewhere(device) || this.store.hasDevice(device)) {
      this.remember(device);
      return true;
    }
    return false;
  }

  /** Takes the devices seen since the last call into the table. */
  sync(now: number): void {
    for (const d of this.seenDevices()) this.remember(d);
    if (this.#fresh.size === 0) return;
    const fresh = [...this.#fresh];
    this.store.addDevices(fresh, now);
    this.#fresh.clear();
  }
}
