/**
 * Commands from the hub to devices (SPEC §4, §6; docs/commands.md). The hub sends
 * `command{id, device, method, params, timeoutMs}`; outpost stores it, hands it to the device
 * (MQTT on the embedded or an external broker, ThingsBoard RPC, or an HTTP long poll), waits for
 * the answer or the deadline, and sends `commandResult{id, status, payload}` back, again after
 * every reconnect until the hub acknowledges it.
 *
 * ```ts
 * const commands = createCommands({ db, telemetry, send, isKnownDevice, seenDevices, deliver });
 * commands.start();
 * commands.receive(frame.command); // from the downlink
 * mountCommandRoutes(app, commands); // HTTP polling and answers
 * ```
 */
export {
  type AnswerOutcome,
  type Commands,
  type CommandsDeps,
  type CommandsOptions,
  type CommandView,
  createCommands,
} from "./host.ts";
export {
  type AnswerResult,
  COMMAND_ID,
  COMMAND_LIMITS,
  type CommandInput,
  type CommandStatus,
  type DeviceCommand,
  parseAnswer,
  parseCommand,
  type ParseCommandResult,
} from "./parse.ts";
export { CONSOLE_COMMAND_PREFIX, MAX_WAIT_SECONDS, mountCommandRoutes } from "./routes.ts";
