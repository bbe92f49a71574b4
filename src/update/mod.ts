/**
 * Self-update over the air (SPEC §8, docs/update.md): signed manifests, download with resume,
 * verification, an atomic swap that keeps `<exe>.prev`, a restart, and a trial that commits or
 * rolls back. The pre-start script scripts/outpost-prestart.sh shares the trial marker format.
 */
export {
  type AgentUpdate,
  bootUpdate,
  createAgentUpdate,
  restartAfter,
  type RestartRequest,
} from "./agent.ts";
export { fsyncDir, removeDurably, type UpdatePaths, updatePaths, writeFileAtomic } from "./_files.ts";
export { downloadArtifact, type DownloadOptions, type DownloadResult } from "./download.ts";
export {
  generateSigningKey,
  keyIdOf,
  parsePrivateKey,
  parsePublicKey,
  publicKeyOf,
  type SigningKey,
} from "./keys.ts";
export {
  type Artifact,
  canonicalBytes,
  canonicalJson,
  type Manifest,
  type ManifestRefusal,
  signManifest,
  verifyManifest,
} from "./manifest.ts";
export {
  readMarker,
  readResult,
  type TrialMarker,
  type UpdateResult,
  writeMarker,
  writeResult,
} from "./marker.ts";
export { mountUpdateRoutes } from "./routes.ts";
export { type WatchedTrial } from "./restart.ts";
export { compareSemver, parseSemver } from "./semver.ts";
export { bootCheck, type BootDecision, commitTrial, rollbackTrial } from "./trial.ts";
export {
  type CheckResult,
  createUpdater,
  type UpdateOptions,
  type Updater,
  type UpdaterDeps,
  type UpdateSettings,
  type UpdateStateName,
  type UpdateStatus,
} from "./updater.ts";
