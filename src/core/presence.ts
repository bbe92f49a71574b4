/**
 * How a transport says what it knows of a device's connectivity (SPEC §10), without knowing who
 * keeps it: `active` for any sign of life (a request, a successful poll), `up` when a
 * connection-like state begins (a poll succeeds after failing, a device starts observing), `down`
 * when it ends (polls fail, an observer is gone). The registry decides what online means.
 * `transport` is `coap`, `modbus`, `http`, `mqtt` or `gateway:<id>`.
 */
export interface Presence {
  active(device: string, transport: string): void;
  up(device: string, transport: string): void;
  down(device: string, transport: string): void;
}

/** A presence that records nothing: what a transport uses when nobody keeps connectivity. */
export const NO_PRESENCE: Presence = {
  active() {},
  up() {},
  down() {},
};
