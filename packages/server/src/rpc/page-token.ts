/** Page tokens: opaque to callers (base64url JSON), checked on the way back in. */
import { invalidArgument } from "../engine/index.js";

export function encodePageToken(position: Record<string, string>): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

/** The position a token holds; every one of `keys` must be there, as a string. */
export function decodePageToken<K extends string>(field: string, token: string, keys: readonly K[]): Record<K, string> {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    const position = value as Record<string, unknown>;
    if (value && typeof value === "object" && keys.every((k) => typeof position[k] === "string")) return value as Record<K, string>;
  } catch {
    // fall through
  }
  throw invalidArgument(`${field}: not a page token from this list`);
}
