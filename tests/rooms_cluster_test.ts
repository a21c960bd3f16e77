// Rooms across several servers on one PostgreSQL database (contract v2, "storage and order"):
// real server processes. Every member's v2 connections, on every server, get a room's events
// exactly once, in id order, with no gap; a kick committed on one server stops delivery to the
// kicked user on another at the kick; an invitation made on one server reaches the invitee on
// another at once; a property test of random membership changes and sends over two servers
// checks that each connection got exactly the events its membership entitles it to; a server
// killed mid-traffic and a database outage leave no gap and no duplicate. Every test runs on both
// buses: PostgreSQL's NOTIFY, and NATS (a nats-server of the test's own). PostgreSQL only.

import { assert, assertEquals, fail } from "./support/assert.ts";
import { type Frame, sanitized, type TestClient, uniqueName } from "./support/client.ts";
import { type ServerProcess, spawnServer } from "./support/process.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import { createScratchDatabase, Prng, type ScratchDatabase, seedFromEnv } from "./support/reliability.ts";
import { sleep, Wakeup } from "./support/util.ts";
import { startNats, type TestBus, testBuses } from "./support/nats.ts";

const postgresUrl = Deno.env.get("TEST_DATABASE_URL") || undefined;
const ignore = !postgresUrl;
const PASSWORD = "rooms-pass";
const CONVERGE_MS = 20_000;
const SEED = seedFromEnv("ROOMS_SEED");

function serverEnv(url: string): Record<string, string> {
  return { DATABASE_URL: url, DB_POOL_SIZE: "4", RATE_LIMIT_PER_SEC: "0", ROOM_LIMIT_PER_MIN: "0" };
}

/** The delivery buses the property and failure tests run on (NATS where a nats-server is installed). */
const BUSES = testBuses(ignore);

async function startServers(
  urls: string[],
  extraEnv: Record<string, string> = {},
): Promise<ServerProcess[] & AsyncDisposable> {
  const servers = await Promise.all(urls.map((url) => spawnServer({ ...serverEnv(url), ...extraEnv })));
  return Object.assign(servers, {
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    },
  });
}

/**
 * A v2 client that reads in the background: room events by room in arrival order, replies by
 * request_id. Checks as it goes that no room's events come twice or out of order.
 */
class V2Peer implements AsyncDisposable {
  readonly client: TestClient;
  readonly username: string;
  readonly events = new Map<string, Frame[]>();
  /** Typing notices, in arrival order. */
  readonly typing: Frame[] = [];
  /** Read-marker pushes (`read`), in arrival order. */
  readonly reads: Frame[] = [];
  readonly problems: string[] = [];
  readonly #replies = new Map<string, Frame>();
  readonly #changed = new Wakeup();
  #closing = false;
  readonly #pump: Promise<void>;
  #next = 0;

  private constructor(client: TestClient, username: string) {
    this.client = client;
    this.username = username;
    this.#pump = this.#run();
  }

  static async login(server: ServerProcess, username: string, register: boolean): Promise<V2Peer> {
    const client = await server.connect();
    if (register) await client.request({ type: "register", username, password: PASSWORD }, 10_000);
    const login = await client.request({ type: "login", username, password: PASSWORD }, 10_000);
    assertEquals(login.status, "success", JSON.stringify(login));
    assertEquals((await client.request({ type: "hello", protocol: 2 }, 10_000)).type, "hello_response");
    return new V2Peer(client, username);
  }

  async #run(): Promise<void> {
    while (!this.#closing && !this.client.ended) {
      let frame: Frame;
      try {
        frame = await this.client.next(250);
      } catch {
        continue;
      }
      const room = frame.room as string | undefined;
      if (
        (frame.type === "new_message" || frame.type === "member_event") && room && room !== "lobby" && !frame.duplicate
      ) {
        const list = this.events.get(room) ?? [];
        const last = list.at(-1)?.id as number | undefined;
        if (last !== undefined && frame.id !== last + 1) {
          this.problems.push(`${room}: ${frame.id} after ${last}`);
        }
        list.push(frame);
        this.events.set(room, list);
      }
      if (frame.type === "typing") this.typing.push(frame);
      if (frame.type === "read") this.reads.push(frame);
      if (frame.request_id !== undefined) this.#replies.set(String(frame.request_id), frame);
      this.#changed.wake();
    }
  }

  async until(condition: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) fail(`${this.username}: timed out after ${ms} ms waiting for ${what}`);
      await this.#changed.wait(left);
    }
  }

  async request(frame: Frame, ms = 10_000): Promise<Frame> {
    const id = `q${this.#next++}`;
    await this.client.send({ ...frame, request_id: id });
    await this.until(() => this.#replies.has(id), ms, `the reply to ${frame.type}`);
    const reply = this.#replies.get(id)!;
    this.#replies.delete(id);
    return reply;
  }

  /** Waits for the reply to a request made with `send`. */
  async replyTo(id: string, ms: number): Promise<Frame> {
    await this.until(() => this.#replies.has(id), ms, `the reply to ${id}`);
    const reply = this.#replies.get(id)!;
    this.#replies.delete(id);
    return reply;
  }

  /** Sends without waiting; the reply is kept by its request_id. */
  async send(frame: Frame): Promise<string> {
    const id = `q${this.#next++}`;
    await this.client.send({ ...frame, request_id: id });
    return id;
  }

  lastId(room: string): number {
    return (this.events.get(room)?.at(-1)?.id as number | undefined) ?? 0;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closing = true;
    await this.client.close();
    await this.#pump;
  }
}

async function closeAll(peers: V2Peer[]): Promise<void> {
  await Promise.all(peers.map((p) => p[Symbol.asyncDispose]()));
}

/** A test's cluster: a scratch database, servers on it, and the peers the test logs in. */
interface Cluster extends AsyncDisposable {
  readonly db: ScratchDatabase;
  readonly servers: ServerProcess[];
  /** Closed first when the cluster is disposed; then the servers, the database, NATS. */
  readonly peers: V2Peer[];
}

/** `count` servers on a scratch database, on `bus` (with a nats-server of their own for NATS). */
async function startCluster(bus: TestBus, count: number): Promise<Cluster> {
  await using stack = new AsyncDisposableStack();
  const nats = bus.nats ? stack.use(await startNats()) : undefined;
  const db = stack.use(await createScratchDatabase(postgresUrl!));
  const servers = stack.use(await startServers(Array(count).fill(db.url), nats ? { NATS_URL: nats.url } : {}));
  const peers: V2Peer[] = [];
  stack.defer(() => closeAll(peers));
  const owned = stack.move();
  return { db, servers, peers, [Symbol.asyncDispose]: () => owned.disposeAsync() };
}

interface EventRow {
  id: number;
  kind: string;
  user_id: number;
  username: string;
  body: string | null;
}

async function roomEvents(db: ScratchDatabase, room: string): Promise<EventRow[]> {
  const rows = await db.query<EventRow & Record<string, unknown>>(
    `SELECT id::int AS id, kind, user_id, username, body FROM chat_room_events WHERE room_id = $1 ORDER BY id`,
    [room],
  );
  return rows;
}

async function head(db: ScratchDatabase, room: string): Promise<number> {
  return Number(
    (await db.query<{ last_id: string }>(`SELECT last_id FROM chat_rooms WHERE id = $1`, [room]))[0].last_id,
  );
}

/**
 * Waits until every peer has `room`'s events up to its head, then checks that each got exactly
 * the stored events from its first on (messages by text, membership events by kind). Returns them.
 */
async function assertPeersSawStored(db: ScratchDatabase, peers: V2Peer[], room: string): Promise<EventRow[]> {
  const last = await head(db, room);
  await Promise.all(peers.map((p) => p.until(() => p.lastId(room) >= last, CONVERGE_MS, `${room} up to ${last}`)));
  const stored = await roomEvents(db, room);
  for (const peer of peers) {
    const got = peer.events.get(room)!;
    const first = got[0].id as number;
    assertEquals(
      got.map((f) => [f.id, f.type === "new_message" ? f.message : f.membership]),
      stored.filter((r) => r.id >= first).map((r) => [r.id, r.kind === "message" ? r.body : r.kind]),
      `${peer.username} in ${room}`,
    );
  }
  return stored;
}

for (const bus of BUSES) {
  Deno.test({
    name:
      `rooms cluster${bus.label}: three servers, senders in two rooms on each: every member connection gets each room's events once, in order, as stored`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 3);
      const { db, servers, peers } = cluster;
      const names = Array.from({ length: 6 }, () => uniqueName("rc"));
      for (let i = 0; i < names.length; i++) peers.push(await V2Peer.login(servers[i % 3], names[i], true));
      const owner = peers[0];
      const rooms: string[] = [];
      for (const visibility of ["public", "private"]) {
        const created = await owner.request({ type: "room_create", name: uniqueName("room"), visibility });
        rooms.push((created.room as Frame).id as string);
      }
      for (const peer of peers.slice(1)) {
        for (const room of rooms) {
          if (room === rooms[1]) await owner.request({ type: "room_invite", room, user: peer.username });
          assertEquals((await peer.request({ type: "room_join", room })).type, "room_response");
        }
      }
      // Everyone sends into both rooms at once, on all three servers.
      await Promise.all(peers.map(async (peer, p) => {
        for (let i = 0; i < 20; i++) {
          for (const room of rooms) {
            const ack = await peer.request({ type: "send_message", room, message: `p${p}-${i}` });
            assertEquals(ack.type, "new_message", JSON.stringify(ack));
          }
        }
      }));
      for (const room of rooms) await assertPeersSawStored(db, peers, room);
      for (const peer of peers) assertEquals(peer.problems, [], peer.username);
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: senders pipelining into the same rooms on two servers (each answer leaves out the rows of the batch before it): every member connection gets each room's events once, in order, as stored`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 2);
      const { db, servers, peers } = cluster;
      // Two senders and an observer on server 0, a sender and an observer on server 1.
      for (let i = 0; i < 5; i++) peers.push(await V2Peer.login(servers[i < 3 ? 0 : 1], uniqueName("pl"), true));
      const rooms: string[] = [];
      for (let r = 0; r < 3; r++) {
        const created = await peers[0].request({ type: "room_create", name: uniqueName("pl"), visibility: "public" });
        rooms.push((created.room as Frame).id as string);
      }
      for (const peer of peers.slice(1)) {
        for (const room of rooms) assertEquals((await peer.request({ type: "room_join", room })).type, "room_response");
      }
      // Windows of 300 sends from two connections keep more than one batch in flight on server 0's
      // writer (a second batch goes before the first is answered once 128 wait), while server 1's
      // rows land between them in the same rooms.
      const senders = [peers[0], peers[1], peers[3]];
      const sentTo = new Map(rooms.map((room) => [room, 0]));
      await Promise.all(senders.map(async (peer, p) => {
        for (let round = 0; round < 2; round++) {
          const ids: string[] = [];
          for (let i = 0; i < 300; i++) {
            const room = rooms[i % 3];
            sentTo.set(room, sentTo.get(room)! + 1);
            ids.push(await peer.send({ type: "send_message", room, message: `s${p}-${round}-${i}` }));
          }
          for (const id of ids) assertEquals((await peer.replyTo(id, CONVERGE_MS)).type, "new_message");
        }
      }));
      for (const room of rooms) {
        const stored = await assertPeersSawStored(db, peers, room);
        assertEquals(
          stored.filter((r) => r.kind === "message").length,
          sentTo.get(room),
          `${room}: each send stored once`,
        );
      }
      for (const peer of peers) assertEquals(peer.problems, [], peer.username);
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: a kick committed on another server stops delivery to the kicked user at the kick, mid-stream`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 3);
      const { db, servers, peers } = cluster;
      const owner = await V2Peer.login(servers[1], uniqueName("owner"), true);
      const victim = await V2Peer.login(servers[0], uniqueName("victim"), true);
      const sender = await V2Peer.login(servers[2], uniqueName("sender"), true);
      peers.push(owner, victim, sender);
      const room = ((await owner.request({ type: "room_create", name: uniqueName("k"), visibility: "private" }))
        .room as Frame).id as string;
      for (const peer of [victim, sender]) {
        await owner.request({ type: "room_invite", room, user: peer.username });
        await peer.request({ type: "room_join", room });
      }
      let stop = false;
      const sending = (async () => {
        for (let i = 0; i < 400 && !stop; i++) {
          await sender.send({ type: "send_message", room, message: `m${i}` });
          await sleep(2);
        }
      })();
      await victim.until(() => (victim.events.get(room) ?? []).some((f) => f.message === "m20"), CONVERGE_MS, "m20");
      const kick = await owner.request({ type: "room_kick", room, user: victim.username });
      assertEquals(kick.type, "kick_response");
      await sleep(300);
      stop = true;
      await sending;
      const last = await head(db, room);
      await owner.until(() => owner.lastId(room) >= last, CONVERGE_MS, "the owner to see everything");
      const stored = await roomEvents(db, room);
      const kickId = stored.find((r) => r.kind === "kick")!.id;
      assert(stored.some((r) => r.kind === "message" && r.id > kickId), "no message was sent after the kick");
      const got = victim.events.get(room)!;
      assertEquals(got.at(-1)!.id, kickId, "the kick is the victim's last event in the room");
      assertEquals(got.at(-1)!.membership, "kick");
      await sleep(200);
      assertEquals(victim.events.get(room)!.at(-1)!.id, kickId, "something came after the kick");
      assertEquals(victim.problems, []);
      // And the private room is gone for them: its history answers as a missing room.
      const history = await victim.request({ type: "get_history", room });
      assertEquals([history.type, history.code], ["error", "room_not_found"]);
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: a read marker is the user's on every server: moved on one, pushed to and listed on the other, never back`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 2);
      const { servers, peers } = cluster;
      const readerName = uniqueName("rd");
      const sender = await V2Peer.login(servers[0], uniqueName("sd"), true);
      const readerHere = await V2Peer.login(servers[0], readerName, true);
      const readerThere = await V2Peer.login(servers[1], readerName, false);
      peers.push(sender, readerHere, readerThere);
      const room = ((await sender.request({ type: "room_create", name: uniqueName("rd"), visibility: "public" }))
        .room as Frame).id as string;
      assertEquals((await readerHere.request({ type: "room_join", room })).type, "room_response");
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push((await sender.request({ type: "send_message", room, message: `m${i}` })).id as number);
      }
      const listed = async (peer: V2Peer) => {
        const reply = await peer.request({ type: "room_list", scope: "joined" });
        const found = (reply.rooms as Frame[]).find((r) => r.id === room)!;
        return [found.read_id, found.unread];
      };
      await readerThere.until(() => readerThere.lastId(room) >= ids[4], CONVERGE_MS, "the messages");
      const joinedAt = (await listed(readerThere))[0] as number;
      assertEquals(await listed(readerThere), [joinedAt, 5], "before any mark_read");
      const marked = await readerHere.request({ type: "mark_read", room, id: ids[2] });
      assertEquals([marked.type, marked.id, marked.unread], ["read_response", ids[2], 2]);
      await readerThere.until(() => readerThere.reads.length > 0, CONVERGE_MS, "the read push");
      assertEquals([readerThere.reads[0].room, readerThere.reads[0].id, readerThere.reads[0].unread], [
        room,
        ids[2],
        2,
      ]);
      assertEquals(await listed(readerThere), [ids[2], 2], "listed on the other server");
      // A smaller id on the other server answers the current marker; it does not move back.
      const back = await readerThere.request({ type: "mark_read", room, id: ids[0] });
      assertEquals([back.id, back.unread], [ids[2], 2]);
      assertEquals(await listed(readerHere), [ids[2], 2]);
      // Sending moves the sender's own marker, seen from the other server too.
      const own = (await readerHere.request({ type: "send_message", room, message: "mine" })).id as number;
      assertEquals(await listed(readerThere), [own, 0]);
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: a typing notice reaches the room's members on the typist's server and on the other, not the typist`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 2);
      const { servers, peers } = cluster;
      const typist = await V2Peer.login(servers[0], uniqueName("typist"), true);
      const near = await V2Peer.login(servers[0], uniqueName("near"), true);
      const far = await V2Peer.login(servers[1], uniqueName("far"), true);
      peers.push(typist, near, far);
      const room = ((await typist.request({ type: "room_create", name: uniqueName("t"), visibility: "public" }))
        .room as Frame).id as string;
      for (const member of [near, far]) {
        assertEquals((await member.request({ type: "room_join", room })).type, "room_response");
      }
      // A server routes a notice by the memberships it has delivered: each member's own join event
      // shows its server has it (a notice is not stored; one that races a join is not repeated).
      for (const member of [near, far]) {
        await member.until(
          () => member.events.get(room)?.some((f) => f.membership === "join" && f.user === member.username) ?? false,
          CONVERGE_MS,
          "its own join",
        );
      }
      // A notice has no reply; the members' notices are what shows it went out.
      await typist.client.send({ type: "typing", room, state: "start" });
      for (const member of [near, far]) {
        await member.until(() => member.typing.length > 0, 5000, "the typing notice");
        assertEquals(member.typing, [{ type: "typing", room, user: typist.username, state: "start" }]);
      }
      // A message after the notice, seen by the typist, bounds the wait for a notice that must not come.
      await typist.request({ type: "send_message", room, message: "done" });
      await typist.until(
        () => typist.events.get(room)?.some((f) => f.message === "done") ?? false,
        CONVERGE_MS,
        "done",
      );
      assertEquals(typist.typing, [], "the typist was told of their own typing");
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: an invitation made on one server reaches the invitee's connection on another at once`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using cluster = await startCluster(bus, 2);
      const { servers, peers } = cluster;
      const inviter = await V2Peer.login(servers[1], uniqueName("inviter"), true);
      const invitee = await V2Peer.login(servers[0], uniqueName("invitee"), true);
      peers.push(inviter, invitee);
      const room = ((await inviter.request({ type: "room_create", name: uniqueName("i"), visibility: "private" }))
        .room as Frame).id as string;
      const started = performance.now();
      await inviter.request({ type: "room_invite", room, user: invitee.username });
      await invitee.until(() => invitee.events.has(room), 5000, "the invitation");
      const elapsed = performance.now() - started;
      const invite = invitee.events.get(room)![0];
      assertEquals([invite.type, invite.membership, invite.user, invite.by], [
        "member_event",
        "invite",
        invitee.username,
        inviter.username,
      ]);
      assert(elapsed < 5000, `the invitation took ${elapsed} ms`);
      // Joining on its own server: the join is its next event, then the room's messages.
      await invitee.request({ type: "room_join", room });
      await inviter.request({ type: "send_message", room, message: "welcome" });
      await invitee.until(
        () => invitee.events.get(room)!.some((f) => f.message === "welcome"),
        CONVERGE_MS,
        "welcome",
      );
      assertEquals(invitee.events.get(room)!.map((f) => f.membership ?? f.message), ["invite", "join", "welcome"]);
    },
  });

  Deno.test({
    name:
      `rooms cluster${bus.label}: random joins, leaves, kicks, invites and sends over two servers: each connection gets exactly what its membership entitles it to`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      const rng = new Prng(SEED);
      await using cluster = await startCluster(bus, 2);
      const { db, servers, peers } = cluster;
      for (let i = 0; i < 6; i++) peers.push(await V2Peer.login(servers[i % 2], uniqueName("pf"), true));
      const ids = new Map<string, number>();
      for (const row of await db.query<{ id: number; username: string }>(`SELECT id, username FROM users`)) {
        ids.set(row.username, Number(row.id));
      }
      const rooms: string[] = [];
      for (const [i, visibility] of ["public", "private", "private"].entries()) {
        const created = await peers[i].request({ type: "room_create", name: uniqueName("pr"), visibility });
        rooms.push((created.room as Frame).id as string);
      }
      // Let every server settle its followers before the traffic starts.
      await sleep(300);
      const ops: Promise<unknown>[] = [];
      for (let step = 0; step < 160; step++) {
        const peer = peers[rng.int(0, peers.length - 1)];
        const other = peers[rng.int(0, peers.length - 1)];
        const room = rooms[rng.int(0, rooms.length - 1)];
        const pick = rng.int(0, 9);
        const frame: Frame = pick < 5
          ? { type: "send_message", room, message: `s${step}` }
          : pick < 7
          ? { type: "room_join", room }
          : pick < 8
          ? { type: "room_invite", room, user: other.username }
          : pick < 9
          ? { type: "room_kick", room, user: other.username }
          : { type: "room_leave", room };
        ops.push(peer.request(frame, 20_000));
        if (ops.length >= 4) await Promise.all(ops.splice(0));
      }
      await Promise.all(ops);
      for (const room of rooms) {
        const stored = await roomEvents(db, room);
        const expected = entitled(stored, peers.map((p) => ids.get(p.username)!), room.startsWith("d_"));
        const last = stored.at(-1)!.id;
        await Promise.all(peers.map(async (peer) => {
          const want = expected.get(ids.get(peer.username)!)!;
          if (want.length > 0) await peer.until(() => peer.lastId(room) >= want.at(-1)!, CONVERGE_MS, `${room}`);
        }));
        await sleep(200);
        for (const peer of peers) {
          const got = (peer.events.get(room) ?? []).map((f) => f.id as number);
          assertEquals(
            got,
            expected.get(ids.get(peer.username)!)!,
            `${peer.username} in ${room} (seed ${SEED}, last ${last})`,
          );
        }
      }
    },
  });
}

/**
 * Which of a room's events each user is entitled to, replaying its membership from the start:
 * a message goes to its members; a membership event to the members and the user it is about.
 */
function entitled(events: EventRow[], users: number[], dm: boolean): Map<number, number[]> {
  const members = new Set<number>();
  const got = new Map(users.map((u) => [u, [] as number[]]));
  for (const event of events) {
    if (event.kind === "join") members.add(event.user_id);
    const recipients = new Set(members);
    if (event.kind !== "message") recipients.add(event.user_id);
    if (dm) { for (const e of events) if (e.kind === "join") recipients.add(e.user_id); }
    for (const user of recipients) got.get(user)?.push(event.id);
    if (event.kind === "leave" || event.kind === "kick") members.delete(event.user_id);
  }
  return got;
}

for (const bus of BUSES) {
  Deno.test({
    name:
      `rooms cluster${bus.label}: a server killed mid-traffic and another cut from its database for 3 s: no gap, no duplicate, per room`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using db = await createScratchDatabase(postgresUrl!);
      await using proxy = startProxy(targetOf(postgresUrl!));
      await using servers = await startServers(
        [db.url, db.url, proxiedUrl(db.url, proxy)],
        nats ? { NATS_URL: nats.url } : {},
      );
      const peers: V2Peer[] = [];
      try {
        for (let i = 0; i < 6; i++) peers.push(await V2Peer.login(servers[i % 3], uniqueName("kf"), true));
        const room = ((await peers[0].request({ type: "room_create", name: uniqueName("k"), visibility: "public" }))
          .room as Frame).id as string;
        for (const peer of peers.slice(1)) await peer.request({ type: "room_join", room });
        let stop = false;
        const sent: [V2Peer, string][] = [];
        const senders = [peers[0], peers[1], peers[2]].map(async (peer, p) => {
          for (let i = 0; i < 300 && !stop; i++) {
            const id = await peer.send({ type: "send_message", room, message: `k${p}-${i}` }).catch(() => undefined);
            if (id !== undefined) sent.push([peer, id]);
            await sleep(3);
          }
        });
        await sleep(300);
        // Server 1 dies (peers 1 and 4 with it); server 2 loses its database for 3 s.
        await servers[1].stop("SIGKILL");
        await proxy.cut();
        await sleep(3000);
        proxy.restore();
        await sleep(500);
        stop = true;
        await Promise.all(senders);
        const survivors = peers.filter((_, i) => i % 3 !== 1);
        // Every send to a surviving server is answered (stored or refused) before the head is read.
        await Promise.all(
          sent.filter(([peer]) => survivors.includes(peer)).map(([peer, id]) => peer.replyTo(id, CONVERGE_MS)),
        );
        const last = await head(db, room);
        await Promise.all(
          survivors.map((p) => p.until(() => p.lastId(room) >= last, CONVERGE_MS, `${room} to ${last}`)),
        );
        const stored = await roomEvents(db, room);
        for (const peer of survivors) {
          const got = peer.events.get(room)!;
          const first = got[0].id as number;
          assertEquals(got.map((f) => f.id), stored.filter((r) => r.id >= first).map((r) => r.id), peer.username);
          assertEquals(peer.problems, [], peer.username);
        }
      } finally {
        await closeAll(peers);
      }
    },
  });
}
