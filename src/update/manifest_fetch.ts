/** Fetching a manifest: 30 s at most, 1 MiB at most (read as a stream), JSON or a clear error. */
import { Buffer } from "node:buffer";
import { errorMessage } from "../core/errors.ts";

export const MANIFEST_MAX_BYTES = 1024 * 1024;

export async function fetchManifest(
  url: string,
  doFetch: typeof fetch,
  signal: AbortSignal,
): Promise<unknown> {
  let response: Response;
  try {
    response = await doFetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) });
  } catch (error) {
    throw new Error(`Cannot fetch the manifest ${url}: ${errorMessage(error)}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(
      `Cannot fetch the manifest ${url}: HTTP ${response.status} ${response.statusText}`.trim(),
    );
  }
  // Read as a stream and stop past the limit: a hostile or broken server cannot make the agent
  // hold more than MANIFEST_MAX_BYTES (plus one chunk).
  const chunks: Uint8Array[] = [];
  let size = 0;
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > MANIFEST_MAX_BYTES) {
    await response.body?.cancel();
    throw new Error(`The manifest ${url} is over ${MANIFEST_MAX_BYTES} bytes (it declares ${declared})`);
  }
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MANIFEST_MAX_BYTES) {
        await reader.cancel().catch(() => {});
        throw new Error(`The manifest ${url} is over ${MANIFEST_MAX_BYTES} bytes`);
      }
      chunks.push(value);
    }
  }
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`The manifest ${url} is not valid JSON: ${errorMessage(error)}`);
  }
}
