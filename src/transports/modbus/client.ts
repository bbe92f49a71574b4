/**
 * One Modbus TCP connection, on `modbus-serial` (docs/decisions/0014-modbus-tcp-on-modbus-serial.md):
 * connect, read a table, write a holding register or coil. Every call ends within the timeout
 * (our own timer on top of the library's), and a connection that failed once is never used again:
 * the caller makes a new one. Requests are made one at a time (Modbus servers often serve one
 * transaction at a time); `run` queues them.
 */
import ModbusRTUImport from "modbus-serial";
import type { Table } from "./registers.ts";

/** The part of modbus-serial's client used here (its own typings do not resolve under Deno). */
interface ModbusSerialClient {
  connectTCP(host: string, options: { port: number; timeout?: number }): Promise<void>;
  setID(id: number): void;
  setTimeout(ms: number): void;
  readHoldingRegisters(address: number, count: number): Promise<{ data: number[] }>;
  readInputRegisters(address: number, count: number): Promise<{ data: number[] }>;
  readCoils(address: number, count: number): Promise<{ data: boolean[] }>;
  readDiscreteInputs(address: number, count: number): Promise<{ data: boolean[] }>;
  writeRegister(address: number, value: number): Promise<unknown>;
  writeRegisters(address: number, values: number[]): Promise<unknown>;
  writeCoil(address: number, value: boolean): Promise<unknown>;
  destroy(callback?: () => void): void;
  readonly isOpen: boolean;
}

const ModbusRTU = ModbusRTUImport as unknown as new () => ModbusSerialClient;

/** A failed request: `exception` is the Modbus exception code when the server answered with one. */
export class ModbusError extends Error {
  readonly exception?: number;
  constructor(message: string, exception?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModbusError";
    this.exception = exception;
  }
}

export interface ModbusConnection {
  read(table: Table, address: number, count: number): Promise<readonly (number | boolean)[]>;
  writeWords(address: number, words: number[]): Promise<void>;
  writeBit(address: number, value: boolean): Promise<void>;
  close(): void;
  /** False once a request failed for anything but a Modbus exception, or after close. */
  readonly usable: boolean;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new ModbusError(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function asModbusError(error: unknown, what: string): ModbusError {
  if (error instanceof ModbusError) return error;
  const e = error as { message?: string; modbusCode?: number; errno?: string };
  if (typeof e?.modbusCode === "number") return new ModbusError(String(e.message), e.modbusCode);
  const why = e?.message === "Timed out" ? "no answer in time" : String(e?.message ?? error);
  return new ModbusError(`${what}: ${why}`, undefined, { cause: error });
}

/** Opens a connection to `host:port`, talking to `unitId`; rejects within `timeoutMs`. */
export async function connectModbus(
  options: { host: string; port: number; unitId: number; timeoutMs: number },
): Promise<ModbusConnection> {
  const client = new ModbusRTU();
  client.setID(options.unitId);
  client.setTimeout(options.timeoutMs);
  let usable = true;
  let queue: Promise<unknown> = Promise.resolve();
  const close = () => {
    usable = false;
    try {
      client.destroy(() => {});
    } catch { /* already closed */ }
  };
  try {
    await withTimeout(
      client.connectTCP(options.host, { port: options.port, timeout: options.timeoutMs }),
      options.timeoutMs,
      `Connecting to ${options.host}:${options.port}`,
    );
  } catch (error) {
    close();
    throw asModbusError(error, `Connecting to ${options.host}:${options.port}`);
  }

  /** Runs requests one after the other; a failure other than an exception ends the connection. */
  function run<T>(what: string, request: () => Promise<T>): Promise<T> {
    const next = queue.then(async () => {
      if (!usable || !client.isOpen) {
        usable = false;
        throw new ModbusError(`${what}: the connection is closed`);
      }
      try {
        return await withTimeout(request(), options.timeoutMs + 50, what);
      } catch (error) {
        const e = asModbusError(error, what);
        if (e.exception === undefined) close();
        throw e;
      }
    });
    queue = next.catch(() => {});
    return next;
  }

  return {
    get usable() {
      return usable && client.isOpen;
    },
    read(table, address, count) {
      const what = `Reading ${count} ${table} from ${address}`;
      return run(what, async () => {
        switch (table) {
          case "holding":
            return (await client.readHoldingRegisters(address, count)).data;
          case "input":
            return (await client.readInputRegisters(address, count)).data;
          case "coil":
            return (await client.readCoils(address, count)).data;
          case "discrete":
            return (await client.readDiscreteInputs(address, count)).data;
        }
      });
    },
    writeWords(address, words) {
      return run(`Writing holding register ${address}`, async () => {
        if (words.length === 1) await client.writeRegister(address, words[0]);
        else await client.writeRegisters(address, words);
      });
    },
    writeBit(address, value) {
      return run(`Writing coil ${address}`, async () => {
        await client.writeCoil(address, value);
      });
    },
    close,
  };
}
