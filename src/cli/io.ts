/** Where commands write: stdout for results, stderr for diagnostics. Tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: Io = {
  out: (text) => console.log(text),
  err: (text) => console.error(text),
};
