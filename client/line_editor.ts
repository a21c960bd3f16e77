// The interactive line editor's state: keystrokes in (as decoded text, escape sequences split
// across reads included), the line and cursor out. Pure: terminal.ts does the I/O.

export type EditorAction =
  | { kind: "submit"; text: string }
  /** Ctrl-D on an empty line. */
  | { kind: "eof" }
  /** Ctrl-C. */
  | { kind: "interrupt" };

/** Kept input lines for ↑/↓. */
const MAX_HISTORY = 100;
/** An escape sequence longer than this is garbage: dropped rather than buffered. */
const MAX_ESCAPE = 16;

export class LineEditor {
  /** Code points, so the cursor never splits a character. */
  #chars: string[] = [];
  #cursor = 0;
  /** The start of an escape sequence whose end has not arrived yet. */
  #pending = "";
  /** The last character was "\r": a following "\n" belongs to the same line end. */
  #afterCarriageReturn = false;
  readonly #history: string[] = [];
  /** Position while browsing the history with ↑/↓; history.length = the line being written. */
  #historyIndex = 0;
  #draft: string[] = [];
  /** Nothing typed is shown (passwords), and submitted lines are not kept. */
  secret = false;

  get text(): string {
    return this.#chars.join("");
  }

  get cursor(): number {
    return this.#cursor;
  }

  feed(input: string): EditorAction[] {
    const actions: EditorAction[] = [];
    const chars = [...(this.#pending + input)];
    this.#pending = "";
    for (let i = 0; i < chars.length; i++) {
      const c = chars[i];
      if (c === "\n" && this.#afterCarriageReturn) {
        this.#afterCarriageReturn = false;
        continue;
      }
      this.#afterCarriageReturn = c === "\r";
      if (c === "\x1b") {
        const end = escapeEnd(chars, i);
        if (end === undefined) {
          const rest = chars.slice(i).join("");
          if (rest.length <= MAX_ESCAPE) this.#pending = rest;
          break;
        }
        this.#escape(chars.slice(i, end + 1).join(""));
        i = end;
        continue;
      }
      const action = this.#key(c);
      if (action) actions.push(action);
    }
    return actions;
  }

  /** The prompt and the part of the line that fits in `columns`, and the cursor's column. */
  render(prompt: string, columns: number): { line: string; cursorColumn: number } {
    const promptWidth = [...prompt].length;
    if (this.secret) return { line: prompt, cursorColumn: promptWidth };
    // Scroll sideways rather than wrap: a wrapped line could not be cleared with one "\x1b[2K".
    const room = Math.max(1, columns - promptWidth - 1);
    const start = Math.max(0, this.#cursor - room);
    const visible = this.#chars.slice(start, start + room).join("");
    return { line: prompt + visible, cursorColumn: promptWidth + this.#cursor - start };
  }

  #key(c: string): EditorAction | undefined {
    switch (c) {
      case "\r":
      case "\n":
        return this.#submit();
      case "\x03":
        return { kind: "interrupt" };
      case "\x04":
        if (this.#chars.length === 0) return { kind: "eof" };
        this.#deleteForward();
        return undefined;
      case "\x7f":
      case "\x08":
        if (this.#cursor > 0) this.#chars.splice(--this.#cursor, 1);
        return undefined;
      case "\x01":
        this.#cursor = 0;
        return undefined;
      case "\x05":
        this.#cursor = this.#chars.length;
        return undefined;
      case "\x02":
        this.#cursor = Math.max(0, this.#cursor - 1);
        return undefined;
      case "\x06":
        this.#cursor = Math.min(this.#chars.length, this.#cursor + 1);
        return undefined;
      case "\x15":
        this.#chars.splice(0, this.#cursor);
        this.#cursor = 0;
        return undefined;
      case "\x0b":
        this.#chars.length = this.#cursor;
        return undefined;
      case "\x17":
        this.#deleteWordBack();
        return undefined;
      case "\x10":
        this.#browse(-1);
        return undefined;
      case "\x0e":
        this.#browse(1);
        return undefined;
      case "\t":
        this.#insert(" ");
        return undefined;
    }
    // Other control characters would garble the line when echoed.
    const code = c.codePointAt(0) ?? 0;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return undefined;
    this.#insert(c);
    return undefined;
  }

  #escape(sequence: string): void {
    switch (sequence) {
      case "\x1b[A":
      case "\x1bOA":
        return this.#browse(-1);
      case "\x1b[B":
      case "\x1bOB":
        return this.#browse(1);
      case "\x1b[C":
      case "\x1bOC":
        this.#cursor = Math.min(this.#chars.length, this.#cursor + 1);
        return;
      case "\x1b[D":
      case "\x1bOD":
        this.#cursor = Math.max(0, this.#cursor - 1);
        return;
      case "\x1b[H":
      case "\x1bOH":
      case "\x1b[1~":
      case "\x1b[7~":
        this.#cursor = 0;
        return;
      case "\x1b[F":
      case "\x1bOF":
      case "\x1b[4~":
      case "\x1b[8~":
        this.#cursor = this.#chars.length;
        return;
      case "\x1b[3~":
        return this.#deleteForward();
    }
    // Anything else (function keys, Alt-combinations, mouse reports) is ignored.
  }

  #insert(c: string): void {
    this.#chars.splice(this.#cursor++, 0, c);
  }

  #deleteForward(): void {
    if (this.#cursor < this.#chars.length) this.#chars.splice(this.#cursor, 1);
  }

  #deleteWordBack(): void {
    let start = this.#cursor;
    while (start > 0 && this.#chars[start - 1] === " ") start--;
    while (start > 0 && this.#chars[start - 1] !== " ") start--;
    this.#chars.splice(start, this.#cursor - start);
    this.#cursor = start;
  }

  #browse(step: -1 | 1): void {
    if (this.secret) return;
    const next = this.#historyIndex + step;
    if (next < 0 || next > this.#history.length) return;
    if (this.#historyIndex === this.#history.length) this.#draft = this.#chars;
    this.#historyIndex = next;
    this.#chars = next === this.#history.length ? this.#draft : [...this.#history[next]];
    this.#cursor = this.#chars.length;
  }

  #submit(): EditorAction {
    const text = this.text;
    if (!this.secret && text.trim() !== "" && this.#history.at(-1) !== text) {
      this.#history.push(text);
      if (this.#history.length > MAX_HISTORY) this.#history.shift();
    }
    this.#historyIndex = this.#history.length;
    this.#chars = [];
    this.#draft = [];
    this.#cursor = 0;
    return { kind: "submit", text };
  }
}

/**
 * The index of the last character of the escape sequence starting at `start`, or undefined if it
 * is not complete yet. CSI ("ESC [" parameters, then a final byte in @–~), SS3 ("ESC O" and one
 * character), or ESC and one other character (Alt-key).
 */
function escapeEnd(chars: string[], start: number): number | undefined {
  const kind = chars[start + 1];
  if (kind === undefined) return undefined;
  if (kind === "O") return chars[start + 2] === undefined ? undefined : start + 2;
  if (kind !== "[") return start + 1;
  for (let i = start + 2; i < chars.length; i++) {
    const code = chars[i].charCodeAt(0);
    if (code >= 0x40 && code <= 0x7e) return i;
    if (i - start > MAX_ESCAPE) return i; // garbage: end it here
  }
  return undefined;
}
