/**
 * The one place that knows which runtime runs us (Deno, Bun or Node): serving HTTP, the own
 * executable path, signals, exiting. Everything else is runtime-neutral and calls these.
 */
import { spawn } from "node:child_process";
import { Buffer } from "node:buffer";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import process from "node:process";
import { errorMessage } from "../core/errors.ts";

export type RuntimeName = "deno" | "bun" | "node";

export { gcOptionsInForce } from "./gc.ts";
export { type ReleaseReport, releaseStartupPages, startupPagesEnabled } from "./pages.ts";

const g = globalThis as any;

export function runtimeName(): RuntimeName {
  if (typeof g.Bun !== "undefined") return "bun";
  if (typeof g.Deno !== "undefined") return "deno";
  return "node";
}

/** `deno 2.9.6`, `bun 1.4.5`, `node v20.20.2`. */
export function runtimeVersion(): string {
  const name = runtimeName();
  if (name === "bun") return `bun ${g.Bun.version}`;
  if (name === "deno") return `deno ${g.Deno.version.deno}`;
  return `node ${process.version}`;
}

/** Stamped by `npm run build` (`linux-x64`, `linux-arm64-musl`, …); absent when run from source. */
declare const OUTPOST_BUILD_TARGET: string | undefined;

/**
 * `linux-x64`, `linux-arm64`, … as the release artifacts name targets. A compiled binary reports
 * the target it was built for (a musl build says `linux-x64-musl`, which platform and arch alone
 * cannot tell), so that self-update picks the matching artifact.
 */
export function target(): string {
  if (typeof OUTPOST_BUILD_TARGET === "string") return OUTPOST_BUILD_TARGET;
  // 32-bit ARM (Node's "arm") ships as the armv7 archive.
  return `${process.platform}-${process.arch === "arm" ? "armv7" : process.arch}`;
}

/** True when running as a compiled single-file executable rather than from source. */
export function isCompiled(): boolean {
  if (runtimeName() === "bun") return import.meta.url.includes("$bunfs") || import.meta.url.includes("~BUN");
  return false;
}

/**
 * The Node bundle as install.sh installs it (the armv7 archive): the launcher passes the path it
 * was run as in `OUTPOST_EXE`, a link to the launcher of one release. That link is what a
 * self-update replaces. Undefined otherwise.
 */
export function installedBundle(): string | undefined {
  if (runtimeName() !== "node") return undefined;
  const exe = process.env.OUTPOST_EXE;
  return exe && exe.startsWith("/") ? exe : undefined;
}

/** How this outpost was installed, for self-update: a compiled binary, the bundle, or neither (source). */
export function installedAs(): "binary" | "bundle" | undefined {
  if (isCompiled()) return "binary";
  return installedBundle() === undefined ? undefined : "bundle";
}

/** The path of the executable that runs us (the outpost binary when compiled, the bundle's link). */
export function executablePath(): string {
  return installedBundle() ?? process.execPath;
}

/** What the server knows of a request besides the request itself (hono's `c.env`). */
export interface ConnInfo {
  /** The peer's IP address (`unknown` when the runtime cannot tell). */
  remoteAddress: string;
  /** Lifts the server's idle timeout for this request (a long poll), where the runtime has one. */
  keepOpen?: () => void;
}

export interface ServeOptions {
  hostname: string;
  port: number;
  fetch: (request: Request, info: ConnInfo) => Response | Promise<Response>;
}

export interface Server {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** Stops accepting and closes open connections. Idempotent. */
  close(): Promise<void>;
}

/** Serves a fetch handler with the runtime's own HTTP server. */
export async function serve(options: ServeOptions): Promise<Server> {
  const name = runtimeName();
  if (name === "bun") {
    const server = g.Bun.serve({
      hostname: options.hostname,
      port: options.port,
      // Bodies are streams; routes read them with a bound (Content-Length first), after
      // authentication.
      fetch: (
        request: Request,
        server: { requestIP(r: Request): { address: string } | null; timeout(r: Request, s: number): void },
      ) =>
        options.fetch(request, {
          remoteAddress: server.requestIP(request)?.address ?? "unknown",
          keepOpen: () => server.timeout(request, 0),
        }),
      maxRequestBodySize: 64 * 1024 * 1024,
      idleTimeout: 120,
    });
    let closed = false;
    return {
      port: server.port,
      close() {
        if (!closed) {
          closed = true;
          server.stop(true);
        }
        return Promise.resolve();
      },
    };
  }
  if (name === "deno") {
    const ac = new AbortController();
    const ready = Promise.withResolvers<number>();
    const server = g.Deno.serve(
      {
        hostname: options.hostname,
        port: options.port,
        signal: ac.signal,
        onListen: (addr: { port: number }) => ready.resolve(addr.port),
        onError: (error: unknown) => {
          console.error(JSON.stringify({ level: "error", event: "http.error", error: errorMessage(error) }));
          return new Response("internal error", { status: 500 });
        },
      },
      (request: Request, info: { remoteAddr?: { hostname?: string } }) =>
        options.fetch(request, { remoteAddress: info?.remoteAddr?.hostname ?? "unknown" }),
    );
    const port = await Promise.race([
      ready.promise,
      server.finished.then(() => {
        throw new Error(`HTTP server on ${options.hostname}:${options.port} stopped at start`);
      }),
    ]);
    let closed = false;
    return {
      port,
      async close() {
        if (closed) return;
        closed = true;
        ac.abort();
        await server.finished.catch(() => {});
      },
    };
  }
  return await serveNode(options);
}

/**
 * Node's adapter: the request body is handed on as a stream (never buffered here), so a route
 * reads it only after authentication, with its own bound; a response sent before the body was
 * read whole closes the connection instead of draining the rest.
 */
export function nodeRequestListener(
  fetch: ServeOptions["fetch"],
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    try {
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (typeof v === "string") headers.set(k, v);
        else if (Array.isArray(v)) { for (const x of v) headers.append(k, x); }
      }
      const method = req.method ?? "GET";
      const hasBody = method !== "GET" && method !== "HEAD";
      const body = hasBody ? nodeBodyStream(req) : undefined;
      const request = new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
        method,
        headers,
        body,
        // deno-lint-ignore no-explicit-any
        ...(hasBody ? { duplex: "half" } as any : {}),
      });
      const response = await fetch(request, { remoteAddress: req.socket.remoteAddress ?? "unknown" });
      const unread = hasBody && !req.complete;
      // No `connection: close` for an unread body: Node would destroy the socket right after the
      // answer, and the unread bytes would turn into a reset that can lose the answer.
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (response.body && (response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
        await streamBody(response.body, res);
        return;
      }
      res.end(Buffer.from(await response.arrayBuffer()), () => {
        if (!unread) return;
        // Discard the rest as it arrives (nothing is kept), so the client reads the answer rather
        // than a reset; a client that keeps sending is cut off after a few seconds.
        req.resume();
        setTimeout(() => {
          if (!req.complete) req.destroy();
        }, 5_000).unref?.();
      });
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { connection: "close" });
      res.end(errorMessage(error));
      if (!req.complete) req.destroy();
    }
  };
}

/**
 * Writes a streamed answer (Server-Sent Events) as it comes: a chunk is pulled only once the last
 * one was taken by the socket, so a client that does not read holds nothing here (its events wait,
 * bounded, in the stream's own queue). The stream is cancelled when the client goes away.
 */
async function streamBody(body: ReadableStream<Uint8Array>, res: ServerResponse): Promise<void> {
  const reader = body.getReader();
  const gone = () => void reader.cancel().catch(() => {});
  res.once("close", gone);
  res.flushHeaders();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.once("drain", done);
          res.once("close", done);
        });
      }
    }
  } catch { /* the stream failed or the client went away: end the answer */ }
  res.off("close", gone);
  if (!res.destroyed) res.end();
}

/** The request's body as a pull stream: a chunk is read from the socket only when asked for. */
function nodeBodyStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  const iterator = req[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value as Uint8Array);
    },
    cancel() {
      // Stop reading (the socket is paused by backpressure); the listener closes the connection
      // once the answer is sent. Destroying the request here would lose that answer.
      req.pause();
    },
  }, { highWaterMark: 0 });
}

async function serveNode(options: ServeOptions): Promise<Server> {
  const server = createServer(nodeRequestListener(options.fetch));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => resolve());
  });
  const addr = server.address();
  let closed = false;
  return {
    port: typeof addr === "object" && addr ? addr.port : options.port,
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}

/** Calls `handler` once on the first SIGINT or SIGTERM; returns a function that unhooks it. */
export function onShutdownSignal(handler: (signal: string) => void): () => void {
  let fired = false;
  const listener = (signal: string) => {
    if (fired) return;
    fired = true;
    handler(signal);
  };
  const onInt = () => listener("SIGINT");
  const onTerm = () => listener("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return () => {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
  };
}

/** Ends the process with `code` (the CLI entry is the only caller). */
export function exit(code: number): never {
  process.exit(code);
}

/** Arguments after the executable (and script, when run from source). */
export function args(): string[] {
  if (runtimeName() === "deno") return [...g.Deno.args];
  // Bun, from source: [bun, /path/src/main.ts, ...]; Bun-compiled: [bun, /$bunfs/root/<name>, ...];
  // Node: [node, script, ...]. The arguments start at 2 in every case.
  return process.argv.slice(2);
}

/**
 * The arguments that start this program again with the executable (`executablePath()`): the
 * same as `args()` for a compiled binary; from source, the script comes first (and under Deno,
 * `run -A`), so that a restart without a supervisor also works from a checkout (`npm start`).
 */
export function relaunchArgs(): string[] {
  if (isCompiled()) return args();
  if (runtimeName() === "deno") {
    return ["run", "-A", new URL(g.Deno.mainModule).pathname, ...g.Deno.args];
  }
  return process.argv[1] ? [process.argv[1], ...args()] : args();
}

/**
 * The exit code that asks the supervisor to start us again after a self-update or rollback
 * (EX_TEMPFAIL). install.sh's unit restarts on it (`Restart=always`, and
 * `RestartForceExitStatus=75` for units that restart only on failure) and counts it as success.
 */
export const RESTART_EXIT_CODE = 75;

/**
 * True when a supervisor starts us again when we exit: systemd sets `INVOCATION_ID` (and
 * `NOTIFY_SOCKET` for notify units) in a service's environment. `OUTPOST_SUPERVISED=1` or `=0`
 * says so explicitly, for other supervisors (runit, s6, containers with a restart policy).
 */
export function underSupervisor(env: Record<string, string | undefined> = process.env): boolean {
  if (env.OUTPOST_SUPERVISED === "1") return true;
  if (env.OUTPOST_SUPERVISED === "0") return false;
  return Boolean(env.INVOCATION_ID || env.NOTIFY_SOCKET);
}

export interface DetachedProcess {
  pid: number;
  /** The exit code, or the signal's name. */
  exited: Promise<number | string>;
  kill(signal?: "SIGTERM" | "SIGKILL"): void;
}

/**
 * Starts `exe` with `argv` in its own session (it outlives us), sharing our stdout and stderr,
 * with our environment and working folder: how a self-update restarts without a supervisor.
 */
export function spawnDetached(exe: string, argv: string[]): DetachedProcess {
  const child = spawn(exe, argv, { detached: true, stdio: ["ignore", "inherit", "inherit"] });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(signal ?? code ?? 0));
    child.once("error", () => resolve(127));
  });
  return {
    pid: child.pid ?? -1,
    exited,
    kill(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    },
  };
}

/** True when stderr is a terminal (progress bars go there only then). */
export function stderrIsTerminal(): boolean {
  return Boolean(process.stderr.isTTY);
}

/** Our own process id. */
export function pid(): number {
  return process.pid;
}

/** True while a process with this id exists (signal 0 probes without sending). */
export function processAlive(id: number): boolean {
  try {
    process.kill(id, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Calls `handler` for a promise rejection nobody handled, instead of ending the process: a bug
 * worth an error log, but the agent's data is durable and it should keep serving.
 */
export function onUnhandledRejection(handler: (reason: unknown) => void): void {
  if (runtimeName() === "deno") {
    g.addEventListener("unhandledrejection", (event: { reason: unknown; preventDefault(): void }) => {
      event.preventDefault();
      handler(event.reason);
    });
    return;
  }
  process.on("unhandledRejection", (reason) => handler(reason));
}
