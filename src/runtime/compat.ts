/**
 * What Node 20 lacks of the language the sources use (Deno, Bun and Node ≥ 22 have it):
 * `Promise.withResolvers` (ES2024). Installed once, first thing (src/runtime/boot.ts).
 */
const P = Promise as unknown as { withResolvers?: unknown };
if (typeof P.withResolvers !== "function") {
  P.withResolvers = function withResolvers<T>() {
    let resolve!: (value: T | PromiseLike<T>) => void;
    let reject!: (reason?: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
