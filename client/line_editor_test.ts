import { assertEquals } from "../tests/support/assert.ts";
import { LineEditor } from "./line_editor.ts";
import { sanitized } from "../tests/support/util.ts";

Deno.test({
  name: "LineEditor submits typed text on Enter, with \\r\\n counted as one line end",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    assertEquals(editor.feed("hello"), []);
    assertEquals(editor.text, "hello");
    assertEquals(editor.feed("\r\nnext\n"), [{ kind: "submit", text: "hello" }, { kind: "submit", text: "next" }]);
    assertEquals(editor.text, "");
  },
});

Deno.test({
  name: "LineEditor edits at the cursor: arrows, Home/End, Backspace, Delete",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("abc\x1b[D\x1b[DX"); // left, left, X
    assertEquals([editor.text, editor.cursor], ["aXbc", 2]);
    editor.feed("\x7f\x01Y"); // Backspace, Ctrl-A, Y
    assertEquals([editor.text, editor.cursor], ["Yabc", 1]);
    editor.feed("\x1b[3~\x1b[F!"); // Delete, End, !
    assertEquals(editor.text, "Ybc!");
  },
});

Deno.test({
  name: "LineEditor kill keys: Ctrl-U, Ctrl-K and Ctrl-W",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("one two  three\x17");
    assertEquals(editor.text, "one two  ");
    editor.feed("\x01\x06\x06\x06\x0b"); // Home, right ×3, kill to end
    assertEquals(editor.text, "one");
    editor.feed("\x15");
    assertEquals(editor.text, "");
  },
});

Deno.test({
  name: "LineEditor keeps an escape sequence split across reads, and ignores unknown ones",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("ab\x1b");
    editor.feed("[");
    editor.feed("D");
    editor.feed("X\x1b[15~\x1b[1;5C");
    assertEquals(editor.text, "aXb");
  },
});

Deno.test({
  name: "LineEditor keeps multi-code-unit characters whole",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("a🎉b\x1b[D\x7f");
    assertEquals([editor.text, editor.cursor], ["ab", 1]);
  },
});

Deno.test({
  name: "LineEditor turns Ctrl-C into interrupt and Ctrl-D on an empty line into eof",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    assertEquals(editor.feed("\x04"), [{ kind: "eof" }]);
    editor.feed("x\x01");
    assertEquals(editor.feed("\x04"), []); // deletes the x instead
    assertEquals(editor.text, "");
    assertEquals(editor.feed("\x03"), [{ kind: "interrupt" }]);
  },
});

Deno.test({
  name: "LineEditor recalls earlier lines with up and down, and keeps the draft",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("first\rsecond\rdraft");
    editor.feed("\x1b[A");
    assertEquals(editor.text, "second");
    editor.feed("\x1b[A\x1b[A");
    assertEquals(editor.text, "first");
    editor.feed("\x1b[B\x1b[B");
    assertEquals(editor.text, "draft");
  },
});

Deno.test({
  name: "LineEditor drops control characters and shows nothing of a secret",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.secret = true;
    editor.feed("pa\x00ss\x9bword");
    assertEquals(editor.text, "password");
    assertEquals(editor.render("password: ", 80), { line: "password: ", cursorColumn: 10 });
    assertEquals(editor.feed("\r"), [{ kind: "submit", text: "password" }]);
    editor.feed("\x1b[A");
    assertEquals(editor.text, "", "a secret is not kept for recall");
  },
});

Deno.test({
  name: "LineEditor renders a long line scrolled so the cursor stays visible",
  ...sanitized,
  fn() {
    const editor = new LineEditor();
    editor.feed("abcdefghijklmnopqrstuvwxyz");
    // 12 columns: a 2-column prompt, 9 for text, 1 left free for the cursor.
    assertEquals(editor.render("> ", 12), { line: "> rstuvwxyz", cursorColumn: 11 });
    editor.feed("\x01");
    assertEquals(editor.render("> ", 12), { line: "> abcdefghi", cursorColumn: 2 });
  },
});
