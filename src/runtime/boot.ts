/**
 * The first module src/main.ts loads, before any other of the program: the compiled agent may
 * start itself again here with its garbage-collector options (src/runtime/gc.ts).
 */
import "./compat.ts";
import { applyGcOptions } from "./gc.ts";
import { isCompiled } from "./mod.ts";

applyGcOptions(isCompiled());
