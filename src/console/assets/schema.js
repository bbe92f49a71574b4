// Checks a JSON value against the JSON Schema subset the rules schema uses (type, const, enum,
// properties, required, additionalProperties, propertyNames, items, minItems, minLength,
// minimum, pattern, anyOf), and finds where each JSON Pointer sits in the text, so the editor
// can show every error at its path as the operator types.

const typeOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v;

const escape = (k) => String(k).replace(/~/g, "~0").replace(/\//g, "~1");

/** Every error as {path, message}; empty when the value conforms. */
export function validateSchema(schema, value, path = "") {
  const errors = [];
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const ok = types.some((x) => x === t || (x === "number" && t === "integer"));
    if (!ok) return [{ path, message: `Invalid type: expected ${types.join(" or ")}, received ${t}` }];
  }
  if ("const" in schema && value !== schema.const) {
    errors.push({ path, message: `Invalid value: expected ${JSON.stringify(schema.const)}` });
  }
  if (schema.enum && !schema.enum.includes(value)) {
    errors.push({
      path,
      message: `Invalid value: expected one of ${schema.enum.map((x) => JSON.stringify(x)).join(", ")}`,
    });
  }
  if (t === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) {
      errors.push({ path, message: `Invalid length: expected at least ${schema.minLength}` });
    }
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) {
      errors.push({ path, message: `Invalid format: expected ${schema.pattern}` });
    }
  }
  if ((t === "number" || t === "integer") && schema.minimum !== undefined && value < schema.minimum) {
    errors.push({ path, message: `Invalid value: expected at least ${schema.minimum}` });
  }
  if (t === "array") {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      errors.push({ path, message: `Invalid length: expected at least ${schema.minItems} items` });
    }
    if (schema.items) {
      value.forEach((x, i) => errors.push(...validateSchema(schema.items, x, `${path}/${i}`)));
    }
  }
  if (t === "object") {
    for (const key of schema.required ?? []) {
      if (!(key in value)) errors.push({ path, message: `Missing required key "${key}"` });
    }
    const props = schema.properties ?? {};
    for (const [k, v] of Object.entries(value)) {
      const p = `${path}/${escape(k)}`;
      if (schema.propertyNames) {
        for (const e of validateSchema(schema.propertyNames, k, p)) {
          errors.push({ path: p, message: `Key: ${e.message}` });
        }
      }
      if (k in props) errors.push(...validateSchema(props[k], v, p));
      else if (schema.additionalProperties === false) errors.push({ path: p, message: `Unknown key "${k}"` });
      else if (typeof schema.additionalProperties === "object") {
        errors.push(...validateSchema(schema.additionalProperties, v, p));
      }
    }
  }
  if (schema.anyOf) {
    let best;
    for (const branch of schema.anyOf) {
      const e = validateSchema(branch, value, path);
      if (e.length === 0) return errors;
      // The branch that names the object's key (an action like {"set": …}) explains it best.
      const named = t === "object" && branch.required?.some((k) => k in value);
      const score = named ? -1 : e.length;
      if (best === undefined || score < best.score) best = { score, e };
    }
    const keys = schema.anyOf.map((b) => b.required?.length === 1 ? b.required[0] : undefined);
    if (best.score === -1 || schema.anyOf.length === 1) errors.push(...best.e);
    else if (t === "object" && keys.every((k) => k !== undefined)) {
      const given = Object.keys(value).map((k) => `"${k}"`).join(", ") || "nothing";
      errors.push({ path, message: `Unknown form ${given}: expected one of ${keys.join(", ")}` });
    } else errors.push({ path, message: "Invalid value: matches none of the allowed forms" });
  }
  return errors;
}

/**
 * Parses JSON text and returns where each value starts, by JSON Pointer: Map(pointer → offset).
 * Throws SyntaxError with `offset` on malformed text.
 */
export function jsonPositions(text) {
  const at = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i])) i++;
  };
  const fail = (what) => {
    const e = new SyntaxError(`${what} at line ${text.slice(0, i).split("\n").length}`);
    e.offset = i;
    throw e;
  };
  const str = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("Unterminated string");
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (path) => {
    ws();
    at.set(path, i);
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail("Expected a key");
        const key = str();
        ws();
        if (text[i++] !== ":") fail("Expected ':'");
        value(`${path}/${escape(key)}`);
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return void i++;
        else fail("Expected ',' or '}'");
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") return void i++;
      for (let n = 0;; n++) {
        value(`${path}/${n}`);
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return void i++;
        else fail("Expected ',' or ']'");
      }
    } else if (c === '"') str();
    else {
      const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
      if (!m) fail("Unexpected character");
      i += m[0].length;
    }
  };
  value("");
  ws();
  if (i < text.length) fail("Unexpected text after the document");
  return at;
}
