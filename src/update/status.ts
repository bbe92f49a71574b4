/** What an update is doing, as `GET /api/v1/update` and the CLI show it. */
export type UpdateStateName =
  | "idle"
  | "checking"
  | "downloading"
  | "verifying"
  | "swapping"
  | "restarting"
  | "trial"
  | "committed"
  | "rolled-back"
  | "failed";

/** What `GET /api/v1/update` answers. */
export interface UpdateStatus {
  state: UpdateStateName;
  /** The running version. */
  current: string;
  /** The version being installed, on trial, or that the last update was about. */
  version?: string;
  previous?: string;
  manifestUrl?: string;
  progress?: { bytes: number; total: number };
  /** Why it failed or was rolled back. */
  reason?: string;
  /** A note on a non-failure (e.g. already up to date). */
  message?: string;
  trial?: { deadline: string; starts: number; boots: number; maxStarts: number };
  /** When the state last changed (ISO 8601). */
  at: string;
  pid: number;
}
