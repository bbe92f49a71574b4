/**
 * Managing the agent from the hub (SPEC §12, docs/management.md): pushed configurations on trial
 * with rollback, logs from the on-disk ring, restarts, one operation lifecycle with outcomes that
 * survive restarts and kill -9.
 */
export {
  type ConfigBoot,
  configBootCheck,
  type ConfigMarker,
  type ConfigResult,
  type ConfigTrialPaths,
  configTrialPaths,
  readConfigMarker,
  readConfigResult,
  rollbackConfig,
  stageConfig,
  type StageOptions,
  watchedConfigTrial,
} from "./config_trial.ts";
export { JOURNAL_MAX, type JournalEntry, type OperationStatus } from "./journal.ts";
export {
  createManagement,
  type Management,
  type ManagementDeps,
  type ManagementRestart,
} from "./operations.ts";
export { mountManagementRoutes } from "./routes.ts";
