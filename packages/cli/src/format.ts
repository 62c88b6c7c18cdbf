/** Human-readable output for the CLI: aligned tables, short times and lengths of time. */

/** Renders rows under upper-case headers, each column as wide as its widest cell. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** A time as "2026-03-01 12:00:05" (UTC), or "-" for none. */
export const time = (d: Date | null | undefined) => (d ? d.toISOString().replace("T", " ").slice(0, 19) : "-");

/** A priority with its band, as the Active tasks list shows it: "12 (High)". */
export const priority = (n: number) => `${n} (${n >= 10 ? "High" : n >= 5 ? "Medium" : "Low"})`;

export const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** A snake_case name as words: "timed_out" → "Timed out". */
export const words = (s: string) => capitalize(s.replace(/_/g, " "));

/** A length of time: "850ms", "12.3s", "4m05s", "2h03m". */
export function duration(ms: number): string {
  if (Math.round(ms) < 1_000) return `${Math.round(ms)}ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  const two = (n: number) => String(n).padStart(2, "0");
  return s < 3_600 ? `${Math.floor(s / 60)}m${two(s % 60)}s` : `${Math.floor(s / 3_600)}h${two(Math.floor(s / 60) % 60)}m`;
}

/** How long before now a time was, in whole seconds ("0s ago" for one ahead of this machine's clock), or "-" for none. */
export const ago = (d: Date | null) => (d ? `${Math.max(0, Math.floor((Date.now() - d.getTime()) / 1_000))}s ago` : "-");

/** A JSON value on one line. */
export const json = (v: unknown) => JSON.stringify(v ?? null);
