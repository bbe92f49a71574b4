/**
 * One lifecycle for every long-lived part of a process: `start({signal})`, then an idempotent
 * `stop()`. `lifecycle()` starts the parts in the order given and stops them in reverse, written
 * once: a part that fails to start stops the ones already started (in reverse) and the error
 * goes to the caller; `signal` aborts as soon as stopping begins, so a part can end what it
 * holds open for others (long polls, waits) before the parts after it stop.
 */

export interface Component {
  /** For logs: what failed to start or stop. */
  readonly name: string;
  start(context: { signal: AbortSignal }): void | Promise<void>;
  /** Idempotent; never called before `start` has settled. */
  stop(): void | Promise<void>;
}

export interface Lifecycle {
  start(): Promise<void>;
  /** Stops what was started, last first; idempotent (every caller waits for the same stop). */
  stop(): Promise<void>;
}

export function lifecycle(
  components: readonly Component[],
  onStopError: (name: string, error: unknown) => void = () => {},
): Lifecycle {
  const controller = new AbortController();
  const started: Component[] = [];
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      controller.abort();
      for (let i = started.length - 1; i >= 0; i--) {
        try {
          await started[i].stop();
        } catch (error) {
          onStopError(started[i].name, error);
        }
      }
    })();
    return stopping;
  };

  return {
    async start() {
      for (const component of components) {
        if (controller.signal.aborted) return;
        try {
          await component.start({ signal: controller.signal });
        } catch (error) {
          started.push(component); // a half-started part is stopped too (stop is idempotent)
          await stop();
          throw error;
        }
        started.push(component);
      }
    },
    stop,
  };
}
