/**
 * Reading the command line: options shared by every command, usage errors (exit code 2), and values
 * given as text (integers, JSON or plain strings, key=value pairs). Nothing here loads the SDK.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { JsonObject, JsonValue } from "@taskq/sdk";

/** The command line is wrong: the message and the usage are printed, and the exit code is 2. */
export class UsageError extends Error {}

const COMMON = {
  json: { type: "boolean" },
  url: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Options = NonNullable<ParseArgsConfig["options"]>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: typeof COMMON & O; allowPositionals: true; strict: true }>>;

/** A command's arguments: its own options and the common ones; anything else is a usage error. */
export function parse<O extends Options>(args: string[], options: O): Parsed<O> {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export const int = (name: string, raw: string | undefined) => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new UsageError(`--${name}: "${raw}" is not an integer`);
  return n;
};

/** "3" → 3, "true" → true, '{"a":1}' → object, anything else stays a string. */
export function paramValue(raw: string): JsonValue {
  try {
    return JSON.parse(raw) as JsonValue;
  } catch {
    return raw;
  }
}

export function keyValues(pairs: string[], flag: string): JsonObject {
  const out: JsonObject = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag} ${pair}: expected key=value`);
    out[pair.slice(0, eq)] = paramValue(pair.slice(eq + 1));
  }
  return out;
}

/** Each value checked against the names allowed (matched ignoring case), or a usage error listing them. */
export function oneOf<T extends string>(flag: string, values: string[] | undefined, allowed: readonly T[]): T[] {
  return (values ?? []).map((value) => {
    const name = allowed.find((a) => a === value.toLowerCase());
    if (name === undefined) throw new UsageError(`${flag} ${value}: one of ${allowed.join(", ")}`);
    return name;
  });
}

export const out = (line: string) => process.stdout.write(`${line}\n`);
