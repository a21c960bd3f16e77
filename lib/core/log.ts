// Leveled logging in text or JSON lines. The only module allowed to use console.
// Never log passwords; message texts only at debug.
// deno-lint-ignore-file no-console

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type LogFields = Record<string, unknown>;

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

export class Logger {
  #minRank: number;
  #format: LogFormat;

  constructor(level: LogLevel = "info", format: LogFormat = "text") {
    this.#minRank = LEVEL_RANK[level];
    this.#format = format;
  }

  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= this.#minRank;
  }

  debug(msg: string, fields?: LogFields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVEL_RANK[level] < this.#minRank) return;
    const time = new Date().toISOString();
    const line = this.#format === "json"
      ? JSON.stringify({ time, level, msg, ...normalize(fields) })
      : `${time} ${level.toUpperCase().padEnd(5)} ${msg}${formatText(fields)}`;
    if (level === "error" || level === "warn") console.error(line);
    else console.log(line);
  }
}

function normalize(fields?: LogFields): LogFields {
  if (!fields) return {};
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? describeError(value) : value;
  }
  return out;
}

function describeError(err: Error): string {
  return err.stack ?? `${err.name}: ${err.message}`;
}

function formatText(fields?: LogFields): string {
  if (!fields) return "";
  let out = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (value instanceof Error) out += `\n  ${key}: ${describeError(value)}`;
    else if (typeof value === "string" && /^[^\s"=]+$/.test(value)) out += ` ${key}=${value}`;
    else out += ` ${key}=${JSON.stringify(value)}`;
  }
  return out;
}
