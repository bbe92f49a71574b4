/**
 * Payload field paths (`temperature`, `env.humidity`, `values.0`) and the JSON helpers the actions
 * use to read and write them. Reads see only own properties. Writes touch only a top-level copy
 * the engine owns; nested objects are never changed in place but replaced by copies along the
 * written path, so they can be shared with the caller's message without a deep copy.
 */
import type { JsonObject } from "../core/message.ts";

/** Field names that would reach the message itself or an object's prototype. */
const RESERVED_FIRST = new Set(["@device", "@kind", "@ts", "@topic"]);

/** Checks a dotted field path; answers a message when it is not usable, else `undefined`. */
export function fieldPathProblem(path: string): string | undefined {
  if (path === "") return "Invalid field path: it is empty";
  const segments = path.split(".");
  if (segments.some((s) => s === "")) {
    return `Invalid field path ${JSON.stringify(path)}: a segment is empty`;
  }
  if (segments.includes("__proto__")) {
    return `Invalid field path ${JSON.stringify(path)}: "__proto__" is not allowed`;
  }
  if (RESERVED_FIRST.has(segments[0])) {
    return `Invalid field path ${JSON.stringify(path)}: ${
      segments[0]
    } is a message field, not a payload field`;
  }
  return undefined;
}

export function splitPath(path: string): readonly string[] {
  return Object.freeze(path.split("."));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The value at `segments`, or `undefined` when any step is missing. Only own data counts: the
 * members a name could reach on a prototype are all functions (and "__proto__" is not a valid
 * path), and JSON holds no functions, so a function found on the way means "absent".
 */
export function getField(root: unknown, segments: readonly string[]): unknown {
  let cur: unknown = root;
  for (let i = 0; i < segments.length; i++) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[segments[i]];
  }
  return typeof cur === "function" ? undefined : cur;
}

function isIndex(key: string, arr: unknown[]): boolean {
  return /^(0|[1-9]\d*)$/.test(key) && Number(key) < arr.length;
}

function put(container: Record<string, unknown> | unknown[], key: string, value: unknown): void {
  if (Array.isArray(container)) container[Number(key)] = value;
  // A plain assignment to "__proto__" would change the prototype instead of adding a key.
  else if (key === "__proto__") {
    Object.defineProperty(container, key, { value, writable: true, enumerable: true, configurable: true });
  } else container[key] = value;
}

/**
 * A one-level copy of an object or array. `Object.assign` copies objects of many shapes several
 * times faster than a spread, but it assigns, and assigning "__proto__" would set the prototype:
 * such an object is spread instead (spreading defines keys).
 */
export function shallowCopy<T extends object>(value: T): T {
  if (Array.isArray(value)) return value.slice() as T;
  return (Object.hasOwn(value, "__proto__") ? { ...value } : Object.assign({}, value)) as T;
}

/**
 * Writes `value` at `segments` in `root`, which the caller owns. Nested objects on the way are
 * replaced by copies, never written in place (they may be shared with the caller's message); a
 * step that holds a number, a string or null is replaced by an object. A path through an array
 * must name an existing element, else nothing is written (an array is never replaced).
 */
export function setField(root: JsonObject, segments: readonly string[], value: unknown): void {
  if (segments.length === 1) {
    // Field paths never hold "__proto__" (see fieldPathProblem); aggregate names neither.
    root[segments[0]] = value;
    return;
  }
  let cur: Record<string, unknown> | unknown[] = root;
  const last = segments.length - 1;
  for (let i = 0; i < last; i++) {
    const key = segments[i];
    if (Array.isArray(cur) && !isIndex(key, cur)) return; // cannot name a new array slot
    const next: unknown = Array.isArray(cur)
      ? cur[Number(key)]
      : (Object.hasOwn(cur, key) ? cur[key] : undefined);
    // An array is never replaced: a path through it must name an existing element.
    if (Array.isArray(next) && !isIndex(segments[i + 1], next)) return;
    const copy: Record<string, unknown> | unknown[] = isRecord(next) || Array.isArray(next)
      ? shallowCopy(next)
      : {};
    put(cur, key, copy);
    cur = copy;
  }
  const key = segments[last];
  if (Array.isArray(cur) && !isIndex(key, cur)) return;
  put(cur, key, value);
}

/**
 * `root` without the value at `segments`, as a new object (objects on the path are copied, the
 * rest is shared), or `root` itself when there is nothing to remove: the path is missing or
 * runs through an array (elements are not taken out of arrays). Never uses `delete`, which
 * would push objects into a slow mode.
 */
export function withoutField(root: JsonObject, segments: readonly string[]): JsonObject {
  return without(root, segments, 0);
}

function without(
  obj: Record<string, unknown>,
  segments: readonly string[],
  i: number,
): Record<string, unknown> {
  const key = segments[i];
  if (!Object.hasOwn(obj, key)) return obj;
  if (i < segments.length - 1) {
    const child = obj[key];
    if (!isRecord(child)) return obj;
    const inner = without(child, segments, i + 1);
    if (inner === child) return obj;
    const copy = shallowCopy(obj);
    put(copy, key, inner);
    return copy;
  }
  // Rest destructuring copies natively and defines keys (safe for a "__proto__" key).
  const { [key]: _removed, ...rest } = obj;
  return rest;
}

/** A deep copy of JSON-like data (plain objects and arrays; other values are kept as they are). */
export function cloneJson<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const out = value.slice();
    for (let i = 0; i < out.length; i++) {
      const v = out[i];
      if (typeof v === "object" && v !== null) out[i] = cloneJson(v);
    }
    return out as T;
  }
  const out = shallowCopy(value as object) as Record<string, unknown>;
  for (const key in out) {
    const v = out[key];
    if (typeof v === "object" && v !== null) out[key] = cloneJson(v);
  }
  return out as T;
}

/** Makes a value fit for a JSON payload: non-finite numbers and `undefined` become `null`. */
export function toJsonValue(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "object" && value !== null) return cloneJson(value);
  if (typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") return null;
  return value;
}

/** Deeply freezes a value (used for documents held by compiled rules). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
