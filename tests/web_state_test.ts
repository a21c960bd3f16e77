// The web page's pure modules, without a browser: its state never holds a message twice and
// keeps id order; every error code of the contract has its own sentence.

import { assert, assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { ERROR_CODES } from "../lib/core/errors.ts";
import { describeError, formatTime } from "../web/format.js";
import { ChatState } from "../web/state.js";

const message = (id: number, sender = "bob") => ({ id, sender, message: `m${id}`, timestamp: "2026-01-15T10:30:00" });

Deno.test("web state: live, history and catch-up messages are kept once each, in id order", sanitized, () => {
  const state = new ChatState();
  assertEquals(state.add([message(5), message(3)]).map((m) => m.id), [3, 5]);
  // A live message that a catch-up page also brings is not added again.
  assertEquals(state.add([message(6)]).map((m) => m.id), [6]);
  assertEquals(state.add([message(5), message(6), message(7)]).map((m) => m.id), [7]);
  assertEquals(state.add([message(1), message(2)]).map((m) => m.id), [1, 2]);
  assertEquals([state.oldestId, state.newestId, state.messages.size], [1, 7, 6]);
  assertEquals(state.add([{ id: "8", sender: "x", message: "bad", timestamp: "" }]), []);
});

Deno.test("web state: own messages are recognised regardless of case; reset forgets everything", sanitized, () => {
  const state = new ChatState();
  state.me = { id: 1, username: "Alice" };
  assert(state.isOwn(message(1, "alice")));
  assert(!state.isOwn(message(2, "bob")));
  state.add([message(1)]);
  state.addPending("c1", "hello");
  state.reset();
  assertEquals([state.messages.size, state.pending.size, state.newestId], [0, 0, 0]);
});

Deno.test("web format: every error code of the contract has a sentence of its own", sanitized, () => {
  const sentences = new Set<string>();
  for (const code of ERROR_CODES) {
    const sentence = describeError({ type: "error", code, message: "" });
    assert(sentence !== `Error ${code}.`, `${code} falls back to the generic text`);
    sentences.add(sentence);
  }
  assertEquals(sentences.size, ERROR_CODES.length);
  assertEquals(describeError({ code: "rate_limited", retry_after_ms: 1500 }), "Slow down, try again in 1.5 s.");
});

Deno.test("web format: times are local, with the date when not today", sanitized, () => {
  const now = new Date("2026-01-15T12:00:00Z");
  assert(/^\d{2}:\d{2}$/.test(formatTime(new Date(now.getTime() - 60_000).toISOString().slice(0, 19), now)));
  assert(/^2025-\d{2}-\d{2} \d{2}:\d{2}$/.test(formatTime("2025-06-01T10:00:00", now)));
  assertEquals(formatTime("not a time", now), "--:--");
});
