// The web page's pure modules, without a browser: its state never holds a message twice and
// keeps id order; every error code of the contract has its own sentence.

import { assert, assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { ERROR_CODES } from "../lib/core/errors.ts";
import { Conversation } from "../web/conversation.js";
import { describeError, describeMembership, describeTyping, formatTime, formatUnread } from "../web/format.js";
import { Outbox } from "../web/outbox.js";
import { ChatState, roomTitle } from "../web/state.js";
import { START_EVERY_MS, TypingNotices, TypingSender } from "../web/typing.js";
import { sleep } from "./support/util.ts";

const message = (id: number, sender = "bob") => ({ id, sender, message: `m${id}`, timestamp: "2026-01-15T10:30:00" });

Deno.test("web conversation: live, history and catch-up events are kept once each, in id order", sanitized, () => {
  const conversation = new Conversation("lobby");
  assertEquals(conversation.add([message(5), message(3)]).map((m) => m.id), [3, 5]);
  // A live message that a catch-up page also brings is not added again.
  assertEquals(conversation.add([message(6)]).map((m) => m.id), [6]);
  assertEquals(conversation.add([message(5), message(6), message(7)]).map((m) => m.id), [7]);
  assertEquals(conversation.add([message(1), message(2)]).map((m) => m.id), [1, 2]);
  assertEquals([conversation.oldestId, conversation.newestId, conversation.events.size], [1, 7, 6]);
  assertEquals(conversation.add([{ id: "8", sender: "x", message: "bad", timestamp: "" }]), []);
  // A room's history mixes membership events with messages; a read marker goes to a message.
  const room = new Conversation("r_aaaaaaaaaaaaaaaaaaaa");
  const added = room.add([
    { type: "member_event", id: 1, user: "alice", membership: "join", by: "alice", timestamp: "2026-01-15T10:30:00" },
    { type: "new_message", ...message(2) },
    { type: "member_event", id: 3, user: "bob", membership: "invite", by: "alice", timestamp: "2026-01-15T10:31:00" },
  ]);
  assertEquals(added.map((e) => e.kind), ["member", "message", "member"]);
  assertEquals([room.newestId, room.newestMessageId], [3, 2]);
});

Deno.test("web state: own messages are recognised regardless of case; reset forgets everything", sanitized, () => {
  const state = new ChatState();
  state.me = { id: 1, username: "Alice" };
  assert(state.isOwn(message(1, "alice")));
  assert(!state.isOwn(message(2, "bob")));
  state.conversation("lobby").add([message(1)]);
  state.conversation("lobby").addPending("c1", "hello");
  state.setRooms([room("lobby", "lobby"), room(ROOM_A, "public")]);
  state.current = ROOM_A;
  state.reset();
  assertEquals([state.conversations.size, state.allPending().length, state.rooms.size, state.current], [
    0,
    0,
    0,
    "lobby",
  ]);
  assertEquals(state.me, null);
});

const ROOM_A = "r_aaaaaaaaaaaaaaaaaaaa";
const ROOM_B = "r_bbbbbbbbbbbbbbbbbbbb";
const DM = "d_cccccccccccccccccccc";

function room(id: string, kind: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    kind,
    name: id === "lobby" ? "lobby" : `name ${id}`,
    role: "member",
    members: 2,
    last_id: 0,
    read_id: 0,
    unread: 0,
    history: "shared",
    ...extra,
  };
}

Deno.test("web state: the room list is merged: new facts taken, rooms gone forgotten, live ids kept", sanitized, () => {
  const state = new ChatState();
  state.setRooms([room("lobby", "lobby"), room(ROOM_A, "public", { last_id: 4 }), room(ROOM_B, "private")]);
  state.conversation(ROOM_B).add([message(1)]);
  state.current = ROOM_B;
  // A live message moved ROOM_A on to 6 while an older list was on its way.
  state.noteLive(ROOM_A, { type: "new_message", ...message(6) }, false);
  const gone = state.setRooms([
    room("lobby", "lobby"),
    room(ROOM_A, "public", { last_id: 5, unread: 1 }),
    room(DM, "dm", { peer: "bob", name: "bob" }),
    room("r_iiiiiiiiiiiiiiiiiiii", "private", { role: "invited", name: "secret" }),
  ]);
  assertEquals(gone, [ROOM_B]);
  assertEquals([state.conversations.has(ROOM_B), state.current], [false, "lobby"]);
  assertEquals(state.rooms.get(ROOM_A)!.last_id, 6);
  const { rooms, dms, invitations } = state.sidebar();
  assertEquals(rooms.map((r) => r.id), ["lobby", ROOM_A]);
  assertEquals(dms.map((r) => roomTitle(r)), ["bob"]);
  assertEquals(invitations.map((r) => r.name), ["secret"]);
});

Deno.test(
  "web state: unread counts others' live messages not seen; own sends and read markers clear them",
  sanitized,
  () => {
    const state = new ChatState();
    state.me = { id: 1, username: "alice" };
    state.setRooms([room("lobby", "lobby"), room(ROOM_A, "public", { last_id: 2, read_id: 2 })]);
    const live = (id: number, sender: string) => ({ type: "new_message", room: ROOM_A, ...message(id, sender) });
    state.noteLive(ROOM_A, live(3, "bob"), false);
    state.noteLive(ROOM_A, live(4, "bob"), false);
    // The same message again (a catch-up, say) is not counted twice; one seen is not counted.
    state.noteLive(ROOM_A, live(4, "bob"), false);
    state.noteLive(ROOM_A, live(5, "bob"), true);
    assertEquals(state.rooms.get(ROOM_A)!.unread, 2);
    // Membership events are not messages.
    state.noteLive(ROOM_A, { type: "member_event", id: 6, room: ROOM_A, user: "carol", membership: "join" }, false);
    assertEquals([state.rooms.get(ROOM_A)!.unread, state.rooms.get(ROOM_A)!.last_id], [2, 6]);
    // The marker moves forward only, with the server's count.
    state.applyRead(ROOM_A, 4, 1);
    state.applyRead(ROOM_A, 3, 2);
    assertEquals([state.rooms.get(ROOM_A)!.read_id, state.rooms.get(ROOM_A)!.unread], [4, 1]);
    // Sending moves the marker to the own message.
    state.noteLive(ROOM_A, live(7, "Alice"), false);
    assertEquals([state.rooms.get(ROOM_A)!.read_id, state.rooms.get(ROOM_A)!.unread], [7, 0]);
    // Counting stops where the server's does.
    state.rooms.get(ROOM_A)!.unread = 1000;
    state.noteLive(ROOM_A, live(8, "bob"), false);
    assertEquals(state.rooms.get(ROOM_A)!.unread, 1000);
    // A marker behind the newest message the page holds needs moving.
    state.conversation(ROOM_A).add([live(8, "bob")]);
    assert(state.needsMarking(ROOM_A));
    state.applyRead(ROOM_A, 8, 0);
    assert(!state.needsMarking(ROOM_A));
  },
);

Deno.test("web state: messages of a DM that arrive before its room object count once it arrives", sanitized, () => {
  const state = new ChatState();
  state.me = { id: 1, username: "alice" };
  state.setRooms([room("lobby", "lobby")]);
  const live = (id: number) => ({ type: "new_message", room: DM, ...message(id, "bob") });
  // bob opened the DM (joins 1 and 2) and wrote twice; the room list was read after message 3.
  state.noteLive(DM, { type: "member_event", id: 1, room: DM, user: "bob", membership: "join" }, false);
  state.noteLive(DM, live(3), false);
  state.noteLive(DM, live(4), false);
  state.setRooms([room("lobby", "lobby"), room(DM, "dm", { peer: "bob", last_id: 3, unread: 1 })]);
  assertEquals([state.rooms.get(DM)!.unread, state.rooms.get(DM)!.last_id], [2, 4]);
  // Counted once: another list does not replay them.
  state.setRooms([room("lobby", "lobby"), room(DM, "dm", { peer: "bob", last_id: 3, unread: 1 })]);
  assertEquals(state.rooms.get(DM)!.last_id, 4);
});

Deno.test(
  "web state: each conversation has its own outbox; every pending send is found for a resend",
  sanitized,
  () => {
    const state = new ChatState();
    state.setRooms([room("lobby", "lobby"), room(ROOM_A, "public")]);
    const a = state.conversation("lobby").addPending("c1", "to the lobby");
    const b = state.conversation(ROOM_A).addPending("c2", "to the room");
    assertEquals([a.room, b.room], ["lobby", ROOM_A]);
    assertEquals(state.allPending().map((e) => e.clientMsgId).sort(), ["c1", "c2"]);
    assertEquals([...state.conversation(ROOM_A).pending.keys()], ["c2"]);
    // Leaving a room forgets its sends with it.
    state.removeRoom(ROOM_A);
    assertEquals(state.allPending().map((e) => e.clientMsgId), ["c1"]);
  },
);

Deno.test(
  "web typing: a start at most every few seconds while typing, a stop once, nothing after clear",
  sanitized,
  () => {
    let now = 0;
    const sent: string[] = [];
    const sender = new TypingSender((room: string, state: string) => sent.push(`${room} ${state}`), () => now);
    sender.input("r1", "h");
    now = 1000;
    sender.input("r1", "he");
    now = START_EVERY_MS + 1;
    sender.input("r1", "hel");
    sender.input("r2", "x");
    sender.input("r2", "");
    sender.stop();
    assertEquals(sent, ["r1 start", "r1 start", "r1 stop", "r2 start", "r2 stop"]);
    sender.input("r1", "again");
    sender.clear();
    sender.stop();
    assertEquals(sent.at(-1), "r1 start");
  },
);

Deno.test(
  "web typing: notices start and stop per user, and clear() leaves no lapse timer behind",
  sanitized,
  async () => {
    const changed: string[] = [];
    const notices = new TypingNotices((room: string) => changed.push(room));
    notices.apply({ room: "r1", user: "bob", state: "start" });
    notices.apply({ room: "r1", user: "alice", state: "start" });
    assertEquals(notices.who("r1"), ["alice", "bob"]);
    notices.apply({ room: "r1", user: "bob", state: "stop" });
    assertEquals(notices.who("r1"), ["alice"]);
    assertEquals(describeTyping(notices.who("r1")), "alice is typing…");
    notices.clear();
    assertEquals(notices.who("r1"), []);
    await Promise.resolve();
  },
);

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

Deno.test("web format: membership events, typing and unread badges read as sentences", sanitized, () => {
  const event = (membership: string, user: string, by: string) => ({ membership, user, by });
  assertEquals(describeMembership(event("join", "bob", "bob")), "bob joined");
  assertEquals(describeMembership(event("leave", "bob", "bob")), "bob left");
  assertEquals(describeMembership(event("invite", "bob", "alice")), "alice invited bob");
  assertEquals(describeMembership(event("kick", "bob", "alice")), "alice removed bob");
  assertEquals(describeTyping([]), "");
  assertEquals(describeTyping(["a", "b"]), "a and b are typing…");
  assertEquals(describeTyping(["a", "b", "c", "d"]), "4 people are typing…");
  assertEquals([formatUnread(3), formatUnread(1000)], ["3", "999+"]);
});

/** A connection that records requests and answers each with the next reply the test gives. */
class FakeConnection {
  isOpen = false;
  sent: Record<string, unknown>[] = [];
  #answers: ((reply: Record<string, unknown>) => void)[] = [];

  request(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.sent.push(frame);
    return new Promise((resolve) => this.#answers.push(resolve));
  }

  /** Answers the oldest request still waiting; then lets the outbox run. */
  async answer(reply: Record<string, unknown>): Promise<void> {
    this.#answers.shift()!(reply);
    await sleep(0);
  }
}

Deno.test(
  "web outbox: a send waits for the connection, is resent with its id, and leaves when acknowledged",
  sanitized,
  async () => {
    const state = new ChatState();
    const connection = new FakeConnection();
    const outbox = new Outbox(connection, state);
    const sent: string[] = [];
    outbox.onSent = (entry: { text: string }) => sent.push(entry.text);
    const entry = outbox.send(ROOM_A, "hello room");
    assertEquals(connection.sent.length, 0);
    connection.isOpen = true;
    outbox.resendAll();
    assertEquals(connection.sent, [
      { type: "send_message", message: "hello room", client_msg_id: entry.clientMsgId, room: ROOM_A },
    ]);
    await connection.answer({ type: "new_message", room: ROOM_A, id: 1, client_msg_id: entry.clientMsgId });
    assertEquals([sent, state.allPending()], [["hello room"], []]);
    // A lobby send is v1's: no room field.
    outbox.send("lobby", "hello lobby");
    assertEquals(connection.sent[1].room, undefined);
    await connection.answer({ type: "error", code: "invalid_message", message: "too long" });
    assertEquals(state.allPending().map((e) => [e.status, e.error]), [[
      "failed",
      "The server refused the message: too long.",
    ]]);
  },
);

Deno.test(
  "web outbox: logout cancels the retry timer and drops late replies: nothing is resent as another user",
  sanitized,
  async () => {
    const state = new ChatState();
    const connection = new FakeConnection();
    connection.isOpen = true;
    const outbox = new Outbox(connection, state);
    const problems: string[] = [];
    outbox.onProblem = (text: string) => problems.push(text);
    outbox.onSent = () => problems.push("sent");
    outbox.send(ROOM_A, "first");
    // The database is away: a retry is scheduled...
    await connection.answer({ type: "error", code: "unavailable" });
    assertEquals(problems.length, 1);
    const late = outbox.send(ROOM_A, "second");
    // ...and the user logs out: the timer goes (the sanitizer would see it), the sends are forgotten.
    outbox.clear();
    state.reset();
    await connection.answer({ type: "new_message", room: ROOM_A, id: 2, client_msg_id: late.clientMsgId });
    outbox.resendAll();
    assertEquals([connection.sent.length, problems.length], [2, 1]);
  },
);
