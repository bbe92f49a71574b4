/**
 * A small CoAP client for the tests (one UDP socket, `coap-packet`'s codec): confirmable requests
 * retransmitted with the same message id until their ACK arrives or `maxRetransmit` is spent
 * (RFC 7252 §4.2, with a short timeout for tests), non-confirmable ones sent once, raw datagrams
 * for hostile input, and confirmable notifications (Observe) acknowledged and handed to a
 * listener. Used for volume; the protocol checks use libcoap's coap-client.
 */
import { Buffer } from "node:buffer";
import { createSocket, type Socket } from "node:dgram";
import { randomBytes } from "node:crypto";
import { generate, type NamedOption, parse, type ParsedPacket } from "coap-packet";

export interface CoapAnswer {
  code: string;
  payload: string;
  options: ParsedPacket["options"];
  messageId: number;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  payload?: string | Uint8Array;
  confirmable?: boolean;
  options?: NamedOption[];
  token?: Buffer;
  /** A fixed message id (to send a duplicate on purpose). */
  messageId?: number;
}

export interface CoapTestClient {
  /** Resolves with the answer, or undefined when none came (every retransmission unanswered). */
  request(options: RequestOptions): Promise<CoapAnswer | undefined>;
  /** Sends bytes as they are. */
  raw(bytes: Uint8Array): void;
  /** Notifications (and other unexpected messages) carrying `token`. */
  onToken(token: Buffer, listener: (answer: CoapAnswer) => void): void;
  /** Answers the next confirmable notification with a reset instead of an ACK. */
  resetNext: boolean;
  readonly port: number;
  close(): void;
}

export async function createCoapClient(
  serverPort: number,
  options: { host?: string; ackTimeoutMs?: number; maxRetransmit?: number } = {},
): Promise<CoapTestClient> {
  const host = options.host ?? "127.0.0.1";
  const ackTimeoutMs = options.ackTimeoutMs ?? 500;
  const maxRetransmit = options.maxRetransmit ?? 4;
  const socket: Socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  let mid = Math.floor(Math.random() * 0x10000);
  const waiting = new Map<number, (a: CoapAnswer) => void>();
  const listeners = new Map<string, (a: CoapAnswer) => void>();
  let closed = false;

  const client: CoapTestClient = {
    resetNext: false,
    port: socket.address().port,
    request(o) {
      const messageId = o.messageId ?? (mid = (mid + 1) & 0xffff);
      const segments = o.path.split("/").filter((s) => s !== "");
      const bytes = generate({
        code: o.method ?? "POST",
        confirmable: o.confirmable ?? true,
        messageId,
        token: o.token ?? randomBytes(4),
        options: [
          ...segments.map((s) => ({ name: "Uri-Path" as const, value: Buffer.from(s) })),
          ...o.options ?? [],
        ],
        payload: o.payload === undefined ? Buffer.alloc(0) : Buffer.from(o.payload),
      }, 65_000);
      return new Promise((resolve) => {
        let tries = 0;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const finish = (a: CoapAnswer | undefined) => {
          clearTimeout(timer);
          waiting.delete(messageId);
          resolve(a);
        };
        waiting.set(messageId, finish);
        const send = () => {
          if (closed) return finish(undefined);
          socket.send(bytes, serverPort, host);
          const wait = ackTimeoutMs * 2 ** tries;
          timer = setTimeout(() => {
            if (o.confirmable === false || tries >= maxRetransmit) return finish(undefined);
            tries++;
            send();
          }, wait);
        };
        send();
      });
    },
    raw(bytes) {
      socket.send(bytes, serverPort, host);
    },
    onToken(token, listener) {
      listeners.set(token.toString("hex"), listener);
    },
    close() {
      closed = true;
      for (const finish of waiting.values()) finish(undefined as unknown as CoapAnswer);
      socket.close();
    },
  };

  socket.on("message", (msg) => {
    let p: ParsedPacket;
    try {
      p = parse(msg);
    } catch {
      return;
    }
    const answer: CoapAnswer = {
      code: p.code,
      payload: p.payload.toString("utf8"),
      options: p.options,
      messageId: p.messageId,
    };
    if (p.ack && waiting.has(p.messageId)) {
      waiting.get(p.messageId)!(answer);
      return;
    }
    if (p.confirmable) {
      const reset = client.resetNext;
      client.resetNext = false;
      socket.send(
        generate({ code: "0.00", messageId: p.messageId, ack: !reset, reset, confirmable: false }),
        serverPort,
        host,
      );
    }
    listeners.get(p.token.toString("hex"))?.(answer);
  });
  return client;
}
