// Rooms and direct messages on one server (contract v2, "opting in: hello" to "errors (v2)"):
// every request and push, every error code, who may see what, unread counts and read markers,
// typing, the limits, and v1 connections untouched while rooms are busy. On both backends.
// (Across servers: rooms_cluster_test.ts. Search: search_test.ts.)

import { assert, assertEquals, fail } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient, uniqueName } from "./support/helpers.ts";
import { sleep, waitUntil } from "./support/util.ts";

/** A logged-in client whose frames are read in the background: replies by request_id, pushes in order. */
class Peer implements AsyncDisposable {
  readonly client: TestClient;
  readonly name: string;
  /** Every frame without a request_id, in arrival order. */
  readonly pushes: Frame[] = [];
  readonly #replies = new Map<string, Frame>();
  /** The request_ids of the replies, in arrival order. */
  readonly replyOrder: string[] = [];
  #next = 0;
  #closing = false;
  readonly #pump: Promise<void>;

  private constructor(client: TestClient, name: string) {
    this.client = client;
    this.name = name;
    this.#pump = this.#run();
  }

  /** Registers (unless `name` is given), logs in and, for `protocol` 2, says hello. */
  static async open(
    server: { connect(): Promise<TestClient> },
    protocol: 1 | 2 = 2,
    name?: string,
  ): Promise<Peer> {
    const client = await server.connect();
    const username = name ?? uniqueName("rt");
    if (name === undefined) await client.registerAndLogin(username);
    else assertEquals((await client.request({ type: "login", username, password: "secret123" })).status, "success");
    if (protocol === 2) assertEquals((await client.request({ type: "hello", protocol: 2 })).type, "hello_response");
    return new Peer(client, username);
  }

  async #run(): Promise<void> {
    while (!this.#closing && !this.client.ended) {
      let frame: Frame;
      try {
        frame = await this.client.next(200);
      } catch {
        continue;
      }
      if (frame.request_id !== undefined) {
        this.#replies.set(String(frame.request_id), frame);
        this.replyOrder.push(String(frame.request_id));
      } else this.pushes.push(frame);
    }
  }

  /** Sends a request and returns its reply. */
  async ask(frame: Frame, ms = 10_000): Promise<Frame> {
    const id = `q${this.#next++}`;
    await this.client.send({ ...frame, request_id: id });
    await this.until(() => this.#replies.has(id), `the reply to ${JSON.stringify(frame)}`, ms);
    const reply = this.#replies.get(id)!;
    this.#replies.delete(id);
    return reply;
  }

  /** The reply to a request sent with `id` by hand. */
  async replyTo(id: string, ms = 10_000): Promise<Frame> {
    await this.until(() => this.#replies.has(id), `the reply to ${id}`, ms);
    return this.#replies.get(id)!;
  }

  /** Sends without a request_id (its reply, if any, arrives as a push). */
  async tell(frame: Frame): Promise<void> {
    await this.client.send(frame);
  }

  /** The pushes about `room`. */
  inRoom(room: string, type?: string): Frame[] {
    return this.pushes.filter((f) => f.room === room && (type === undefined || f.type === type));
  }

  async until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) fail(`${this.name}: timed out waiting for ${what}`);
      await sleep(10);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closing = true;
    await this.client.close();
    await this.#pump;
  }
}

async function createRoom(peer: Peer, visibility: "public" | "private", extra: Frame = {}): Promise<Frame> {
  const reply = await peer.ask({ type: "room_create", name: uniqueName("room"), visibility, ...extra });
  assertEquals(reply.type, "room_response", JSON.stringify(reply));
  return reply.room as Frame;
}

/** `room` as `peer`'s room_list (joined) shows it, if it is there. */
async function listedRoom(peer: Peer, room: string): Promise<Frame | undefined> {
  return ((await peer.ask({ type: "room_list", scope: "joined" })).rooms as Frame[]).find((r) => r.id === room);
}

function errorOf(reply: Frame): [unknown, unknown] {
  return [reply.type, reply.code];
}

/** Waits a moment and asserts that `peer` got no push about `room`. */
async function assertNothingFrom(peer: Peer, room: string): Promise<void> {
  await sleep(200);
  assertEquals(peer.inRoom(room), [], `${peer.name} got pushes of ${room}`);
}

const SERVER_ENV = { RATE_LIMIT_PER_SEC: "0", ROOM_LIMIT_PER_MIN: "0", SEARCH_LIMIT_PER_MIN: "0" };

for (const backend of backends) {
  const name = (text: string) => `rooms: ${text} [${backend.name}]`;

  Deno.test(
    name(
      "a sender writing to several rooms in turn: its sends share transactions, its replies keep request order, every member gets each room in id order",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const rooms = [
        (await createRoom(alice, "public")).id as string,
        (await createRoom(alice, "public")).id as string,
      ];
      for (const room of rooms) await bob.ask({ type: "room_join", room });
      // 120 sends pipelined, alternating: room 0, room 1, the lobby, room 0, …
      const feeds = [rooms[0], rooms[1], "lobby"];
      const ids: string[] = [];
      for (let i = 0; i < 120; i++) {
        const id = `p${i}`;
        ids.push(id);
        const room = feeds[i % 3];
        await alice.client.send({
          type: "send_message",
          message: `alt ${i}`,
          request_id: id,
          ...(room === "lobby" ? {} : { room }),
        });
      }
      const replies = await Promise.all(ids.map((id) => alice.replyTo(id)));
      assertEquals(replies.map((r) => r.message), ids.map((_, i) => `alt ${i}`));
      assertEquals(alice.replyOrder.filter((id) => id.startsWith("p")), ids, "replies out of request order");
      for (const room of rooms) {
        await bob.until(() => bob.inRoom(room, "new_message").length === 40, `40 messages of ${room}`);
        const got = bob.inRoom(room, "new_message").map((f) => f.id as number);
        assertEquals(got, [...got].sort((a, b) => a - b), "a room out of id order");
      }
      // Batched: far fewer transactions than sends (before, each switch of room started a new batch).
      const [row] = await server.service.db.query<{ n: number | string }>(
        `SELECT count(DISTINCT xmin::text) AS n FROM chat_room_events WHERE room_id = ANY ($1::text[]) AND kind = 'message'`,
        [rooms],
      );
      assert(Number(row.n) <= 40, `${row.n} transactions for 80 room messages`);
    },
  );

  Deno.test(
    name("hello: v2 on request, the limits told; a bad protocol is bad_request; v1 is the default"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using client = await server.connect();
      await client.registerAndLogin();
      const hello = await client.request({ type: "hello", protocol: 2 });
      assertEquals([hello.type, hello.protocol, hello.lobby], ["hello_response", 2, "lobby"]);
      assertEquals(typeof (hello.limits as Frame).max_rooms_per_user, "number");
      assertEquals(errorOf(await client.request({ type: "hello", protocol: 3 })), ["error", "bad_request"]);
      // protocol 1 turns v2 pushes off again: the lobby's messages come as v1 frames.
      assertEquals(await client.request({ type: "hello", protocol: 1 }), { type: "hello_response", protocol: 1 });
      const own = await client.request({ type: "send_message", message: "as v1 again" });
      assertEquals([own.type, own.room], ["new_message", undefined]);
      // Room requests need a login.
      await using anonymous = await server.connect();
      assertEquals(errorOf(await anonymous.request({ type: "room_list" })), ["error", "not_authenticated"]);
    },
  );

  Deno.test(
    name("room_create: the room object, its owner and join event id 1; names checked; public names unique in any case"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      const title = uniqueName("Design");
      const reply = await alice.ask({ type: "room_create", name: `  ${title}  `, visibility: "public" });
      const room = reply.room as Frame;
      assertEquals(
        [room.kind, room.name, room.role, room.members, room.last_id, room.history],
        ["public", title, "owner", 1, 1, "shared"],
      );
      assert(/^r_[a-z0-9]{12,}$/.test(room.id as string), `room id ${room.id}`);
      await alice.until(() => alice.inRoom(room.id as string).length === 1, "the creator's join");
      const join = alice.inRoom(room.id as string)[0];
      assertEquals([join.type, join.id, join.user, join.membership, join.by], [
        "member_event",
        1,
        alice.name,
        "join",
        alice.name,
      ]);

      assertEquals(
        errorOf(await alice.ask({ type: "room_create", name: title.toUpperCase(), visibility: "public" })),
        ["error", "name_taken"],
      );
      // Private names need not be unique.
      assertEquals(
        (await alice.ask({ type: "room_create", name: title, visibility: "private" })).type,
        "room_response",
      );
      for (const bad of ["", "   ", "x".repeat(65), "bad\u0007name", "zero\u200bwidth"]) {
        assertEquals(
          errorOf(await alice.ask({ type: "room_create", name: bad, visibility: "public" })),
          ["error", "invalid_room_name"],
          JSON.stringify(bad),
        );
      }
      assertEquals(errorOf(await alice.ask({ type: "room_create", name: "ok", visibility: "secret" })), [
        "error",
        "bad_request",
      ]);
      // 64 code points are fine, counted as characters, not bytes.
      const long = "é".repeat(64);
      assertEquals((await alice.ask({ type: "room_create", name: long, visibility: "private" })).type, "room_response");
    },
  );

  Deno.test(
    name(
      "room_create sent with the login: the creator's join is pushed exactly once while their rooms are still being read",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      // The server reads a user's rooms when they log in; a room created meanwhile may be in that
      // read while its join's notice is still on its way. Many users at once make the race likely.
      const users = await Promise.all(Array.from({ length: 16 }, async () => {
        const client = await server.connect();
        const username = uniqueName("rc");
        assertEquals((await client.request({ type: "register", username, password: "secret123" })).status, "success");
        return { client, username };
      }));
      try {
        await Promise.all(users.map(({ client, username }) =>
          client.send(
            [
              { type: "login", username, password: "secret123" },
              { type: "hello", protocol: 2 },
              { type: "room_create", name: uniqueName("first"), visibility: "private", request_id: "c" },
            ].map((frame) => JSON.stringify(frame) + "\n").join(""),
          )
        ));
        for (const { client, username } of users) {
          // The reply and the push may come in either order.
          const frames: Frame[] = [];
          const deadline = Date.now() + 10_000;
          const joins = () => frames.filter((f) => f.type === "member_event");
          while (!(frames.some((f) => f.request_id === "c") && joins().length > 0) && Date.now() < deadline) {
            frames.push(await client.next(Math.max(1, deadline - Date.now())).catch(() => ({})));
          }
          await client.expectNothing(100);
          const created = frames.find((f) => f.request_id === "c")!;
          assertEquals(created.type, "room_response", JSON.stringify(frames));
          assertEquals(
            joins().map((f) => [f.room, f.id, f.user, f.membership]),
            [[(created.room as Frame).id, 1, username, "join"]],
            `${username}: ${JSON.stringify(frames)}`,
          );
        }
      } finally {
        await Promise.all(users.map(({ client }) => client.close()));
      }
    },
  );

  Deno.test(
    name("join, leave, invite, kick: pushes to members and the user concerned; roles and refusals"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using carol = await Peer.open(server);
      const pub = (await createRoom(owner, "public")).id as string;

      const joined = await bob.ask({ type: "room_join", room: pub });
      assertEquals([(joined.room as Frame).role, (joined.room as Frame).members], ["member", 2]);
      await owner.until(() => owner.inRoom(pub, "member_event").length === 2, "bob's join at the owner");
      assertEquals(owner.inRoom(pub).at(-1)!.user, bob.name);
      // Joining again answers the same and records nothing.
      assertEquals((await bob.ask({ type: "room_join", room: pub })).type, "room_response");
      const members = await owner.ask({ type: "room_members", room: pub });
      assertEquals(
        (members.members as Frame[]).map((m) => [m.username, m.role]).sort(),
        [[bob.name, "member"], [owner.name, "owner"]].sort(),
      );

      // A member may not kick; the owner may; the kicked user gets the kick and nothing after it.
      assertEquals(errorOf(await bob.ask({ type: "room_kick", room: pub, user: owner.name })), [
        "error",
        "not_allowed",
      ]);
      assertEquals((await owner.ask({ type: "room_kick", room: pub, user: bob.name })).type, "kick_response");
      await bob.until(() => bob.inRoom(pub).some((f) => f.membership === "kick"), "the kick");
      const seenByBob = bob.inRoom(pub).length;
      assertEquals(
        (await owner.ask({ type: "send_message", room: pub, message: "after the kick" })).type,
        "new_message",
      );
      await sleep(200);
      assertEquals(bob.inRoom(pub).length, seenByBob, "something reached bob after his kick");
      assertEquals(errorOf(await bob.ask({ type: "send_message", room: pub, message: "me?" })), [
        "error",
        "not_member",
      ]);
      // A public room can be joined again after a kick.
      assertEquals((await bob.ask({ type: "room_join", room: pub })).type, "room_response");

      // Private: no join without an invitation (as if it did not exist); the invitee is told at once.
      const priv = (await createRoom(owner, "private")).id as string;
      const missing = await carol.ask({ type: "room_join", room: priv });
      const nowhere = await carol.ask({ type: "room_join", room: "r_doesnotexist0000" });
      assertEquals(missing.code, "room_not_found");
      assertEquals([missing.type, missing.message], [nowhere.type, nowhere.message]);
      assertEquals((await owner.ask({ type: "room_invite", room: priv, user: carol.name })).type, "invite_response");
      await carol.until(() => carol.inRoom(priv).some((f) => f.membership === "invite"), "the invitation");
      const list = await carol.ask({ type: "room_list", scope: "joined" });
      assertEquals((list.rooms as Frame[]).find((r) => r.id === priv)?.role, "invited");
      // Invited, not joined: only the room object.
      assertEquals(errorOf(await carol.ask({ type: "get_history", room: priv })), ["error", "not_member"]);
      assertEquals((await carol.ask({ type: "room_join", room: priv })).type, "room_response");
      assertEquals((await carol.ask({ type: "get_history", room: priv })).type, "history_response");

      // Leaving: room_left; the lobby and a DM cannot be left; the owner leaving hands the room on.
      assertEquals(errorOf(await carol.ask({ type: "room_leave", room: "lobby" })), ["error", "not_allowed"]);
      assertEquals(errorOf(await carol.ask({ type: "room_invite", room: "lobby", user: bob.name })), [
        "error",
        "not_allowed",
      ]);
      assertEquals((await owner.ask({ type: "room_leave", room: priv })).type, "room_left");
      const after = await carol.ask({ type: "room_join", room: priv });
      assertEquals((after.room as Frame).role, "owner", "the longest-standing member owns the room now");
      // A kicked user needs a new invitation to a private room.
      assertEquals((await carol.ask({ type: "room_invite", room: priv, user: bob.name })).type, "invite_response");
      assertEquals((await bob.ask({ type: "room_join", room: priv })).type, "room_response");
      assertEquals((await carol.ask({ type: "room_kick", room: priv, user: bob.name })).type, "kick_response");
      assertEquals((await bob.ask({ type: "room_join", room: priv })).code, "room_not_found");
      // Unknown users.
      assertEquals(errorOf(await carol.ask({ type: "room_invite", room: priv, user: uniqueName("ghost") })), [
        "error",
        "user_not_found",
      ]);
    },
  );

  Deno.test(
    name("a private room or DM one has no part in is indistinguishable from a missing room, for every request"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using peer = await Peer.open(server);
      await using outsider = await Peer.open(server);
      const priv = (await createRoom(owner, "private")).id as string;
      const dm = ((await owner.ask({ type: "dm_open", user: peer.name })).room as Frame).id as string;
      await owner.ask({ type: "send_message", room: priv, message: "secret" });
      await owner.ask({ type: "send_message", room: dm, message: "between us" });
      const missing = "r_zzzzzzzzzzzzzzzzzzzz";
      const requests: Frame[] = [
        { type: "room_join" },
        { type: "room_leave" },
        { type: "room_invite", user: outsider.name },
        { type: "room_kick", user: owner.name },
        { type: "room_members" },
        { type: "get_history" },
        { type: "send_message", message: "hi" },
        { type: "mark_read", id: 1 },
        { type: "search", query: "secret" },
      ];
      for (const request of requests) {
        const expected = await outsider.ask({ ...request, room: missing });
        assertEquals(expected.code, "room_not_found", JSON.stringify(expected));
        for (const room of [priv, dm]) {
          const got = await outsider.ask({ ...request, room });
          assertEquals(
            [got.type, got.code, got.message],
            [expected.type, expected.code, expected.message],
            `${request.type} ${room}`,
          );
        }
      }
      // Typing in a private room is refused as typing in a missing one is, and tells the members nothing.
      const pushedBefore = outsider.pushes.length;
      await outsider.tell({ type: "typing", room: priv, state: "start" });
      await outsider.tell({ type: "typing", room: "r_00000000000000000000", state: "start" });
      await sleep(200);
      const [typingHidden, typingMissing] = outsider.pushes.slice(pushedBefore).filter((f) => f.type === "error");
      assertEquals(typingHidden, typingMissing);
      assertEquals(typingHidden?.code, "room_not_found");
      assert(!owner.pushes.some((f) => f.type === "typing"), "an outsider's typing reached a member");
      // The public list shows public rooms only; the outsider saw no push of either room.
      const publicList = await outsider.ask({ type: "room_list", scope: "public", limit: 100 });
      assert(!(publicList.rooms as Frame[]).some((r) => r.id === priv || r.id === dm));
      assertEquals(outsider.pushes.filter((f) => f.room === priv || f.room === dm), []);
      // Room ids are random: no two alike, nothing guessable from the order they were made in.
      const ids = new Set<string>();
      for (let i = 0; i < 5; i++) ids.add((await createRoom(owner, "private")).id as string);
      assertEquals(ids.size, 5);
    },
  );

  Deno.test(
    name(
      "dm_open: one room per pair, made once; both members, both joins pushed to both; yourself or nobody is user_not_found; cannot be left",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const first = (await alice.ask({ type: "dm_open", user: bob.name })).room as Frame;
      assertEquals([first.kind, first.name], ["dm", bob.name]);
      assert(/^d_[a-z0-9]{12,}$/.test(first.id as string));
      const again = (await bob.ask({ type: "dm_open", user: alice.name })).room as Frame;
      assertEquals([again.id, again.name], [first.id, alice.name]);
      const dm = first.id as string;
      for (const peer of [alice, bob]) {
        await peer.until(() => peer.inRoom(dm, "member_event").length === 2, "both joins");
        assertEquals(peer.inRoom(dm).map((f) => [f.id, f.user, f.membership]), [[1, alice.name, "join"], [
          2,
          bob.name,
          "join",
        ]]);
      }
      assertEquals((await alice.ask({ type: "send_message", room: dm, message: "psst" })).id, 3);
      await bob.until(() => bob.inRoom(dm, "new_message").length === 1, "the DM's message");
      assertEquals(errorOf(await alice.ask({ type: "dm_open", user: alice.name })), ["error", "user_not_found"]);
      assertEquals(errorOf(await alice.ask({ type: "dm_open", user: uniqueName("nobody") })), [
        "error",
        "user_not_found",
      ]);
      assertEquals(errorOf(await alice.ask({ type: "room_leave", room: dm })), ["error", "not_allowed"]);
      assertEquals(errorOf(await alice.ask({ type: "room_invite", room: dm, user: bob.name })), [
        "error",
        "not_allowed",
      ]);
    },
  );

  Deno.test(
    name("messages in a room: dense ids, members only, history as pushed, client_msg_id unique across rooms"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using eve = await Peer.open(server);
      const room = (await createRoom(alice, "public")).id as string;
      await bob.ask({ type: "room_join", room });
      const sent: Frame[] = [];
      for (let i = 0; i < 5; i++) sent.push(await alice.ask({ type: "send_message", room, message: `m${i}` }));
      assertEquals(sent.map((f) => f.id), [3, 4, 5, 6, 7]);
      assertEquals(sent.map((f) => f.room), Array(5).fill(room));
      await bob.until(() => bob.inRoom(room, "new_message").length === 5, "the five messages");
      assertEquals(bob.inRoom(room, "new_message").map((f) => f.message), ["m0", "m1", "m2", "m3", "m4"]);
      // A public room's messages are pushed to its members only; anyone may read its history.
      await assertNothingFrom(eve, room);
      const history = await eve.ask({ type: "get_history", room, limit: 3 });
      assertEquals(history.room, room);
      assertEquals((history.messages as Frame[]).map((f) => [f.type, f.id]), [["new_message", 5], ["new_message", 6], [
        "new_message",
        7,
      ]]);
      const older = await eve.ask({ type: "get_history", room, before: 5, limit: 10 });
      assertEquals((older.messages as Frame[]).map((f) => [f.type, f.id]), [
        ["member_event", 1],
        ["member_event", 2],
        ["new_message", 3],
        ["new_message", 4],
      ]);
      const newer = await eve.ask({ type: "get_history", room, after: 6 });
      assertEquals((newer.messages as Frame[]).map((f) => f.id), [7]);
      assertEquals(errorOf(await eve.ask({ type: "send_message", room, message: "let me in" })), [
        "error",
        "not_member",
      ]);
      // The lobby by name is v1's history, marked with its room.
      const lobby = await eve.ask({ type: "get_history", room: "lobby", limit: 1 });
      assertEquals([lobby.type, lobby.room], ["history_response", "lobby"]);

      // client_msg_id: a repeat in any room answers the original, with its room.
      const other = (await createRoom(alice, "private")).id as string;
      const original = await alice.ask({ type: "send_message", room, message: "once", client_msg_id: "k-1" });
      const repeat = await alice.ask({ type: "send_message", room: other, message: "twice?", client_msg_id: "k-1" });
      assertEquals([repeat.duplicate, repeat.id, repeat.room, repeat.message], [true, original.id, room, "once"]);
      const inLobby = await alice.ask({ type: "send_message", message: "lobby?", client_msg_id: "k-1" });
      assertEquals([inLobby.duplicate, inLobby.room], [true, room]);
      // null is absent: every such send is new.
      const a = await alice.ask({ type: "send_message", room, message: "n1", client_msg_id: null });
      const b = await alice.ask({ type: "send_message", room, message: "n2", client_msg_id: null });
      assertEquals([a.duplicate, b.duplicate, (b.id as number) - (a.id as number)], [undefined, undefined, 1]);
    },
  );

  Deno.test(
    name('history:"joined": a member reads from their latest join on; "shared" from the start'),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const joinedOnly = (await createRoom(alice, "private", { history: "joined" })).id as string;
      await alice.ask({ type: "send_message", room: joinedOnly, message: "before bob" });
      await alice.ask({ type: "room_invite", room: joinedOnly, user: bob.name });
      await bob.ask({ type: "room_join", room: joinedOnly });
      await alice.ask({ type: "send_message", room: joinedOnly, message: "after bob" });
      const seen = await bob.ask({ type: "get_history", room: joinedOnly, limit: 50 });
      const texts = (seen.messages as Frame[]).filter((f) => f.type === "new_message").map((f) => f.message);
      assertEquals(texts, ["after bob"]);
      assert((seen.messages as Frame[]).every((f) => (f.id as number) >= 4), JSON.stringify(seen.messages));
      const all = await alice.ask({ type: "get_history", room: joinedOnly, limit: 50 });
      assert((all.messages as Frame[]).some((f) => f.message === "before bob"), "the creator reads it all");
    },
  );

  Deno.test(
    name("read markers and unread counts: forward only, told to the user's other connections; sending reads"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using bobPhone = await Peer.open(server, 2, bob.name);
      const room = (await createRoom(alice, "public")).id as string;
      await bob.ask({ type: "room_join", room });
      for (let i = 0; i < 3; i++) await alice.ask({ type: "send_message", room, message: `u${i}` });
      const before = (await listedRoom(bob, room))!;
      assertEquals([before.unread, before.last_id], [3, 5]);
      const read = await bob.ask({ type: "mark_read", room, id: 4 });
      assertEquals([read.type, read.room, read.id, read.unread], ["read_response", room, 4, 1]);
      await bobPhone.until(() => bobPhone.pushes.some((f) => f.type === "read" && f.room === room), "the read push");
      assertEquals(bobPhone.pushes.find((f) => f.type === "read")!.id, 4);
      // Backwards answers the current marker.
      assertEquals((await bob.ask({ type: "mark_read", room, id: 2 })).id, 4);
      // Sending moves the sender's marker to their message.
      await bob.ask({ type: "send_message", room, message: "mine" });
      assertEquals((await listedRoom(bob, room))?.unread, 0);
      assertEquals(errorOf(await bob.ask({ type: "mark_read", room, id: -1 })), ["error", "bad_request"]);
      // The lobby has a marker too.
      assertEquals((await bob.ask({ type: "mark_read", room: "lobby", id: 1 })).type, "read_response");
    },
  );

  Deno.test(
    name(
      "typing: the room's other members are told, not the typist, not outsiders; no reply; throttled silently; bad state is bad_request",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using eve = await Peer.open(server);
      const room = (await createRoom(alice, "public")).id as string;
      await bob.ask({ type: "room_join", room });
      await alice.tell({ type: "typing", room, state: "start" });
      await bob.until(() => bob.inRoom(room, "typing").length === 1, "the typing notice");
      assertEquals(bob.inRoom(room, "typing")[0], { type: "typing", room, user: alice.name, state: "start" });
      await sleep(200);
      assertEquals(alice.inRoom(room, "typing"), [], "the typist was told of their own typing");
      assertEquals(eve.pushes.filter((f) => f.type === "typing"), [], "a non-member was told");
      // Throttled silently: 20 more starts within seconds are not sent again, 20 stops get a
      // burst's worth through (6 a user), and none of them is answered.
      const pushedBefore = alice.pushes.length;
      const frames = (state: string) =>
        Array(20).fill(JSON.stringify({ type: "typing", room, state })).join("\n") + "\n";
      await alice.client.send(frames("start") + frames("stop"));
      assertEquals((await alice.ask({ type: "ping" })).type, "pong");
      await sleep(300);
      const told = bob.inRoom(room, "typing");
      assert(told.filter((f) => f.state === "start").length <= 2, `${told.length} notices: starts not throttled`);
      const stops = told.filter((f) => f.state === "stop").length;
      assert(stops >= 1 && stops <= 6, `${stops} stops told`);
      assertEquals(alice.pushes.slice(pushedBefore), [], "typing was answered");
      assertEquals(errorOf(await alice.ask({ type: "typing", room, state: "dancing" })), ["error", "bad_request"]);
      // Not stored: history shows no trace of it.
      const history = await bob.ask({ type: "get_history", room, limit: 50 });
      assert(!(history.messages as Frame[]).some((f) => f.type === "typing"));
    },
  );

  Deno.test(
    name("room_list: joined lists the lobby, rooms, DMs and invitations; public pages by name prefix"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const prefix = uniqueName("pfx");
      for (let i = 0; i < 3; i++) {
        await alice.ask({ type: "room_create", name: `${prefix} ${i}`, visibility: "public" });
      }
      const priv = (await createRoom(alice, "private")).id as string;
      await alice.ask({ type: "room_invite", room: priv, user: bob.name });
      await bob.ask({ type: "dm_open", user: alice.name });
      const joined = await bob.ask({ type: "room_list", scope: "joined" });
      const kinds = (joined.rooms as Frame[]).map((r) => [r.kind, r.role]);
      assert(kinds.some(([k]) => k === "lobby"), JSON.stringify(kinds));
      assert(kinds.some(([k, r]) => k === "private" && r === "invited"));
      assert(kinds.some(([k, r]) => k === "dm" && r === "member"));
      const page1 = await bob.ask({ type: "room_list", scope: "public", query: prefix, limit: 2 });
      assertEquals((page1.rooms as Frame[]).length, 2);
      assert(page1.next !== undefined, "a next cursor");
      const page2 = await bob.ask({ type: "room_list", scope: "public", query: prefix, limit: 2, after: page1.next });
      const names = [...(page1.rooms as Frame[]), ...(page2.rooms as Frame[])].map((r) => r.name);
      assertEquals(names.sort(), [`${prefix} 0`, `${prefix} 1`, `${prefix} 2`]);
      assertEquals(errorOf(await bob.ask({ type: "room_list", scope: "everything" })), ["error", "bad_request"]);
    },
  );

  Deno.test(
    name("limits: rooms per user, members per room, and room_create/invite/dm_open throttled per user"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, {
        ...SERVER_ENV,
        MAX_ROOMS_PER_USER: "3",
        MAX_ROOM_MEMBERS: "2",
        ROOM_LIMIT_BURST: "5",
        ROOM_LIMIT_PER_MIN: "1",
      });
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using carol = await Peer.open(server);
      const room = (await createRoom(alice, "public")).id as string;
      await bob.ask({ type: "room_join", room });
      assertEquals(errorOf(await carol.ask({ type: "room_join", room })), ["error", "limit_exceeded"]);
      await createRoom(alice, "private");
      await createRoom(alice, "private");
      assertEquals(errorOf(await alice.ask({ type: "room_create", name: "fourth", visibility: "private" })), [
        "error",
        "limit_exceeded",
      ]);
      // Five room requests in a burst (four so far), then one a minute.
      await bob.ask({ type: "room_create", name: uniqueName("b"), visibility: "private" });
      const throttled = await alice.ask({ type: "dm_open", user: carol.name });
      const next = await alice.ask({ type: "dm_open", user: bob.name });
      const refused = [throttled, next].find((r) => r.code === "rate_limited");
      assert(refused, `no rate_limited among ${JSON.stringify([throttled, next])}`);
      assert((refused.retry_after_ms as number) > 0);
    },
  );

  Deno.test(
    name(
      "limits: a pending invitation takes one of MAX_ROOMS_PER_USER; the invitee at the limit cannot create or join, nor be invited or DMed",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, { ...SERVER_ENV, MAX_ROOMS_PER_USER: "2" });
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using carol = await Peer.open(server);
      await using dan = await Peer.open(server);
      assertEquals(((await bob.ask({ type: "hello", protocol: 2 })).limits as Frame).max_rooms_per_user, 2);
      // Bob: one invitation (P1) and one room joined (R) make two.
      const p1 = (await createRoom(alice, "private")).id as string;
      assertEquals((await alice.ask({ type: "room_invite", room: p1, user: bob.name })).type, "invite_response");
      const r = (await createRoom(carol, "public")).id as string;
      assertEquals((await bob.ask({ type: "room_join", room: r })).type, "room_response");
      assertEquals(
        errorOf(await bob.ask({ type: "room_create", name: uniqueName("third"), visibility: "private" })),
        ["error", "limit_exceeded"],
      );
      const r2 = (await createRoom(dan, "public")).id as string;
      assertEquals(errorOf(await bob.ask({ type: "room_join", room: r2 })), ["error", "limit_exceeded"]);
      // Towards bob: an invitation or a DM would take a third slot.
      const p2 = (await createRoom(carol, "private")).id as string;
      assertEquals(errorOf(await carol.ask({ type: "room_invite", room: p2, user: bob.name })), [
        "error",
        "limit_exceeded",
      ]);
      assertEquals(errorOf(await dan.ask({ type: "dm_open", user: bob.name })), ["error", "limit_exceeded"]);
      assertEquals(errorOf(await bob.ask({ type: "dm_open", user: dan.name })), ["error", "limit_exceeded"]);
      // Nothing was made for bob by the refusals.
      const listed = await bob.ask({ type: "room_list", scope: "joined" });
      assertEquals(
        (listed.rooms as Frame[]).map((room) => [room.id, room.role]).sort(),
        [["lobby", "member"], [p1, "invited"], [r, "member"]].sort(),
        JSON.stringify(listed.rooms),
      );
      assertEquals(bob.inRoom(p2), [], "bob was told of a refused invitation");
      // Accepting the invitation takes no new slot.
      assertEquals(((await bob.ask({ type: "room_join", room: p1 })).room as Frame).role, "member");
      // Leaving R frees one: a DM fits, then bob is at the limit again.
      assertEquals((await bob.ask({ type: "room_leave", room: r })).type, "room_left");
      assertEquals(((await dan.ask({ type: "dm_open", user: bob.name })).room as Frame).kind, "dm");
      assertEquals(errorOf(await carol.ask({ type: "room_invite", room: p2, user: bob.name })), [
        "error",
        "limit_exceeded",
      ]);
    },
  );

  Deno.test(
    name("unread: exact up to 1000, reported as 1000 beyond, in room_list and mark_read"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const room = (await createRoom(alice, "public")).id as string;
      await bob.ask({ type: "room_join", room }); // 2
      // 1005 messages by alice (ids 3..1007), pipelined in writes of 100 lines.
      const ids = Array.from({ length: 1005 }, (_, i) => `u${i}`);
      for (let i = 0; i < ids.length; i += 100) {
        await alice.client.send(
          ids.slice(i, i + 100).map((id) => JSON.stringify({ type: "send_message", room, message: id, request_id: id }))
            .join("\n") + "\n",
        );
      }
      const replies = await Promise.all(ids.map((id) => alice.replyTo(id, 30_000)));
      assertEquals(replies.filter((r) => r.type !== "new_message"), []);
      assertEquals(replies.at(-1)!.id, 1007);
      const listed = (await listedRoom(bob, room))!;
      assertEquals([listed.last_id, listed.read_id, listed.unread], [1007, 2, 1000]);
      // 1004 above the marker, then exactly 1000, then 999.
      assertEquals((await bob.ask({ type: "mark_read", room, id: 3 })).unread, 1000);
      assertEquals((await bob.ask({ type: "mark_read", room, id: 7 })).unread, 1000);
      const below = await bob.ask({ type: "mark_read", room, id: 8 });
      assertEquals([below.id, below.unread], [8, 999]);
      const relisted = (await listedRoom(bob, room))!;
      assertEquals([relisted.read_id, relisted.unread], [8, 999]);
      // The sender's own messages are not unread for her.
      const own = (await listedRoom(alice, room))!;
      assertEquals(own.unread, 0);
    },
  );

  Deno.test(
    name(
      "room_members: online true only with a live connection; pages by limit/after/next; outsiders see public rooms only",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using outsider = await Peer.open(server);
      const room = (await createRoom(owner, "public")).id as string;
      const others: Peer[] = [];
      try {
        for (let i = 0; i < 4; i++) {
          const peer = await Peer.open(server);
          others.push(peer);
          assertEquals((await peer.ask({ type: "room_join", room })).type, "room_response");
        }
        const everyone = [owner.name, ...others.map((p) => p.name)].sort();
        const all = await outsider.ask({ type: "room_members", room });
        assertEquals([all.type, all.room, all.next], ["members_response", room, undefined]);
        assertEquals((all.members as Frame[]).map((m) => m.username).sort(), everyone);
        assert((all.members as Frame[]).every((m) => m.online === true), JSON.stringify(all.members));

        // Pages of 2: 2, 2, 1; each member once; no next on the last.
        const seen: string[] = [];
        const sizes: number[] = [];
        let after: unknown = undefined;
        for (let pages = 0; pages < 5; pages++) {
          const page = await outsider.ask({
            type: "room_members",
            room,
            limit: 2,
            ...(after === undefined ? {} : { after }),
          });
          assertEquals(page.type, "members_response", JSON.stringify(page));
          seen.push(...(page.members as Frame[]).map((m) => m.username as string));
          sizes.push((page.members as Frame[]).length);
          after = page.next;
          if (after === undefined) break;
        }
        assertEquals(sizes, [2, 2, 1]);
        assertEquals([...seen].sort(), everyone);

        // One member goes offline: false for them, true for the others.
        const gone = others[0];
        await gone[Symbol.asyncDispose]();
        const onlineOf = async () =>
          Object.fromEntries(
            ((await owner.ask({ type: "room_members", room })).members as Frame[]).map((m) => [m.username, m.online]),
          );
        let online: Record<string, unknown> = {};
        await waitUntil(
          async () => {
            online = await onlineOf();
            return online[gone.name] === false;
          },
          5_000,
          "the member who left to show as offline",
        );
        assertEquals(online[gone.name], false, "a member without a connection is online");
        assertEquals(Object.keys(online).sort(), everyone, "a member who went offline left the list");
        for (const peer of [owner, ...others.slice(1)]) assertEquals(online[peer.name], true, peer.name);

        // A private room's members: room_not_found for an outsider, as for a missing room.
        const priv = (await createRoom(owner, "private")).id as string;
        const hidden = await outsider.ask({ type: "room_members", room: priv });
        const missing = await outsider.ask({ type: "room_members", room: "r_nosuchroom000000" });
        assertEquals(errorOf(hidden), ["error", "room_not_found"]);
        assertEquals(hidden.message, missing.message);
        assertEquals(
          ((await owner.ask({ type: "room_members", room: priv })).members as Frame[]).map((
            m,
          ) => [m.username, m.role, m.online]),
          [[owner.name, "owner", true]],
        );
      } finally {
        for (const peer of others) await peer[Symbol.asyncDispose]();
      }
    },
  );

  Deno.test(
    name("re-joining a room one is in records nothing: no second join event, no push, the same count"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using bob = await Peer.open(server);
      const room = (await createRoom(owner, "public")).id as string;
      const first = (await bob.ask({ type: "room_join", room })).room as Frame;
      const again = (await bob.ask({ type: "room_join", room })).room as Frame;
      assertEquals([again.role, again.members, again.last_id], ["member", 2, 2]);
      assertEquals([first.members, first.last_id], [again.members, again.last_id]);
      await owner.ask({ type: "send_message", room, message: "after the rejoin" }); // 3
      const history = await owner.ask({ type: "get_history", room, limit: 50 });
      assertEquals((history.messages as Frame[]).map((f) => [f.id, f.type, f.membership ?? f.message]), [
        [1, "member_event", "join"],
        [2, "member_event", "join"],
        [3, "new_message", "after the rejoin"],
      ]);
      // Pushed once: the owner's own message is a reply, not a push; bob gets his join and the message.
      await bob.until(() => bob.inRoom(room, "new_message").length === 1, "the message at bob");
      await sleep(100);
      assertEquals(owner.inRoom(room).map((f) => f.id), [1, 2]);
      assertEquals(bob.inRoom(room).map((f) => f.id), [2, 3]);
      // The owner's own rejoin records nothing either.
      assertEquals(((await owner.ask({ type: "room_join", room })).room as Frame).role, "owner");
      assertEquals(((await owner.ask({ type: "room_join", room })).room as Frame).last_id, 3);
    },
  );

  Deno.test(
    name(
      "an owner who leaves hands the room to the longest-standing member, not a later one, whatever the user ids or names",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      // "a…" registered first (smaller user id, earlier name), "z…" second; "z…" joins first.
      const suffix = uniqueName("").slice(1);
      const [earlyName, laterName] = [`z${suffix}`, `a${suffix}`];
      await using registrar = await server.connect();
      for (const username of [laterName, earlyName]) {
        assertEquals(
          (await registrar.request({ type: "register", username, password: "secret123" })).status,
          "success",
        );
      }
      await using owner = await Peer.open(server);
      await using early = await Peer.open(server, 2, earlyName);
      await using later = await Peer.open(server, 2, laterName);
      for (const visibility of ["public", "private"] as const) {
        const room = (await createRoom(owner, visibility)).id as string;
        if (visibility === "private") {
          // Invited in the opposite order: the join, not the invitation, is what counts.
          await owner.ask({ type: "room_invite", room, user: later.name });
          await owner.ask({ type: "room_invite", room, user: early.name });
        }
        assertEquals((await early.ask({ type: "room_join", room })).type, "room_response");
        assertEquals((await later.ask({ type: "room_join", room })).type, "room_response");
        assertEquals((await owner.ask({ type: "room_leave", room })).type, "room_left");
        const members = await early.ask({ type: "room_members", room });
        assertEquals(
          (members.members as Frame[]).map((m) => [m.username, m.role]).sort(),
          [[early.name, "owner"], [later.name, "member"]].sort(),
          visibility,
        );
        // The new owner may kick; the other may not.
        assertEquals(errorOf(await later.ask({ type: "room_kick", room, user: early.name })), ["error", "not_allowed"]);
        assertEquals((await early.ask({ type: "room_kick", room, user: later.name })).type, "kick_response");
      }
    },
  );

  Deno.test(
    name(
      "hello_response.limits: exactly max_rooms_per_user, max_room_members and max_room_name_length 64, the defaults",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using client = await server.connect();
      await client.registerAndLogin();
      const hello = await client.request({ type: "hello", protocol: 2 });
      assertEquals(hello.limits, { max_rooms_per_user: 1000, max_room_members: 10000, max_room_name_length: 64 });
      // Allowed before login too, with the same limits.
      await using anonymous = await server.connect();
      assertEquals((await anonymous.request({ type: "hello", protocol: 2 })).limits, hello.limits);
      // Configured values are told.
      await using tuned = await startTestServer(backend, {
        ...SERVER_ENV,
        MAX_ROOMS_PER_USER: "7",
        MAX_ROOM_MEMBERS: "3",
      });
      await using other = await tuned.connect();
      assertEquals((await other.request({ type: "hello", protocol: 2 })).limits, {
        max_rooms_per_user: 7,
        max_room_members: 3,
        max_room_name_length: 64,
      });
    },
  );

  Deno.test(
    name('a DM\'s room object carries "peer", the other user, for both sides, in every reply'),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const opened = (await alice.ask({ type: "dm_open", user: bob.name })).room as Frame;
      assertEquals([opened.kind, opened.peer, opened.name], ["dm", bob.name, bob.name]);
      const dm = opened.id as string;
      const reopened = (await bob.ask({ type: "dm_open", user: alice.name })).room as Frame;
      assertEquals([reopened.id, reopened.peer, reopened.name], [dm, alice.name, alice.name]);
      for (const [me, other] of [[alice, bob], [bob, alice]]) {
        const listed = await listedRoom(me, dm);
        assertEquals([listed?.kind, listed?.peer], ["dm", other.name], me.name);
        const joined = (await me.ask({ type: "room_join", room: dm })).room as Frame;
        assertEquals(joined.peer, other.name, me.name);
      }
      // Other rooms carry no peer.
      const room = await createRoom(alice, "private");
      assertEquals(room.peer, undefined);
    },
  );

  Deno.test(
    name("v1 connections see nothing of rooms, and the messages table holds no room event"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using v1 = await Peer.open(server, 1);
      await using alice = await Peer.open(server);
      const room = (await createRoom(alice, "public")).id as string;
      const before = Number((await server.service.db.query<{ n: string }>("SELECT count(*) AS n FROM messages"))[0].n);
      for (let i = 0; i < 5; i++) await alice.ask({ type: "send_message", room, message: `room only ${i}` });
      const ownLobbyLine = await alice.ask({ type: "send_message", message: "lobby line" });
      await v1.until(() => v1.pushes.some((f) => f.message === "lobby line"), "the lobby line");
      // Exactly the v1 frame: no room field, nothing of the room.
      const lobbyLine = v1.pushes.find((f) => f.message === "lobby line")!;
      assertEquals(Object.keys(lobbyLine).sort(), ["id", "message", "sender", "timestamp", "type"]);
      assertEquals(v1.pushes.filter((f) => f.room !== undefined || f.type !== "new_message"), []);
      const after = Number((await server.service.db.query<{ n: string }>("SELECT count(*) AS n FROM messages"))[0].n);
      assertEquals(after - before, 1, "room messages went into the messages table");
      const history = await v1.ask({ type: "get_history", limit: 20 });
      assert(!(history.messages as Frame[]).some((f) => String(f.message).startsWith("room only")));
      // v2 requests work on any logged-in connection; only pushes need hello: the v1 connection's
      // own send to the room is answered, and it gets no push of the room.
      assertEquals((await v1.ask({ type: "room_join", room })).type, "room_response");
      const reply = await v1.ask({ type: "send_message", room, message: "by request" });
      assertEquals([reply.type, reply.room], ["new_message", room]);
      await alice.ask({ type: "send_message", room, message: "after v1 joined" });
      // Delivered to every member with alice's reply: anything for v1 is on its socket before a pong.
      assertEquals((await v1.ask({ type: "ping" })).type, "pong");
      assertEquals(v1.pushes.filter((f) => f.room !== undefined), [], "a v1 connection got a room's push");
      // A v2 connection gets the lobby's messages marked with their room.
      assertEquals(ownLobbyLine.room, "lobby");
    },
  );

  Deno.test(
    name(
      "a kick racing the member's pipelined sends: each send answered once, accepted only below the kick's id, nothing of the room after it",
    ),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using victim = await Peer.open(server);
      await using bystander = await Peer.open(server);
      const room = (await createRoom(owner, "private")).id as string;
      for (const peer of [victim, bystander]) {
        await owner.ask({ type: "room_invite", room, user: peer.name });
        assertEquals((await peer.ask({ type: "room_join", room })).type, "room_response");
      }
      await victim.until(
        () => victim.inRoom(room).some((f) => f.membership === "join" && f.user === victim.name),
        "the victim's own join",
      );
      const joinId = victim.inRoom(room).find((f) => f.membership === "join" && f.user === victim.name)!.id as number;

      // The victim and a bystander pipeline sends in chunks of 10, never waiting for a reply; the
      // owner kicks the victim once the victim's first sends are answered. The victim goes on for
      // three chunks after the kick reached them, the bystander for three more after that.
      let victimDone = false;
      const pipeline = async (peer: Peer, prefix: string, stop: () => boolean): Promise<string[]> => {
        const ids: string[] = [];
        for (let chunk = 0; chunk < 100 && !stop(); chunk++) {
          const batch = Array.from({ length: 10 }, (_, i) => `${prefix}${chunk * 10 + i}`);
          ids.push(...batch);
          await peer.client.send(
            batch.map((id) => JSON.stringify({ type: "send_message", room, message: `text ${id}`, request_id: id }))
              .join("\n") + "\n",
          );
          await sleep(5);
        }
        return ids;
      };
      let victimChunksAfterKick = 0;
      const victimSending = pipeline(victim, "v", () => {
        if (victim.inRoom(room).some((f) => f.membership === "kick")) victimChunksAfterKick++;
        return victimChunksAfterKick > 3;
      }).finally(() => victimDone = true);
      let bystanderChunksAfter = 0;
      const bystanderSending = pipeline(bystander, "b", () => victimDone && ++bystanderChunksAfter > 3);
      await victim.until(() => victim.replyOrder.filter((id) => id.startsWith("v")).length >= 20, "20 answered sends");
      assertEquals((await owner.ask({ type: "room_kick", room, user: victim.name })).type, "kick_response");
      const [victimIds, bystanderIds] = await Promise.all([victimSending, bystanderSending]);

      // Every send answered exactly once, in request order: its own new_message, or room_not_found.
      const replies = await Promise.all(victimIds.map((id) => victim.replyTo(id, 30_000)));
      assertEquals(victim.replyOrder.filter((id) => id.startsWith("v")), victimIds, "a send answered twice, or late");
      await Promise.all(bystanderIds.map((id) => bystander.replyTo(id, 30_000)));
      const accepted = replies.filter((r) => r.type === "new_message");
      for (const [i, reply] of replies.entries()) {
        if (reply.type === "new_message") {
          assertEquals([reply.room, reply.sender, reply.message], [room, victim.name, `text ${victimIds[i]}`]);
        } else assertEquals(errorOf(reply), ["error", "room_not_found"], JSON.stringify(reply));
      }
      assert(accepted.length >= 20 && accepted.length < replies.length, `${accepted.length} of ${replies.length}`);

      // The database: the kick's id, and no message by the victim above it; exactly the accepted ones stored.
      const [kick] = await server.service.db.query<{ id: number | string }>(
        "SELECT id FROM chat_room_events WHERE room_id = $1 AND kind = 'kick'",
        [room],
      );
      const kickId = Number(kick.id);
      const stored = await server.service.db.query<{ id: number | string; body: string }>(
        "SELECT id, body FROM chat_room_events WHERE room_id = $1 AND kind = 'message' AND username = $2 ORDER BY id",
        [room, victim.name],
      );
      assertEquals(
        stored.map((row) => [Number(row.id), row.body]),
        accepted.map((r) => [r.id, r.message]),
        "the stored messages are not the accepted ones",
      );
      assert(stored.every((row) => Number(row.id) < kickId), `a message above the kick (${kickId}) was accepted`);
      // The room went on after the kick (the bystander's sends), so there was something to leak.
      const [head] = await server.service.db.query<{ last_id: number | string }>(
        "SELECT last_id FROM chat_rooms WHERE id = $1",
        [room],
      );
      assert(Number(head.last_id) > kickId, "nothing happened in the room after the kick");

      // The victim got every event from their join through the kick exactly once (their own
      // messages as replies), the kick last, and nothing after it.
      await owner.until(
        () => owner.inRoom(room).some((f) => f.id === Number(head.last_id)),
        "the room's last event at the owner",
      );
      assertEquals((await victim.ask({ type: "ping" })).type, "pong");
      await sleep(200);
      const pushed = victim.inRoom(room).filter((f) => (f.id as number) >= joinId);
      assertEquals(
        [pushed.at(-1)!.type, pushed.at(-1)!.membership, pushed.at(-1)!.id],
        ["member_event", "kick", kickId],
      );
      const seen = [...pushed, ...accepted].map((f) => f.id as number).sort((a, b) => a - b);
      assertEquals(seen, Array.from({ length: kickId - joinId + 1 }, (_, i) => joinId + i), "a gap or a repeat");
    },
  );

  Deno.test(
    name('history:"joined", public: a visitor previews an empty history and finds nothing by search; members do'),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using visitor = await Peer.open(server);
      const room = (await createRoom(owner, "public", { history: "joined" })).id as string;
      const word = uniqueName("w").replace(/[^a-z0-9]/g, "");
      await owner.ask({ type: "send_message", room, message: `only for members ${word}` });

      for (const query of [{}, { after: 0 }, { before: 100 }]) {
        const history = await visitor.ask({ type: "get_history", room, ...query });
        assertEquals(
          [history.type, history.room, history.messages],
          ["history_response", room, []],
          JSON.stringify(query),
        );
      }
      const found = await visitor.ask({ type: "search", query: word, room });
      assertEquals([found.type, found.results], ["search_response", []]);
      const everywhere = await visitor.ask({ type: "search", query: word });
      assertEquals(everywhere.results, []);
      // The owner, a member since the start, reads and finds it.
      const owned = await owner.ask({ type: "get_history", room });
      assert((owned.messages as Frame[]).some((f) => f.message === `only for members ${word}`));
      assertEquals(((await owner.ask({ type: "search", query: word, room })).results as Frame[]).length, 1);
      // Joining shows the visitor their join and what follows, still nothing before it.
      await visitor.ask({ type: "room_join", room });
      await owner.ask({ type: "send_message", room, message: `welcome ${word}` });
      const joined = await visitor.ask({ type: "get_history", room });
      assertEquals((joined.messages as Frame[]).map((f) => [f.type, f.id, f.membership ?? f.message]), [
        ["member_event", 3, "join"],
        ["new_message", 4, `welcome ${word}`],
      ]);
      const hits = await visitor.ask({ type: "search", query: word, room });
      assertEquals((hits.results as Frame[]).map((f) => f.message), [`welcome ${word}`]);
    },
  );

  Deno.test(
    name('history:"joined": after leaving and rejoining, history and search start at the rejoin, that join included'),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using alice = await Peer.open(server);
      await using bob = await Peer.open(server);
      const room = (await createRoom(alice, "public", { history: "joined" })).id as string;
      const word = uniqueName("w").replace(/[^a-z0-9]/g, "");
      await bob.ask({ type: "room_join", room }); // 2
      await alice.ask({ type: "send_message", room, message: `first stay ${word}` }); // 3
      const during = await bob.ask({ type: "get_history", room });
      assertEquals((during.messages as Frame[]).map((f) => f.id), [2, 3]);
      assertEquals((await bob.ask({ type: "room_leave", room })).type, "room_left"); // 4
      await alice.ask({ type: "send_message", room, message: `while away ${word}` }); // 5
      // Gone, bob is a visitor: nothing at all.
      assertEquals((await bob.ask({ type: "get_history", room })).messages, []);
      assertEquals((await bob.ask({ type: "room_join", room })).type, "room_response"); // 6
      await alice.ask({ type: "send_message", room, message: `second stay ${word}` }); // 7

      const history = await bob.ask({ type: "get_history", room, limit: 50 });
      assertEquals((history.messages as Frame[]).map((f) => [f.type, f.id, f.user ?? f.message]), [
        ["member_event", 6, bob.name],
        ["new_message", 7, `second stay ${word}`],
      ]);
      assertEquals((await bob.ask({ type: "get_history", room, before: 6 })).messages, []);
      assertEquals(
        ((await bob.ask({ type: "get_history", room, after: 0 })).messages as Frame[]).map((f) => f.id),
        [6, 7],
      );
      for (const scope of [{ room }, {}]) {
        const found = await bob.ask({ type: "search", query: word, ...scope });
        assertEquals((found.results as Frame[]).map((f) => f.message), [`second stay ${word}`], JSON.stringify(scope));
      }
      // Alice, there all along, reads all three.
      const all = await alice.ask({ type: "search", query: word, room });
      assertEquals((all.results as Frame[]).length, 3);
    },
  );

  Deno.test(
    name("an invited user who has not joined: not_member for every request but room_join, typing reaches nobody"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      await using bob = await Peer.open(server);
      await using carol = await Peer.open(server);
      const room = (await createRoom(owner, "private")).id as string;
      await owner.ask({ type: "room_invite", room, user: bob.name });
      await bob.ask({ type: "room_join", room });
      await owner.ask({ type: "send_message", room, message: "members only" });
      await owner.ask({ type: "room_invite", room, user: carol.name });
      await carol.until(() => carol.inRoom(room).some((f) => f.membership === "invite"), "the invitation");
      const requests: Frame[] = [
        { type: "room_members" },
        { type: "send_message", message: "may I?" },
        { type: "mark_read", id: 1 },
        { type: "typing", state: "start" },
        { type: "get_history" },
        { type: "search", query: "members" },
        { type: "room_invite", user: uniqueName("friend") },
        { type: "room_kick", user: bob.name },
      ];
      for (const request of requests) {
        assertEquals(errorOf(await carol.ask({ ...request, room })), ["error", "not_member"], request.type as string);
      }
      // Her typing (refused) reached no member; her send stored nothing.
      await sleep(200);
      assertEquals([...owner.pushes, ...bob.pushes].filter((f) => f.type === "typing"), [], "invitee's typing told");
      const [row] = await server.service.db.query<{ n: number | string }>(
        "SELECT count(*) AS n FROM chat_room_events WHERE room_id = $1 AND kind = 'message'",
        [room],
      );
      assertEquals(Number(row.n), 1);
      // Joined, the same typing reaches the other members.
      assertEquals((await carol.ask({ type: "room_join", room })).type, "room_response");
      await carol.tell({ type: "typing", room, state: "start" });
      await bob.until(() => bob.inRoom(room, "typing").length === 1, "carol's typing once she joined");
      assertEquals(bob.inRoom(room, "typing")[0].user, carol.name);
    },
  );

  Deno.test(
    name("v2 requests need a login: an anonymous connection that said hello gets not_authenticated, nothing done"),
    sanitized,
    async () => {
      await using server = await startTestServer(backend, SERVER_ENV);
      await using owner = await Peer.open(server);
      const room = (await createRoom(owner, "public")).id as string;
      await using anonymous = await server.connect();
      assertEquals((await anonymous.request({ type: "hello", protocol: 2 })).type, "hello_response");
      const newName = uniqueName("anon room");
      const requests: Frame[] = [
        { type: "room_create", name: newName, visibility: "public" },
        { type: "room_join", room },
        { type: "room_leave", room },
        { type: "room_invite", room, user: owner.name },
        { type: "room_kick", room, user: owner.name },
        { type: "room_list", scope: "public" },
        { type: "room_members", room },
        { type: "dm_open", user: owner.name },
        { type: "send_message", room, message: "anonymous" },
        { type: "get_history", room },
        { type: "mark_read", room, id: 1 },
        { type: "typing", room, state: "start" },
        { type: "search", query: "anything" },
        { type: "search", query: "anything", room },
      ];
      for (const [i, request] of requests.entries()) {
        const reply = await anonymous.request({ ...request, request_id: i });
        assertEquals(
          [reply.type, reply.code, reply.request_id],
          ["error", "not_authenticated", i],
          JSON.stringify(request),
        );
      }
      // Nothing was made or stored, and the owner's room heard nothing.
      const [made] = await server.service.db.query<{ n: number | string }>(
        "SELECT count(*) AS n FROM chat_rooms WHERE name = $1",
        [newName],
      );
      assertEquals(Number(made.n), 0);
      const info = await owner.ask({ type: "room_members", room });
      assertEquals((info.members as Frame[]).map((m) => m.username), [owner.name]);
      const history = await owner.ask({ type: "get_history", room });
      assertEquals((history.messages as Frame[]).map((f) => f.id), [1]);
      assertEquals(owner.pushes.filter((f) => f.type === "typing"), []);
      await anonymous.expectNothing(100);
    },
  );
}
