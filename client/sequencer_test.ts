import { assertEquals } from "../tests/support/assert.ts";
import { Sequencer } from "./sequencer.ts";
import type { ChatMessage } from "./wire.ts";
import { sanitized } from "../tests/support/util.ts";

function m(id: number): ChatMessage {
  return { id, sender: "bob", message: `m${id}`, timestamp: "2026-01-15T10:30:00" };
}

function ids(messages: ChatMessage[]): number[] {
  return messages.map((message) => message.id);
}

Deno.test({
  name: "Sequencer delivers live messages at once when not holding, skipping ones seen",
  ...sanitized,
  fn() {
    const s = new Sequencer();
    s.startAfter(5);
    assertEquals(ids(s.live(m(4))), []);
    assertEquals(ids(s.live(m(6))), [6]);
    assertEquals(ids(s.live(m(6))), []);
    assertEquals(s.lastId, 6);
  },
});

Deno.test({
  name: "Sequencer merges a catch-up with broadcasts that overlap it: each message once, in order",
  ...sanitized,
  fn() {
    const s = new Sequencer();
    s.startAfter(10);
    s.hold();
    // Broadcasts after the login start at 14; history has 11..15 when asked.
    for (const id of [14, 15, 16]) assertEquals(ids(s.live(m(id))), []);
    const page = [m(11), m(12), m(13), m(14), m(15)];
    assertEquals(ids(s.page(page)), [11, 12, 13, 14, 15]);
    assertEquals(s.caughtUp(page), true);
    assertEquals(ids(s.release()), [16]);
    assertEquals(ids(s.live(m(17))), [17]);
  },
});

Deno.test({
  name: "Sequencer keeps paging until history reaches the first buffered broadcast",
  ...sanitized,
  fn() {
    const s = new Sequencer();
    s.startAfter(0);
    s.hold();
    s.live(m(9));
    const first = [m(1), m(2), m(3)];
    assertEquals(ids(s.page(first)), [1, 2, 3]);
    assertEquals(s.caughtUp(first), false);
    const second = [m(5), m(8)];
    s.page(second);
    assertEquals(s.caughtUp(second), false);
    // An empty page: history had nothing between 8 and the buffer.
    assertEquals(s.caughtUp([]), true);
    assertEquals(ids(s.release()), [9]);
  },
});

Deno.test({
  name: "Sequencer drops an overflowing buffer and counts on history for it",
  ...sanitized,
  fn() {
    const s = new Sequencer(3);
    s.startAfter(0);
    s.hold();
    for (const id of [1, 2, 3, 4, 5]) s.live(m(id));
    // 1..3 were dropped, so a page up to 3 is not enough; one reaching 4 is.
    assertEquals(s.caughtUp([m(1), m(2), m(3)]), false);
    s.page([m(1), m(2), m(3), m(4)]);
    assertEquals(s.caughtUp([m(4)]), true);
    assertEquals(ids(s.release()), [5]);
  },
});

Deno.test({
  name: "Sequencer rebase accepts smaller ids after the server's history was replaced",
  ...sanitized,
  fn() {
    const s = new Sequencer();
    s.startAfter(100);
    assertEquals(ids(s.live(m(3))), []);
    s.rebase(2);
    assertEquals(ids(s.live(m(3))), [3]);
  },
});
