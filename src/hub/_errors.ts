/** An error's message, for a log field or an error answer. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
