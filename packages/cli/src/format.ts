/** Human-readable output for the CLI: aligned tables and short times. */

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

/** A JSON value on one line. */
export const json = (v: unknown) => JSON.stringify(v ?? null);
