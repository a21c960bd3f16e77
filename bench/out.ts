// Everything the bench prints: results on stdout, progress on stderr. The only bench module that
// uses console or writes to the terminal directly.
// deno-lint-ignore-file no-console

const encoder = new TextEncoder();
const stderrIsTty = Deno.stderr.isTerminal();
let lastProgressMs = 0;
let progressShown = false;

/** One line of results on stdout, also kept for the saved report. */
export function print(text = ""): void {
  clearProgress();
  console.log(text);
  transcript.push(text);
}

/** Everything printed with `print`, in order, for bench/results/. */
export const transcript: string[] = [];

/** A short, overwritten status line on stderr (at most 4 a second when stderr is not a terminal). */
export function progress(text: string): void {
  const now = performance.now();
  if (stderrIsTty) {
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${text}`));
    progressShown = true;
  } else if (now - lastProgressMs >= 1000) {
    console.error(text);
    lastProgressMs = now;
  }
}

/** A note on stderr that stays (warnings, steps). */
export function note(text: string): void {
  clearProgress();
  console.error(text);
}

function clearProgress(): void {
  if (progressShown) {
    Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    progressShown = false;
  }
}

/** Renders rows as an aligned text table; the first row is the header. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  const line = (row: string[]) =>
    row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join("\n");
}

/** A number with a sensible number of digits for a table. */
export function fmt(value: number | undefined | null, digits?: number): string {
  if (value === undefined || value === null || Number.isNaN(value)) return "-";
  if (!Number.isFinite(value)) return String(value);
  if (digits !== undefined) return value.toFixed(digits);
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}
