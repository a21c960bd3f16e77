import { assertEquals } from "../tests/support/assert.ts";
import { findRoom, type RoomEvent, RoomFeeds, type RoomInfo, roomLabel, toRoomEvent, toRoomInfo } from "./rooms.ts";

const event = (room: string, id: number): RoomEvent =>
  toRoomEvent({ type: "new_message", room, id, sender: "bob", message: `m${id}`, timestamp: "2026-12-03T10:00:00" })!;

Deno.test("RoomFeeds: each room's events once, in order; held while catching up, then merged", () => {
  const feeds = new RoomFeeds();
  assertEquals(feeds.live(event("r_a", 5)).map((e) => e.id), [5]);
  assertEquals(feeds.live(event("r_a", 5)), [], "a repeat is dropped");
  assertEquals(feeds.live(event("r_b", 1)).map((e) => e.id), [1], "rooms count apart");
  feeds.hold();
  assertEquals(feeds.live(event("r_a", 8)), [], "held while catching up");
  assertEquals(feeds.page([event("r_a", 6), event("r_a", 7), event("r_a", 8)]).map((e) => e.id), [6, 7, 8]);
  assertEquals(feeds.release(), [], "the held event came with the catch-up");
  assertEquals([...feeds.positions], [["r_a", 8], ["r_b", 1]]);
});

Deno.test("toRoomEvent: pushes and history items of rooms; the lobby and malformed frames are not room events", () => {
  const kick = toRoomEvent({
    type: "member_event",
    room: "r_a",
    id: 3,
    user: "bob",
    membership: "kick",
    by: "alice",
    timestamp: "2026-12-03T10:00:00",
  });
  assertEquals(kick?.kind, "kick");
  assertEquals(kick?.by, "alice");
  // A room history's items carry no room: it is the history's.
  assertEquals(
    toRoomEvent({ type: "new_message", id: 1, sender: "a", message: "x", timestamp: "t" }, "r_b")?.room,
    "r_b",
  );
  assertEquals(
    toRoomEvent({ type: "new_message", room: "lobby", id: 1, sender: "a", message: "x", timestamp: "t" }),
    undefined,
  );
  assertEquals(
    toRoomEvent({ type: "member_event", room: "r_a", id: 1, user: "a", membership: "dance", timestamp: "t" }),
    undefined,
  );
  assertEquals(
    toRoomEvent({ type: "new_message", room: "r_a", id: "1", sender: "a", message: "x", timestamp: "t" }),
    undefined,
  );
});

Deno.test("findRoom and roomLabel: by id, by name in any case, with # or @; DMs as @peer", () => {
  const rooms = [
    toRoomInfo({ id: "r_1", kind: "public", name: "Design", role: "member", unread: 2, last_id: 9 }),
    toRoomInfo({ id: "d_1", kind: "dm", name: "bob", role: "member" }),
  ] as RoomInfo[];
  assertEquals(findRoom(rooms, "r_1")?.name, "Design");
  assertEquals(findRoom(rooms, "#design")?.id, "r_1");
  assertEquals(findRoom(rooms, "@BOB")?.id, "d_1");
  assertEquals(findRoom(rooms, "nothing"), undefined);
  assertEquals(roomLabel(rooms[0], "r_1"), "#Design");
  assertEquals(roomLabel(rooms[1], "d_1"), "@bob");
  assertEquals(roomLabel(undefined, "lobby"), "lobby");
  assertEquals(rooms[0].unread, 2);
});
