/** Fixture for run.test.ts: `outpost hub --config FILE` without the CLI around it. */
import process from "node:process";
import { runHub } from "../../../src/hub/mod.ts";

process.exitCode = await runHub(process.argv[process.argv.length - 1]);
