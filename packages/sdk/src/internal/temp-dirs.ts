/**
 * Per-task temp directories under a worker's storage root: `<root>/<task id>/`. Each holds a marker
 * file with how long to keep the directory after its task finishes and, once it has finished, when it
 * expires. A directory whose task never finished here (the worker crashed) expires its keep-time after
 * the marker was last written. Expired directories are deleted by removeExpired(), which the Worker
 * calls at start, hourly, and when the server's hourly taskq.temp-cleanup task reaches it.
 *
 * A marker's states: running (`expiresAt` null: written when an attempt asks for the directory) and
 * finished (`expiresAt` set: written when the attempt ends). A later attempt of the task that asks for
 * the directory again sets it back to running, so that the workers sharing the root, which spare only
 * their own running tasks, do not delete it under the attempt when the earlier expiry comes.
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { DEFAULT_TEMP_TTL_MS } from "../defaults.js";
import { Code, TaskqError, call } from "../errors.js";

const MARKER = ".taskq-temp.json";

interface Marker {
  /** How long to keep the directory after the task finishes. */
  ttlMs: number;
  /** When it expires (ms since the epoch); null while the task runs. */
  expiresAt: number | null;
}

export class TempDirs {
  constructor(
    readonly root: string,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The task's directory for a running attempt: created (with its marker) on first use, and marked
   * running again (its keep-time kept) when an earlier attempt had finished with it. File system errors
   * come as TaskqError, as all below.
   */
  create(taskId: string): Promise<string> {
    return call(async () => {
      const dir = this.dirOf(taskId);
      await mkdir(dir, { recursive: true });
      const marker = await this.read(dir);
      if (marker === null || marker.expiresAt !== null) await this.write(dir, { ttlMs: marker?.ttlMs ?? DEFAULT_TEMP_TTL_MS, expiresAt: null });
      return dir;
    });
  }

  /** Keep the task's directory this long after the task finishes (instead of an hour). */
  setTtl(taskId: string, ttlMs: number): Promise<void> {
    return call(async () => {
      const dir = this.dirOf(taskId);
      const marker = await this.read(dir);
      if (!marker) throw new TaskqError("setTempExpiration: call tempDir() first", Code.FailedPrecondition);
      await this.write(dir, { ...marker, ttlMs });
    });
  }

  /** The task finished here: its directory, if it has one, now expires after its keep-time. */
  finished(taskId: string): Promise<void> {
    return call(async () => {
      const dir = this.dirOf(taskId);
      const marker = await this.read(dir);
      if (marker) await this.write(dir, { ...marker, expiresAt: this.now() + marker.ttlMs });
    });
  }

  /** Deletes expired directories, except those of `running` tasks; returns the paths deleted. */
  removeExpired(running: ReadonlySet<string> = new Set()): Promise<string[]> {
    return call(() => this.removeExpiredNow(running));
  }

  private async removeExpiredNow(running: ReadonlySet<string>): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const removed: string[] = [];
    for (const name of names) {
      if (running.has(name)) continue;
      const dir = path.join(this.root, name);
      const marker = await this.read(dir);
      if (!marker) continue; // not ours, or not readable as a marker: left alone
      const expiresAt = marker.expiresAt ?? (await stat(path.join(dir, MARKER))).mtimeMs + marker.ttlMs;
      if (expiresAt > this.now()) continue;
      await rm(dir, { recursive: true, force: true });
      removed.push(dir);
    }
    return removed;
  }

  private dirOf(taskId: string): string {
    if (!/^[\w.-]+$/.test(taskId)) throw new TaskqError(`not a task id: ${taskId}`, Code.InvalidArgument);
    return path.join(this.root, taskId);
  }

  /**
   * The directory's marker, or null when it has none that reads as one: not JSON, or without a numeric
   * `ttlMs`, or with an `expiresAt` that is neither a number nor null (a missing one counts as null).
   * Whoever wrote such a file, its expiry cannot be known, so removeExpired() leaves the directory.
   */
  private async read(dir: string): Promise<Marker | null> {
    let marker: unknown;
    try {
      marker = JSON.parse(await readFile(path.join(dir, MARKER), "utf8"));
    } catch {
      return null;
    }
    if (typeof marker !== "object" || marker === null) return null;
    const { ttlMs, expiresAt = null } = marker as Record<string, unknown>;
    if (!isNumber(ttlMs) || !(expiresAt === null || isNumber(expiresAt))) return null;
    return { ttlMs, expiresAt };
  }

  private async write(dir: string, marker: Marker): Promise<void> {
    await writeFile(path.join(dir, MARKER), JSON.stringify(marker));
  }
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
