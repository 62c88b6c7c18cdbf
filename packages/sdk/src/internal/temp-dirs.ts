/**
 * Per-task temp directories under a worker's storage root: `<root>/<task id>/`. Each holds a marker
 * file with how long to keep the directory after its task finishes and, once it has finished, when it
 * expires. A directory whose task never finished here (the worker crashed) expires its keep-time after
 * the marker was last written. Expired directories are deleted by removeExpired(), which the Worker
 * calls at start, hourly, and when the server's hourly taskq.temp-cleanup task reaches it.
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

  /** The task's directory, created (with its marker) on first use. File system errors come as TaskqError, as all below. */
  create(taskId: string): Promise<string> {
    return call(async () => {
      const dir = this.dirOf(taskId);
      await mkdir(dir, { recursive: true });
      if ((await this.read(dir)) === null) await this.write(dir, { ttlMs: DEFAULT_TEMP_TTL_MS, expiresAt: null });
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
      if (!marker) continue; // not ours
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

  private async read(dir: string): Promise<Marker | null> {
    try {
      return JSON.parse(await readFile(path.join(dir, MARKER), "utf8")) as Marker;
    } catch {
      return null;
    }
  }

  private async write(dir: string, marker: Marker): Promise<void> {
    await writeFile(path.join(dir, MARKER), JSON.stringify(marker));
  }
}
