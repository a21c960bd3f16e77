import { assert, assertEquals } from "../tests/support/assert.ts";
import { Outbox, sendFrame } from "./outbox.ts";
import { sanitized } from "../tests/support/util.ts";

/** The protocol's rule for client_msg_id. */
const CLIENT_MSG_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

Deno.test("Outbox gives each message its own client_msg_id, valid for the protocol", sanitized, () => {
  const outbox = new Outbox();
  const a = outbox.add("hello");
  const b = outbox.add("hello");
  assert(CLIENT_MSG_ID.test(a.clientMsgId), a.clientMsgId);
  assert(a.clientMsgId !== b.clientMsgId, "the same text typed twice is two messages");
});

Deno.test("Outbox keeps unacknowledged messages in the order typed until settled", sanitized, () => {
  const outbox = new Outbox();
  const a = outbox.add("one");
  const b = outbox.add("two");
  const c = outbox.add("three");
  assertEquals(outbox.pending.map((m) => m.text), ["one", "two", "three"]);
  outbox.settle(b);
  assertEquals(outbox.pending, [a, c]);
  outbox.settle(b);
  assertEquals(outbox.pending, [a, c], "settling twice changes nothing");
  assert(outbox.has(a) && !outbox.has(b));
});

Deno.test("Outbox resends a message with the same frame, client_msg_id included", sanitized, () => {
  const outbox = new Outbox();
  const message = outbox.add("hi there", "id-1");
  assertEquals(sendFrame(message), { type: "send_message", message: "hi there", client_msg_id: "id-1" });
  assertEquals(sendFrame(message), sendFrame(outbox.pending[0]));
});

Deno.test("Outbox takes a new_message carrying a pending client_msg_id as its acknowledgement", sanitized, () => {
  const outbox = new Outbox();
  const message = outbox.add("hi", "id-1");
  const own = { type: "new_message", id: 7, sender: "a", message: "hi", timestamp: "t", client_msg_id: "id-1" };
  assertEquals(outbox.acknowledged(own), message);
  assertEquals(outbox.acknowledged({ ...own, duplicate: true }), message, "a duplicate reply names the original");
  assertEquals(outbox.acknowledged({ ...own, client_msg_id: "other" }), undefined);
  assertEquals(outbox.acknowledged({ ...own, client_msg_id: undefined }), undefined, "another client's copy");
  assertEquals(outbox.acknowledged({ ...own, type: "error" }), undefined);
  outbox.settle(message);
  assertEquals(outbox.acknowledged(own), undefined, "once settled, a late copy acknowledges nothing");
});
