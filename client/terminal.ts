// The interactive terminal, without a full-screen takeover: stdin in raw mode through LineEditor,
// and output that never garbles what is being typed: a printed line first clears the prompt line
// ("\r\x1b[2K"), then the prompt and the typed text are drawn again below it.

import { LineEditor } from "./line_editor.ts";
import { writeStdout } from "./output.ts";
import { onSignals } from "./signals.ts";

export type Input =
  | { kind: "line"; text: string }
  /** Ctrl-D on an empty line, or stdin closed. */
  | { kind: "eof" }
  /** Ctrl-C, or SIGTERM / SIGHUP. */
  | { kind: "interrupt" }
  /** cancelRead() was called. */
  | { kind: "cancelled" };

export interface ReadOptions {
  /** Show nothing typed (passwords). */
  secret?: boolean;
  /** Leave the answered prompt on screen (login questions); chat lines are echoed by their broadcast instead. */
  keep?: boolean;
}

const CLEAR_LINE = "\r\x1b[2K";
const DEFAULT_COLUMNS = 80;
const STOP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGHUP"];

export class Terminal {
  readonly #editor = new LineEditor();
  #prompt = "";
  #keep = false;
  /** The prompt line is on screen (it is redrawn after every printed line). */
  #promptShown = false;
  /** Lines typed ahead of a read. */
  readonly #queue: Input[] = [];
  #waiter: ((input: Input) => void) | undefined;
  #started = false;
  #removeSignals: (() => void) | undefined;

  /** Raw mode on, reading keys. Requires stdin to be a terminal. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    Deno.stdin.setRaw(true);
    const removeStop = onSignals(STOP_SIGNALS, () => this.#push({ kind: "interrupt" }));
    const removeResize = onSignals(["SIGWINCH"], () => this.#redraw());
    this.#removeSignals = () => {
      removeStop();
      removeResize();
    };
    void this.#readKeys();
  }

  /** Clears the prompt and restores the terminal; safe to call more than once. */
  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    if (this.#promptShown) writeStdout(CLEAR_LINE);
    this.#promptShown = false;
    this.#removeSignals?.();
    try {
      Deno.stdin.setRaw(false);
    } catch {
      // stdin is gone: nothing to restore.
    }
  }

  /** Shows `prompt` and resolves with the next line (or eof / interrupt / cancelled). */
  read(prompt: string, options: ReadOptions = {}): Promise<Input> {
    this.#prompt = prompt;
    this.#keep = options.keep ?? false;
    this.#editor.secret = options.secret ?? false;
    this.#promptShown = true;
    this.#redraw();
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => this.#waiter = resolve);
  }

  /** Ends a pending read() with "cancelled". */
  cancelRead(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ kind: "cancelled" });
  }

  /** Prints `text` (may span lines) above the prompt, then redraws the prompt and what is typed. */
  print(text: string): void {
    const lines = text.replaceAll("\r\n", "\n").split("\n").join("\r\n");
    writeStdout(CLEAR_LINE + lines + "\r\n" + this.#promptText());
  }

  #promptText(): string {
    if (!this.#promptShown) return "";
    const { line, cursorColumn } = this.#editor.render(this.#prompt, columns());
    // Back to column 0, then right to the cursor.
    return line + "\r" + (cursorColumn > 0 ? `\x1b[${cursorColumn}C` : "");
  }

  #redraw(): void {
    if (this.#promptShown) writeStdout(CLEAR_LINE + this.#promptText());
  }

  async #readKeys(): Promise<void> {
    const buffer = new Uint8Array(4096);
    const decoder = new TextDecoder();
    while (this.#started) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#push({ kind: "eof" });
        return;
      }
      const prompt = this.#prompt;
      for (const action of this.#editor.feed(decoder.decode(buffer.subarray(0, n), { stream: true }))) {
        if (action.kind !== "submit") {
          this.#push(action);
          continue;
        }
        if (this.#keep) {
          // The answered question stays on screen; the next read() draws the next prompt.
          writeStdout(CLEAR_LINE + prompt + (this.#editor.secret ? "" : action.text) + "\r\n");
          this.#promptShown = false;
        }
        this.#push({ kind: "line", text: action.text });
      }
      this.#redraw();
    }
  }

  #push(input: Input): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter(input);
    else this.#queue.push(input);
  }
}

function columns(): number {
  try {
    return Deno.consoleSize().columns || DEFAULT_COLUMNS;
  } catch {
    return DEFAULT_COLUMNS;
  }
}
