/** Page tokens: opaque to callers (base64url JSON), checked on the way back in. */
import { invalidArgument } from "../engine/errors.js";

export function encodePageToken(position: Record<string, string>): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodePageToken<T extends Record<string, string>>(field: string, token: string): T {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (value && typeof value === "object" && Object.values(value).every((x) => typeof x === "string")) return value as T;
  } catch {
    // fall through
  }
  throw invalidArgument(`${field}: not a page token from this list`);
}
