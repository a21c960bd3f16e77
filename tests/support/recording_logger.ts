// A Logger for tests that assert what was logged: it keeps the lines of the levels it is asked to
// record (whatever their level's rank) instead of printing them; other lines go to the usual
// output, errors only.

import { type LogFields, Logger, type LogLevel } from "../../lib/core/log.ts";

export interface LoggedLine {
  level: LogLevel;
  msg: string;
  fields: LogFields;
}

export class RecordingLogger extends Logger {
  readonly lines: LoggedLine[] = [];
  readonly #recorded: ReadonlySet<LogLevel>;

  constructor(recorded: LogLevel[]) {
    super("error");
    this.#recorded = new Set(recorded);
  }

  override debug(msg: string, fields?: LogFields): void {
    if (!this.#record("debug", msg, fields)) super.debug(msg, fields);
  }
  override info(msg: string, fields?: LogFields): void {
    if (!this.#record("info", msg, fields)) super.info(msg, fields);
  }
  override warn(msg: string, fields?: LogFields): void {
    if (!this.#record("warn", msg, fields)) super.warn(msg, fields);
  }
  override error(msg: string, fields?: LogFields): void {
    if (!this.#record("error", msg, fields)) super.error(msg, fields);
  }

  #record(level: LogLevel, msg: string, fields: LogFields = {}): boolean {
    if (!this.#recorded.has(level)) return false;
    this.lines.push({ level, msg, fields });
    return true;
  }
}
