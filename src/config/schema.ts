/**
 * The agent's configuration schema (SPEC §3). Strict objects everywhere: an unknown key is an
 * error, so a typo never silently falls back to a default. Defaults live here and only here.
 */
import * as v from "valibot";
import { DURATION_PATTERN, parseDuration } from "../core/duration.ts";
import { hostPort } from "../core/hostport.ts";
import { checkDevicePattern } from "../core/device_pattern.ts";

/** A duration such as `"30s"` (ms, s, m, h, d), turned into milliseconds. */
export const duration = v.pipe(
  v.string(),
  v.regex(DURATION_PATTERN, 'must be a duration such as "500ms", "30s", "5m", "1h" or "1d"'),
  v.transform((s) => parseDuration(s)!),
);

const nonEmpty = (what: string) => v.pipe(v.string(), v.minLength(1, `${what} must not be empty`));

/** The embedded broker's bounds (docs/limits.md); `maxPacketBytes` follows the payload limit. */
export const BROKER_LIMIT_DEFAULTS = {
  maxConnections: 10_000,
  maxRetained: 10_000,
  maxOfflineQueue: 1_000,
  sessionExpiry: "1d",
} as const;

export const DEFAULTS = {
  dataDir: "./.outpost",
  apiListen: "127.0.0.1:8080",
  brokerListen: "127.0.0.1:1883",
  outboxMaxBytes: 1024 * 1024 * 1024,
  maxPayloadBytes: 256 * 1024,
  deadLetters: 1000,
  devicesMax: 10_000,
  outboxMinFreeBytes: 64 * 1024 * 1024,
  updateTrialSeconds: 300,
  updateMaxStarts: 3,
  hubAckTimeout: "30s",
  devicesInactivityTimeout: "10m",
  modbusPort: 502,
  modbusUnitId: 1,
  modbusInterval: "5s",
  modbusTimeout: "1s",
  logMaxBytes: 4 * 1024 * 1024,
} as const;

export const BrokerSchema = v.strictObject({
  /** `host:port`; port 0 picks a free port (logged as `mqtt.broker.started`). */
  listen: v.optional(hostPort, DEFAULTS.brokerListen),
  /** `none`: anyone (development); `token`: device id + token, or the API token for local-bus clients. */
  auth: v.optional(v.picklist(["none", "token"], 'must be "none" or "token"'), "none"),
  /** Bounds of what clients can make the broker hold (docs/limits.md). */
  limits: v.optional(
    v.strictObject({
      /** Default: limits.maxPayloadBytes + 64 KiB. */
      maxPacketBytes: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1024, "must be at least 1024"), v.maxValue(268_435_455)),
      ),
      maxConnections: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1, "must be at least 1")),
        BROKER_LIMIT_DEFAULTS.maxConnections,
      ),
      maxRetained: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(0, "must be 0 or more")),
        BROKER_LIMIT_DEFAULTS.maxRetained,
      ),
      maxOfflineQueue: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1, "must be at least 1")),
        BROKER_LIMIT_DEFAULTS.maxOfflineQueue,
      ),
      sessionExpiry: v.optional(duration, BROKER_LIMIT_DEFAULTS.sessionExpiry),
    }),
  ),
});

export const ExternalBrokerSchema = v.strictObject({
  url: v.pipe(v.string(), v.regex(/^(mqtts?|tcp|ssl|wss?):\/\//, "must be an mqtt:// or mqtts:// URL")),
  topics: v.optional(
    v.pipe(v.array(nonEmpty("a topic filter")), v.minLength(1, "must name at least one topic filter")),
    ["devices/+/telemetry", "devices/+/attributes", "devices/+/events"],
  ),
  /**
   * Topic → device: levels with one `{device}`, optionally one `{kind}` (telemetry, attributes or
   * events), `+` for any level, `#` last; default `devices/{device}/{kind}`.
   */
  devicePattern: v.optional(
    v.pipe(
      nonEmpty("devicePattern"),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        const problem = checkDevicePattern(dataset.value);
        if (problem) addIssue({ message: problem });
      }),
    ),
  ),
  /** The kind of every message when `devicePattern` has no `{kind}` level. */
  kind: v.optional(
    v.picklist(["telemetry", "attributes", "events"], 'must be "telemetry", "attributes" or "events"'),
  ),
  /** Fixed client id of the persistent session; default `outpost-<edgeId>-<index>`. */
  clientId: v.optional(nonEmpty("clientId")),
  username: v.optional(v.string()),
  password: v.optional(v.string()),
});

const hubUrl = v.pipe(
  v.string(),
  v.regex(/^grpcs?:\/\/[^/]+$/, 'must be "grpc://host:port" or "grpcs://host:port"'),
);

export const HubSchema = v.strictObject({
  /** One hub, or several replicas of one hub to fail over between, in order (SPEC §11). */
  url: v.union(
    [hubUrl, v.pipe(v.array(hubUrl), v.minLength(1, "must list at least one URL"))],
    'must be "grpc://host:port", "grpcs://host:port", or a list of them',
  ),
  routingKey: nonEmpty("routingKey"),
  secret: nonEmpty("secret"),
  ca: v.optional(nonEmpty("ca")),
  /** A batch not acknowledged within this time means a broken link: reconnect and resend. */
  ackTimeout: v.optional(duration, DEFAULTS.hubAckTimeout),
});

/** CoAP (RFC 7252, UDP) with ThingsBoard's device paths; absent: off. */
export const CoapSchema = v.strictObject({
  /** `host:port`, e.g. `"127.0.0.1:5683"`; port 0 picks a free port (logged as `coap.started`). */
  listen: hostPort,
});

const REGISTER_TYPES = ["uint16", "int16", "uint32", "int32", "float32", "bool"] as const;
const BIT_TABLES = new Set(["coil", "discrete"]);

/** One value read from a Modbus server: where it is and how its words become a number. */
export const ModbusRegisterSchema = v.pipe(
  v.strictObject({
    /** The telemetry key (and the name a `modbus.write` command uses). */
    name: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._:-]{1,128}$/, "must be 1-128 of A-Z a-z 0-9 . _ : -")),
    table: v.picklist(
      ["holding", "input", "coil", "discrete"],
      'must be "holding", "input", "coil" or "discrete"',
    ),
    /** The protocol address, 0-based (register 40001 is holding address 0). */
    address: v.pipe(v.number(), v.integer("must be an integer"), v.minValue(0), v.maxValue(65535)),
    /** Default: `uint16` for holding and input registers, `bool` for coils and discrete inputs. */
    type: v.optional(v.picklist(REGISTER_TYPES, `must be one of ${REGISTER_TYPES.join(", ")}`)),
    /** Of a 32-bit value: `big` when the first register holds the high word. Default `big`. */
    wordOrder: v.optional(v.picklist(["big", "little"], 'must be "big" or "little"')),
    /** value = raw × scale + offset (and the reverse for writes). */
    scale: v.optional(v.pipe(v.number(), v.finite(), v.check((n) => n !== 0, "must not be 0"))),
    offset: v.optional(v.pipe(v.number(), v.finite())),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const r = dataset.value;
    const bits = BIT_TABLES.has(r.table);
    const type = r.type ?? (bits ? "bool" : "uint16");
    if (bits !== (type === "bool")) {
      addIssue({
        message: bits
          ? `a ${r.table} is a bit: type must be "bool"`
          : `a ${r.table} register holds a number: type must not be "bool"`,
        path: [{ type: "object", origin: "value", input: r, key: "type", value: r.type }],
      });
    }
    const wide = type === "uint32" || type === "int32" || type === "float32";
    if (r.wordOrder !== undefined && !wide) {
      addIssue({
        message: "applies only to 32-bit types (uint32, int32, float32)",
        path: [{ type: "object", origin: "value", input: r, key: "wordOrder", value: r.wordOrder }],
      });
    }
    if (bits && (r.scale !== undefined || r.offset !== undefined)) {
      addIssue({
        message: "scale and offset apply only to registers, not to bits",
        path: [{
          type: "object",
          origin: "value",
          input: r,
          key: r.scale !== undefined ? "scale" : "offset",
          value: r.scale ?? r.offset,
        }],
      });
    }
    if (wide && r.address > 65534) {
      addIssue({
        message: "a 32-bit value needs two registers: the address must be at most 65534",
        path: [{ type: "object", origin: "value", input: r, key: "address", value: r.address }],
      });
    }
  }),
);

/** A Modbus TCP server polled for one device's telemetry (SPEC §10). */
export const ModbusDeviceSchema = v.pipe(
  v.strictObject({
    device: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._:-]{1,128}$/, "must be 1-128 of A-Z a-z 0-9 . _ : -")),
    host: nonEmpty("host"),
    port: v.optional(
      v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1), v.maxValue(65535)),
      DEFAULTS.modbusPort,
    ),
    unitId: v.optional(
      v.pipe(v.number(), v.integer("must be an integer"), v.minValue(0), v.maxValue(255)),
      DEFAULTS.modbusUnitId,
    ),
    /** Time between polls (one telemetry message each). */
    interval: v.optional(
      v.pipe(
        duration,
        v.minValue(100, "must be at least 100ms"),
        v.maxValue(86_400_000, "must be at most 1d"),
      ),
      DEFAULTS.modbusInterval,
    ),
    /** How long one request may take before the server counts as not answering. */
    timeout: v.optional(
      v.pipe(duration, v.minValue(10, "must be at least 10ms"), v.maxValue(60_000, "must be at most 60s")),
      DEFAULTS.modbusTimeout,
    ),
    registers: v.pipe(v.array(ModbusRegisterSchema), v.minLength(1, "must list at least one register")),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const seen = new Set<string>();
    dataset.value.registers.forEach((r, i) => {
      if (seen.has(r.name)) {
        addIssue({
          message: `duplicate register name "${r.name}"`,
          path: [
            {
              type: "object",
              origin: "value",
              input: dataset.value,
              key: "registers",
              value: dataset.value.registers,
            },
            { type: "array", origin: "value", input: dataset.value.registers, key: i, value: r },
            { type: "object", origin: "value", input: r, key: "name", value: r.name },
          ],
        });
      }
      seen.add(r.name);
    });
  }),
);

export const ConfigSchema = v.strictObject({
  edgeId: v.optional(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,128}$/, "must be 1-128 of A-Z a-z 0-9 . _ -")),
  ),
  dataDir: v.optional(nonEmpty("dataDir"), DEFAULTS.dataDir),
  api: v.optional(
    v.strictObject({
      listen: v.optional(hostPort, DEFAULTS.apiListen),
      token: v.optional(v.pipe(v.string(), v.minLength(16, "must be at least 16 characters"))),
    }),
    {},
  ),
  mqtt: v.optional(
    v.strictObject({
      broker: v.optional(v.union([v.literal(false), BrokerSchema], "must be false or a broker object"), {}),
      external: v.optional(v.array(ExternalBrokerSchema), []),
    }),
    {},
  ),
  hub: v.optional(HubSchema),
  outbox: v.optional(
    v.strictObject({
      maxBytes: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(65536, "must be at least 65536")),
        DEFAULTS.outboxMaxBytes,
      ),
      onFull: v.optional(
        v.picklist(["drop-oldest", "reject"], 'must be "drop-oldest" or "reject"'),
        "drop-oldest",
      ),
      /**
       * Under `drop-oldest`, the oldest records also make room when the file system holding the
       * outbox has less free space than this (0: never). Absent: `DEFAULTS.outboxMinFreeBytes`,
       * applied where the outbox is opened.
       */
      minFreeBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0, "must be 0 or more"))),
    }),
    {},
  ),
  devices: v.optional(
    v.strictObject({
      /** Distinct device ids tracked (seen or provisioned); messages from new ids past it are refused. */
      max: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1, "must be at least 1"), v.maxValue(10_000_000)),
        DEFAULTS.devicesMax,
      ),
      /** A connectionless device (HTTP, CoAP) is offline this long after its last activity. */
      inactivityTimeout: v.optional(duration, DEFAULTS.devicesInactivityTimeout),
    }),
    {},
  ),
  limits: v.optional(
    v.strictObject({
      maxPayloadBytes: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(16 * 1024 * 1024)),
        DEFAULTS.maxPayloadBytes,
      ),
    }),
    {},
  ),
  rules: v.optional(
    v.union([nonEmpty("rules"), v.looseObject({})], "must be a file path or a rules document"),
  ),
  coap: v.optional(CoapSchema),
  modbus: v.optional(
    v.pipe(
      v.array(ModbusDeviceSchema),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        const seen = new Set<string>();
        dataset.value.forEach((d, i) => {
          if (seen.has(d.device)) {
            addIssue({
              message: `device "${d.device}" is polled twice`,
              path: [
                { type: "array", origin: "value", input: dataset.value, key: i, value: d },
                { type: "object", origin: "value", input: d, key: "device", value: d.device },
              ],
            });
          }
          seen.add(d.device);
        });
      }),
    ),
    [],
  ),
  update: v.optional(
    v.strictObject({
      manifestUrl: v.optional(v.pipe(v.string(), v.url("must be a URL"))),
      publicKey: v.optional(v.pipe(v.string(), v.base64("must be base64"))),
      auto: v.optional(v.boolean(), false),
      /** How long a new binary has to become healthy (API up, store open, hub connected). */
      trialSeconds: v.optional(
        v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1), v.maxValue(86400)),
        DEFAULTS.updateTrialSeconds,
      ),
      /** Starts a new binary gets during its trial before it is rolled back. */
      maxStarts: v.optional(
        v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1), v.maxValue(100)),
        DEFAULTS.updateMaxStarts,
      ),
    }),
    {},
  ),
  log: v.optional(
    v.strictObject({
      level: v.optional(v.picklist(["debug", "info", "warn", "error"]), "info"),
      /** The on-disk log ring in `<dataDir>/logs/` (two files of half this each). */
      maxBytes: v.optional(
        v.pipe(
          v.number(),
          v.integer("must be an integer"),
          v.minValue(65536, "must be at least 65536"),
          v.maxValue(1024 * 1024 * 1024, "must be at most 1 GiB"),
        ),
        DEFAULTS.logMaxBytes,
      ),
    }),
    {},
  ),
});

export type ConfigInput = v.InferInput<typeof ConfigSchema>;
export type ParsedConfig = v.InferOutput<typeof ConfigSchema>;
