/**
 * A CoAP server endpoint (RFC 7252 over UDP) for device requests, on `coap-packet`'s codec:
 * messages in, one handler call per request, the answer piggybacked on the ACK once the handler
 * has resolved (for data: after the outbox committed). With it, Block1 uploads (RFC 7959) and
 * Observe registrations whose notifications are confirmable and retransmitted (RFC 7641).
 *
 * Invariants:
 * - A request is handed to the handler once: a copy (same peer and message id) that arrives
 *   while the first is still being handled is dropped, and one that arrives later gets the
 *   stored answer again, without the handler (RFC 7252 §4.5). Dedupe entries live for
 *   EXCHANGE_LIFETIME or until `maxExchanges` newer ones push them out.
 * - Everything keyed by what clients choose is bounded: dedupe entries, requests being handled,
 *   Block1 uploads (count and bytes, each at most `maxPayloadBytes`), notifications in flight.
 *   Past a bound the client hears 5.03 with Max-Age, never an unbounded queue.
 * - Nothing thrown by a handler, or a datagram that is not CoAP, reaches the socket's loop.
 */
import { Buffer } from "node:buffer";
import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import { generate, type NamedOption, parse, type ParsedPacket } from "coap-packet";

/** RFC 7252 §4.8.2: how long a message id identifies an exchange, in ms. */
export const EXCHANGE_LIFETIME_MS = 247_000;
const ACK_TIMEOUT_MS = 2_000;
const MAX_RETRANSMIT = 4;
/** Largest datagram we generate: answers and notifications are small. */
const MAX_MESSAGE = 64 * 1024;
const BLOCK_SESSION_MS = 60_000;

export const COAP_LIMITS = {
  /** Answers remembered for duplicates. */
  maxExchanges: 20_000,
  /** Requests being handled at once (waiting for a commit); past it, 5.03. */
  maxInFlight: 1_024,
  /** Block1 uploads being reassembled at once; past it, 5.03. */
  maxUploads: 16,
  /** Confirmable notifications waiting for their ACK. */
  maxPendingNotifications: 1_024,
} as const;

/** Content-Format numbers (RFC 7252 §12.3). */
export const TEXT_PLAIN = 0;
export const APPLICATION_JSON = 50;

export interface Remote {
  address: string;
  port: number;
}

/** One request, as the handler sees it. */
export interface CoapRequest {
  /** `0.01` GET, `0.02` POST, `0.03` PUT, `0.04` DELETE, … */
  code: string;
  /** The Uri-Path segments, decoded. */
  path: string[];
  payload: Uint8Array;
  /** The Observe option's value, when present (0: register, 1: deregister). */
  observe?: number;
  remote: Remote;
  /** The exchange's identity: peer address, port and message id (of the last block). */
  exchange: string;
  /** For an Observe registration: the handle to notify this observer later. */
  observation?: Observation;
}

export interface CoapReply {
  /** `2.01`, `4.00`, … */
  code: string;
  /** A diagnostic (text) or a JSON document (`json: true`). */
  payload?: string;
  json?: boolean;
  /** Answer an Observe registration as a registration (with an Observe option). */
  observing?: boolean;
  /** Max-Age in seconds (for 5.03: when to try again). */
  maxAge?: number;
  /** Size1 (for 4.13: the largest body accepted). */
  size1?: number;
}

/** An observer that registered with GET + Observe=0. */
export interface Observation {
  readonly remote: Remote;
  /** Sends a confirmable notification; false when too many wait for their ACK (not sent). */
  notify(payload: string): boolean;
  /** Called once when the observer is gone: it reset a notification, or never acknowledged one. */
  onGone?: () => void;
  /** Stops notifying (no callback). */
  cancel(): void;
  readonly cancelled: boolean;
}

export interface EndpointOptions {
  handler: (request: CoapRequest) => CoapReply | Promise<CoapReply>;
  /** Largest request body, reassembled Block1 uploads included. */
  maxPayloadBytes: number;
  /** A handler that threw: answered 5.00. */
  onError: (error: unknown) => void;
  now?: () => number;
  limits?: Partial<typeof COAP_LIMITS>;
}

export interface CoapEndpoint {
  listen(host: string, port: number): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
  /** Requests being handled now, dedupe entries and uploads kept (for tests and status). */
  sizes(): { inFlight: number; exchanges: number; uploads: number; notifications: number };
}

interface Exchange {
  at: number;
  /** The answer, once sent; undefined while the request is being handled. */
  answer?: Buffer;
}

interface Upload {
  at: number;
  next: number;
  parts: Buffer[];
  bytes: number;
}

interface PendingNotification {
  buf: Buffer;
  remote: Remote;
  tries: number;
  timer: ReturnType<typeof setTimeout>;
  observation: ObservationImpl;
}

interface ObservationImpl extends Observation {
  gone(): void;
}

function uint(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  const bytes: number[] = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from(bytes);
}

function readUint(b: Buffer): number {
  let n = 0;
  for (const x of b) n = n * 256 + x;
  return n;
}

function option(packet: ParsedPacket, name: string): Buffer | undefined {
  return packet.options.find((o) => o.name === name)?.value;
}

export function createCoapEndpoint(options: EndpointOptions): CoapEndpoint {
  const now = options.now ?? Date.now;
  const limits = { ...COAP_LIMITS, ...options.limits };
  const exchanges = new Map<string, Exchange>();
  const uploads = new Map<string, Upload>();
  const pending = new Map<number, PendingNotification>();
  let inFlight = 0;
  let socket: Socket | undefined;
  let nextMid = Math.floor(Math.random() * 0x10000);
  let closed = false;

  const mid = () => (nextMid = (nextMid + 1) & 0xffff);

  function send(buf: Buffer, remote: Remote): void {
    if (closed || socket === undefined) return;
    try {
      socket.send(buf, remote.port, remote.address);
    } catch { /* the socket closed under us: the peer retransmits */ }
  }

  function encode(request: ParsedPacket, reply: CoapReply, extra: NamedOption[] = []): Buffer {
    const opts: NamedOption[] = [...extra];
    if (reply.maxAge !== undefined) opts.push({ name: "Max-Age", value: uint(reply.maxAge) });
    if (reply.size1 !== undefined) opts.push({ name: "Size1", value: uint(reply.size1) });
    if (reply.payload !== undefined && reply.payload.length > 0) {
      opts.push({ name: "Content-Format", value: uint(reply.json ? APPLICATION_JSON : TEXT_PLAIN) });
    }
    return generate({
      code: reply.code,
      messageId: request.confirmable ? request.messageId : mid(),
      token: request.token,
      ack: request.confirmable,
      confirmable: false,
      options: opts,
      payload: reply.payload ? Buffer.from(reply.payload) : Buffer.alloc(0),
    }, MAX_MESSAGE);
  }

  /** Drops dedupe entries past their lifetime or over the bound (oldest first). */
  function trimExchanges(t: number): void {
    for (const [key, e] of exchanges) {
      if (exchanges.size > limits.maxExchanges || t - e.at > EXCHANGE_LIFETIME_MS) exchanges.delete(key);
      else break;
    }
  }

  function trimUploads(t: number): void {
    for (const [key, u] of uploads) if (t - u.at > BLOCK_SESSION_MS) uploads.delete(key);
  }

  function answer(
    key: string,
    request: ParsedPacket,
    remote: Remote,
    reply: CoapReply,
    extra?: NamedOption[],
  ) {
    let buf: Buffer;
    try {
      buf = encode(request, reply, extra);
    } catch (error) {
      options.onError(error);
      buf = encode(request, { code: "5.00", payload: "Internal error" });
    }
    const e = exchanges.get(key);
    if (e) e.answer = buf;
    send(buf, remote);
  }

  function createObservation(request: ParsedPacket, remote: Remote): ObservationImpl {
    let seq = 2; // the registration answer carries 1 (RFC 7641 §4.4: increasing)
    const token = request.token;
    const obs: ObservationImpl = {
      remote,
      cancelled: false,
      notify(payload) {
        if (obs.cancelled || closed) return false;
        if (pending.size >= limits.maxPendingNotifications) return false;
        const id = mid();
        const buf = generate({
          code: "2.05",
          messageId: id,
          token,
          confirmable: true,
          options: [
            { name: "Observe", value: uint(seq++ & 0xffffff) },
            { name: "Content-Format", value: uint(APPLICATION_JSON) },
          ],
          payload: Buffer.from(payload),
        }, MAX_MESSAGE);
        const entry: PendingNotification = {
          buf,
          remote,
          tries: 0,
          observation: obs,
          timer: setTimeout(() => retransmit(id), ACK_TIMEOUT_MS * (1 + Math.random() / 2)),
        };
        pending.set(id, entry);
        send(buf, remote);
        return true;
      },
      cancel() {
        (obs as { cancelled: boolean }).cancelled = true;
      },
      gone() {
        if (obs.cancelled) return;
        obs.cancel();
        try {
          obs.onGone?.();
        } catch (error) {
          options.onError(error);
        }
      },
    };
    return obs;
  }

  function retransmit(id: number): void {
    const p = pending.get(id);
    if (p === undefined) return;
    if (closed || p.tries >= MAX_RETRANSMIT) {
      pending.delete(id);
      if (!closed) p.observation.gone(); // never acknowledged: the observer is gone (RFC 7641 §4.5)
      return;
    }
    p.tries++;
    send(p.buf, p.remote);
    p.timer = setTimeout(() => retransmit(id), ACK_TIMEOUT_MS * 2 ** p.tries);
  }

  async function onRequest(key: string, packet: ParsedPacket, remote: Remote): Promise<void> {
    const t = now();
    let payload = packet.payload;
    let echo: NamedOption[] | undefined;
    const block1 = option(packet, "Block1");
    if (block1 !== undefined) {
      // RFC 7959 §2.5: the upload in order, each block acknowledged with 2.31 until the last.
      const v = readUint(block1);
      const num = Math.floor(v / 16);
      const more = (v & 8) !== 0;
      const size = 2 ** ((v & 7) + 4);
      // One upload per peer, path and Request-Tag (RFC 9175): clients such as libcoap change the
      // token from block to block.
      const tag = packet.options.find((o) => o.name === 292 || String(o.name) === "Request-Tag")?.value;
      const uploadKey = `${remote.address}|${remote.port}|${
        packet.options.filter((o) => o.name === "Uri-Path").map((o) => o.value.toString("hex")).join("/")
      }|${tag?.toString("hex") ?? ""}`;
      echo = [{ name: "Block1", value: block1 }];
      if (num * size + payload.length > options.maxPayloadBytes) {
        uploads.delete(uploadKey);
        return answer(key, packet, remote, {
          code: "4.13",
          payload: `Body is over the ${options.maxPayloadBytes}-byte limit`,
          size1: options.maxPayloadBytes,
        });
      }
      trimUploads(t);
      let upload = uploads.get(uploadKey);
      if (num === 0) {
        if (upload === undefined && uploads.size >= limits.maxUploads) {
          return answer(key, packet, remote, {
            code: "5.03",
            payload: "Too many uploads at once",
            maxAge: 5,
          });
        }
        upload = { at: t, next: 0, parts: [], bytes: 0 };
        uploads.set(uploadKey, upload);
      }
      if (upload === undefined || upload.next !== num) {
        uploads.delete(uploadKey);
        return answer(key, packet, remote, {
          code: "4.08",
          payload: `Block ${num} arrived out of order: start the upload again from block 0`,
        });
      }
      upload.parts.push(payload);
      upload.bytes += payload.length;
      upload.next = num + 1;
      upload.at = t;
      if (more) return answer(key, packet, remote, { code: "2.31" }, echo);
      uploads.delete(uploadKey);
      payload = Buffer.concat(upload.parts, upload.bytes);
    }
    const observeOption = option(packet, "Observe");
    const observe = observeOption === undefined ? undefined : readUint(observeOption);
    const request: CoapRequest = {
      code: packet.code,
      path: packet.options.filter((o) => o.name === "Uri-Path").map((o) => o.value.toString("utf8")),
      payload,
      observe,
      remote,
      exchange: key,
    };
    if (observe === 0 && packet.code === "0.01") request.observation = createObservation(packet, remote);
    let reply: CoapReply;
    try {
      reply = await options.handler(request);
    } catch (error) {
      options.onError(error);
      reply = { code: "5.00", payload: "Internal error" };
    }
    const extra = [...echo ?? []];
    if (reply.observing) extra.push({ name: "Observe", value: uint(1) });
    answer(key, packet, remote, reply, extra);
  }

  function onMessage(msg: Buffer, rinfo: { address: string; port: number }): void {
    let packet: ParsedPacket;
    try {
      packet = parse(msg);
    } catch {
      return; // not CoAP: silently ignored (RFC 7252 §4.2 allows it for malformed messages)
    }
    const remote = { address: rinfo.address, port: rinfo.port };
    if (packet.ack || packet.reset) {
      const p = pending.get(packet.messageId);
      if (p && p.remote.address === remote.address && p.remote.port === remote.port) {
        clearTimeout(p.timer);
        pending.delete(packet.messageId);
        if (packet.reset) p.observation.gone();
      }
      return;
    }
    if (packet.code === "0.00") {
      // A CoAP ping: answered with a reset (RFC 7252 §4.3).
      if (packet.confirmable) {
        send(
          generate({ code: "0.00", messageId: packet.messageId, reset: true, confirmable: false }),
          remote,
        );
      }
      return;
    }
    if (!packet.code.startsWith("0.")) return; // a response we did not ask for
    const t = now();
    const key = `${remote.address}|${remote.port}|${packet.messageId}`;
    const seen = exchanges.get(key);
    if (seen !== undefined && t - seen.at <= EXCHANGE_LIFETIME_MS) {
      if (seen.answer) send(seen.answer, remote);
      return; // a copy of a request still being handled: its answer is coming
    }
    exchanges.delete(key);
    if (inFlight >= limits.maxInFlight) {
      send(
        encode(packet, { code: "5.03", payload: "Too many requests at once; try again", maxAge: 1 }),
        remote,
      );
      return;
    }
    exchanges.set(key, { at: t });
    trimExchanges(t);
    inFlight++;
    onRequest(key, packet, remote)
      .catch((error) => options.onError(error))
      .finally(() => inFlight--);
  }

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        const s = createSocket({ type: isIPv6(host) ? "udp6" : "udp4" });
        s.once("error", reject);
        s.on("message", (msg, rinfo) => {
          try {
            onMessage(msg, rinfo);
          } catch (error) {
            options.onError(error);
          }
        });
        s.bind(port, host, () => {
          s.off("error", reject);
          s.on("error", (error) => options.onError(error));
          socket = s;
          const a = s.address();
          resolve({ address: a.address, port: a.port });
        });
      });
    },
    async close() {
      // Requests being handled get their answers (they wait for a commit) before the socket goes.
      for (let waited = 0; inFlight > 0 && waited < 5_000; waited += 10) {
        await new Promise((r) => setTimeout(r, 10));
      }
      closed = true;
      for (const p of pending.values()) clearTimeout(p.timer);
      pending.clear();
      uploads.clear();
      const s = socket;
      socket = undefined;
      if (s === undefined) return;
      await new Promise<void>((resolve) => {
        try {
          s.close(() => resolve());
        } catch {
          resolve();
        }
      });
    },
    sizes: () => ({
      inFlight,
      exchanges: exchanges.size,
      uploads: uploads.size,
      notifications: pending.size,
    }),
  };
}
