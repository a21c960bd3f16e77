// rooms: protocol v2 (contract "v2: conversations") under load, each part against a baseline
// measured on the same server in alternating rounds of the same run.
//
// 1. Fan-out in rooms vs the lobby: N v2 connections (1,000; 200 with --quick), one user each, in
//    rooms of 10 members, every user in 2 rooms (room A = 10 consecutive users, room B = the users
//    with the same index modulo N/10); 50 senders, each sending into its two rooms in turn, paced
//    open loop at ROOM_RATE messages/s in all with at most 20 unacknowledged each. Every delivery is
//    checked: it must reach a member of the room the message was sent into, with that "room"
//    (else wrong-recipient), and every member must get every accepted message of its rooms (else
//    missed), in id order per room. Baseline: the same connections and senders in the lobby, where
//    every connection receives every message, paced so that the deliveries/s are the same as the
//    rooms' (ROOM_RATE × 10 / N messages/s): a lobby message reaches N connections, a room's 10.
// 2. Ingest: 4 v2 senders, up to 100 unacknowledged messages each, spread over 100 rooms (all four
//    are members of all 100, so each message reaches 4 connections), vs the same 4 senders in the
//    lobby (4 connections logged in: each message reaches 4). Acknowledged messages/s and the
//    database backends' CPU per message.
// 3. room_list {"scope":"joined"} latency for a user in 1,000 rooms (made with room_create), one
//    request at a time, measured at the client from the write to the parsed reply.
// 4. The lobby's ingest of part 2 again, while that user stays logged in: the server now also
//    follows its 1,000 quiet rooms, which should cost the lobby nothing (info, against part 2).

import type { Delivery, LoadClient } from "../client.ts";
import { markerText } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter, GroupCpuMeter } from "../proc.ts";
import type { Process } from "../servers.ts";
import { Histogram, type LatencySummary, round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  type LoadgenCpu,
  loadgenProblem,
  ratioOf,
  ratioText,
  registerUsers,
  type Row,
  runFor,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  type Target,
  usernames,
} from "./common.ts";

const LOBBY = "lobby";
const ROOM_SIZE = 10;
const FANOUT_SENDERS = 50;
/** Messages per second into the rooms, all senders together (part 1). */
const ROOM_RATE = 1000;
const FANOUT_MAX_UNACKED = 20;
const INGEST_SENDERS = 4;
const INGEST_ROOMS = 100;
const INGEST_WINDOW = 100;
const LIST_ROOMS = 1000;
const LIST_MAX_REQUESTS = 300;
const LIST_MAX_S = 20;

interface ArmOptions {
  label: string;
  clients: LoadClient[];
  /** Client indices of the senders; the marker's sender number is the position in this list. */
  senders: number[];
  /** The rooms each sender sends into, in turn (LOBBY: a v1-style send without "room"). */
  roomsOf: string[][];
  /** Consecutive messages a sender sends into one room before the next of its rooms (default 1). */
  runLength?: number;
  /** Client indices of each room's members (LOBBY: every client). */
  members: Map<string, Set<number>>;
  messageChars: number;
  /** Closed loop: at most this many unacknowledged messages per sender. */
  window?: number;
  /** Open loop: messages per second in all, round robin over the senders. */
  ratePerSec?: number;
  /** Open loop: a sender with this many unacknowledged messages skips its turn (counted). */
  maxUnacked?: number;
}

interface ArmCounts {
  sent: number;
  acked: number;
  rejected: number;
  skipped: number;
  deliveries: number;
  missed: number;
  wrong_recipient: number;
  duplicates: number;
  out_of_order: number;
  ack_mismatches: number;
  errors: Record<string, number>;
  closed_connections: number;
}

/** Room-aware traffic over shared connections: only the attached arm gets the clients' callbacks. */
class RoomTraffic {
  readonly latency = new Histogram();
  readonly ackLatency = new Histogram();
  windowDeliveries = 0;
  windowAcks = 0;
  readonly o: ArmOptions;
  readonly #n: number;
  readonly #s: number;
  readonly #roomOfSeq: string[][];
  readonly #accepted: Map<string, number>[];
  readonly #got: Float64Array;
  readonly #unacked: Float64Array;
  readonly #lastId = new Map<string, number>();
  #sent = 0;
  #acked = 0;
  #rejected = 0;
  #skipped = 0;
  #deliveries = 0;
  #wrong = 0;
  #outOfOrder = 0;
  #ackMismatches = 0;
  #measuring = false;
  #sending = false;
  #pacer: ReturnType<typeof setTimeout> | undefined;

  constructor(o: ArmOptions) {
    this.o = o;
    this.#n = o.clients.length;
    this.#s = o.senders.length;
    this.#roomOfSeq = o.senders.map(() => []);
    this.#accepted = o.senders.map(() => new Map());
    this.#got = new Float64Array(this.#n * this.#s);
    this.#unacked = new Float64Array(this.#s);
  }

  attach(): void {
    const position = new Map(this.o.senders.map((c, p) => [c, p]));
    this.o.clients.forEach((client, r) => {
      client.countOnly = false;
      client.onDelivery = (d, now) => this.#onDelivery(r, d, now);
      const p = position.get(r);
      client.onError = p === undefined ? undefined : (_code, requestId) => this.#onRejected(p, requestId);
    });
  }

  get unacked(): number {
    return this.#unacked.reduce((a, b) => a + b, 0);
  }
  get sent(): number {
    return this.#sent;
  }
  get deliveries(): number {
    return this.#deliveries;
  }

  measure(on: boolean): void {
    this.#measuring = on;
  }

  start(): void {
    this.#sending = true;
    if (this.o.window !== undefined) {
      for (let p = 0; p < this.#s; p++) this.#refill(p);
    } else if (this.o.ratePerSec !== undefined) {
      this.#pace(this.o.ratePerSec);
    }
  }

  stopSending(): void {
    this.#sending = false;
    if (this.#pacer !== undefined) clearTimeout(this.#pacer);
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.unacked === 0 && this.#deliveries + this.#wrong >= this.#expectedTotal()) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  #expectedTotal(): number {
    let total = 0;
    for (let p = 0; p < this.#s; p++) {
      for (const [room, count] of this.#accepted[p]) total += count * this.#membersOf(room).size;
    }
    return total;
  }

  #membersOf(room: string): Set<number> {
    return this.o.members.get(room) ?? new Set();
  }

  counts(): ArmCounts {
    let missed = 0;
    let duplicates = 0;
    for (let r = 0; r < this.#n; r++) {
      for (let p = 0; p < this.#s; p++) {
        let expected = 0;
        for (const [room, count] of this.#accepted[p]) if (this.#membersOf(room).has(r)) expected += count;
        const got = this.#got[r * this.#s + p];
        missed += Math.max(0, expected - got);
        duplicates += Math.max(0, got - expected);
      }
    }
    const errors: Record<string, number> = {};
    let closed = 0;
    for (const client of this.o.clients) {
      for (const [code, count] of client.errors) errors[code] = (errors[code] ?? 0) + count;
      if (client.closedReason !== undefined) closed++;
    }
    return {
      sent: this.#sent,
      acked: this.#acked,
      rejected: this.#rejected,
      skipped: this.#skipped,
      deliveries: this.#deliveries,
      missed,
      wrong_recipient: this.#wrong,
      duplicates,
      out_of_order: this.#outOfOrder,
      ack_mismatches: this.#ackMismatches,
      errors,
      closed_connections: closed,
    };
  }

  #line(p: number): string {
    const rooms = this.o.roomsOf[p];
    const seqs = this.#roomOfSeq[p];
    const seq = seqs.length;
    const room = rooms[Math.floor(seq / (this.o.runLength ?? 1)) % rooms.length];
    seqs.push(room);
    this.#sent++;
    this.#unacked[p]++;
    this.#accepted[p].set(room, (this.#accepted[p].get(room) ?? 0) + 1);
    const text = markerText(p, seq, this.o.messageChars);
    const roomField = room === LOBBY ? "" : `"room":"${room}",`;
    return `{"type":"send_message","message":"${text}",${roomField}"request_id":${seq}}\n`;
  }

  #refill(p: number): void {
    const client = this.o.clients[this.o.senders[p]];
    const window = this.o.window ?? 0;
    while (this.#sending && this.#unacked[p] < window) client.sendLine(this.#line(p));
  }

  #pace(rate: number): void {
    const t0 = performance.now();
    const maxUnacked = this.o.maxUnacked ?? 1000;
    let scheduled = 0;
    let next = 0;
    const tick = () => {
      if (!this.#sending) return;
      const due = Math.floor(((performance.now() - t0) / 1000) * rate) - scheduled;
      for (let i = 0; i < due; i++) {
        const p = next;
        next = (next + 1) % this.#s;
        scheduled++;
        if (this.#unacked[p] >= maxUnacked) {
          this.#skipped++;
          continue;
        }
        this.o.clients[this.o.senders[p]].sendLine(this.#line(p));
      }
      this.#pacer = setTimeout(tick, 2);
    };
    tick();
  }

  #onDelivery(r: number, d: Delivery, now: number): void {
    const p = d.sender;
    const room = p < this.#s ? this.#roomOfSeq[p][d.seq] : undefined;
    // Sent into another room (or never sent by this arm), or reaching a non-member: wrong recipient.
    if (room === undefined || d.room !== room || !this.#membersOf(room).has(r)) {
      this.#wrong++;
      return;
    }
    this.#deliveries++;
    this.#got[r * this.#s + p]++;
    const key = `${r}|${room}`;
    if (d.id <= (this.#lastId.get(key) ?? 0)) this.#outOfOrder++;
    else this.#lastId.set(key, d.id);
    if (this.#measuring) {
      this.latency.record(now - d.sentAtUs);
      this.windowDeliveries++;
    }
    if (r === this.o.senders[p] && d.requestId >= 0) {
      if (d.requestId !== d.seq) this.#ackMismatches++;
      this.#acked++;
      this.#unacked[p]--;
      if (this.#measuring) {
        this.ackLatency.record(now - d.sentAtUs);
        this.windowAcks++;
      }
      if (this.o.window !== undefined && this.#sending) this.#refill(p);
    }
  }

  #onRejected(p: number, requestId: number): void {
    if (requestId < 0) return;
    const room = this.#roomOfSeq[p][requestId];
    if (room === undefined) return;
    this.#rejected++;
    this.#unacked[p]--;
    this.#accepted[p].set(room, (this.#accepted[p].get(room) ?? 1) - 1);
    if (this.o.window !== undefined && this.#sending) this.#refill(p);
  }
}

interface ArmResult {
  label: string;
  rounds: number;
  measured_s: number;
  messages_per_s: number;
  deliveries_per_s: number;
  deliveries_per_message: number | null;
  latency: LatencySummary;
  ack_latency: LatencySummary;
  server_cpu_s: number;
  server_cpu_ms_per_1000_deliveries: number | null;
  server_cpu_ms_per_message: number | null;
  database_cpu_s: number | null;
  database_cpu_ms_per_message: number | null;
  counts: ArmCounts;
  drained: boolean;
  loadgen: LoadgenCpu;
}

interface Schedule {
  rounds: number;
  warmupS: number;
  roundS: number;
}

/** Runs the arms in alternating rounds on one server: warm-up, measured window, stop, drain (bounded). */
async function interleave(
  arms: RoomTraffic[],
  server: Process,
  backendPattern: string | undefined,
  schedule: Schedule,
): Promise<ArmResult[]> {
  const acc = arms.map(() => ({ cpuS: 0, wallS: 0, selfS: 0, dbS: 0, dbSeen: false, drained: true }));
  for (let r = 0; r < schedule.rounds; r++) {
    for (let i = 0; i < arms.length; i++) {
      const arm = arms[i];
      const a = acc[i];
      const label = `${arm.o.label} round ${r + 1}/${schedule.rounds}`;
      const status = () => `sent=${arm.sent} delivered=${arm.deliveries} unacked=${arm.unacked}`;
      arm.attach();
      arm.start();
      await runFor(schedule.warmupS, `${label} warm-up`, status);
      const cpu = new CpuMeter(server.pid);
      const self = new CpuMeter("self");
      const db = backendPattern ? new GroupCpuMeter(backendPattern) : undefined;
      await Promise.all([cpu.start(), self.start(), db?.start()]);
      arm.measure(true);
      await runFor(schedule.roundS, label, status);
      arm.measure(false);
      const [c, s, d] = await Promise.all([cpu.stop(), self.stop(), db?.stop()]);
      a.cpuS += c.cpuS;
      a.wallS += c.wallS;
      a.selfS += s.cpuS;
      if (d && d.processes > 0) {
        a.dbS += d.cpuS;
        a.dbSeen = true;
      }
      arm.stopSending();
      a.drained = (await arm.drain(10_000)) && a.drained;
    }
  }
  return arms.map((arm, i) => {
    const a = acc[i];
    const deliveries = arm.windowDeliveries;
    const acks = arm.windowAcks;
    const cores = a.selfS / a.wallS;
    return {
      label: arm.o.label,
      rounds: schedule.rounds,
      measured_s: round(a.wallS, 3),
      messages_per_s: round(acks / a.wallS, 1),
      deliveries_per_s: round(deliveries / a.wallS, 1),
      deliveries_per_message: acks > 0 ? round(deliveries / acks, 2) : null,
      latency: arm.latency.summary(),
      ack_latency: arm.ackLatency.summary(),
      server_cpu_s: round(a.cpuS, 3),
      server_cpu_ms_per_1000_deliveries: deliveries > 0 ? round((a.cpuS * 1e6) / deliveries, 3) : null,
      server_cpu_ms_per_message: acks > 0 ? round((a.cpuS * 1000) / acks, 4) : null,
      database_cpu_s: a.dbSeen ? round(a.dbS, 3) : null,
      database_cpu_ms_per_message: a.dbSeen && acks > 0 ? round((a.dbS * 1000) / acks, 4) : null,
      counts: arm.counts(),
      drained: a.drained,
      loadgen: { cpu_s: round(a.selfS, 3), wall_s: round(a.wallS, 3), cores: round(cores, 3), saturated: cores >= 0.9 },
    };
  });
}

function armProblems(r: ArmResult): string[] {
  const out: string[] = [];
  const c = r.counts;
  if (!r.drained) {
    out.push(`${r.label}: not every message was acknowledged and delivered within 10 s after sending stopped`);
  }
  if (c.missed > 0) out.push(`${r.label}: ${c.missed} missed deliveries`);
  if (c.wrong_recipient > 0) out.push(`${r.label}: ${c.wrong_recipient} wrong-recipient deliveries`);
  if (c.duplicates > 0) out.push(`${r.label}: ${c.duplicates} duplicate deliveries`);
  if (c.out_of_order > 0) out.push(`${r.label}: ${c.out_of_order} out-of-order deliveries (per room)`);
  if (c.rejected > 0) out.push(`${r.label}: ${c.rejected} sends rejected`);
  if (c.skipped > 0) out.push(`${r.label}: ${c.skipped} paced sends skipped (sender backlog full)`);
  if (c.ack_mismatches > 0) out.push(`${r.label}: ${c.ack_mismatches} acknowledgements with a wrong request_id`);
  if (c.closed_connections > 0) out.push(`${r.label}: ${c.closed_connections} connections closed during the run`);
  if (Object.keys(c.errors).length > 0) out.push(`${r.label}: error frames ${JSON.stringify(c.errors)}`);
  return [...out, ...loadgenProblem(r.loadgen, r.label)];
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function hello(clients: LoadClient[]): Promise<void> {
  await pool(clients, 200, async (client) => {
    const reply = await client.request({ type: "hello", protocol: 2 });
    if (reply.type !== "hello_response" || reply.protocol !== 2) throw new Error(`hello: ${JSON.stringify(reply)}`);
  });
}

async function createRoom(client: LoadClient, name: string, visibility: "public" | "private"): Promise<string> {
  const reply = await client.request({ type: "room_create", name, visibility }, 60_000);
  const room = reply.room as Record<string, unknown> | undefined;
  if (reply.type !== "room_response" || typeof room?.id !== "string") {
    throw new Error(`room_create ${name}: ${JSON.stringify(reply)}`);
  }
  return room.id;
}

async function joinRoom(client: LoadClient, room: string): Promise<void> {
  const reply = await client.request({ type: "room_join", room }, 60_000);
  if (reply.type !== "room_response") throw new Error(`room_join ${room}: ${JSON.stringify(reply)}`);
}

export async function rooms(ctx: BenchContext): Promise<ScenarioReport> {
  const n = ctx.quick ? 200 : 1000;
  const groups = n / ROOM_SIZE;
  const params = {
    connections: n,
    room_size: ROOM_SIZE,
    rooms_per_user: 2,
    fanout_rooms: 2 * groups,
    fanout_senders: FANOUT_SENDERS,
    room_rate_per_s: ROOM_RATE,
    lobby_rate_per_s: (ROOM_RATE * ROOM_SIZE) / n,
    fanout_max_unacked: FANOUT_MAX_UNACKED,
    ingest_senders: INGEST_SENDERS,
    ingest_rooms: INGEST_ROOMS,
    ingest_window: INGEST_WINDOW,
    list_rooms: LIST_ROOMS,
    message_chars: 100,
    rounds: ctx.quick ? 2 : 3,
    round_s: ctx.quick ? 1.5 : 3,
    warmup_s: ctx.quick ? 0.5 : 1,
  };
  const schedule = { rounds: params.rounds, warmupS: params.warmup_s, roundS: params.round_s };
  const server = await startChatServer(ctx, {
    MAX_ROOMS_PER_USER: String(LIST_ROOMS + 100),
    ROOM_LIMIT_PER_MIN: "0",
    RATE_LIMIT_PER_SEC: "0",
  });
  const sets: LoadClient[][] = [];
  try {
    // 1. fan-out
    const names = usernames("room", n);
    await registerUsers(server.port, names);
    const clients = await connectLoggedIn(server.port, n, { usernames: names });
    sets.push(clients);
    await hello(clients);
    const members = new Map<string, Set<number>>();
    const owners = new Map<string, number>();
    const roomA: string[] = new Array(groups);
    const roomB: string[] = new Array(groups);
    let made = 0;
    await pool(Array.from({ length: 2 * groups }, (_, k) => k), 50, async (k) => {
      const g = k % groups;
      const isA = k < groups;
      const owner = isA ? g * ROOM_SIZE : g;
      const id = await createRoom(clients[owner], `rb_${Deno.pid}_${isA ? "a" : "b"}${g}`, "public");
      (isA ? roomA : roomB)[g] = id;
      const set = new Set<number>();
      for (let i = 0; i < n; i++) if (isA ? Math.floor(i / ROOM_SIZE) === g : i % groups === g) set.add(i);
      members.set(id, set);
      owners.set(id, owner);
      progress(`  rooms: created ${++made}/${2 * groups}`);
    });
    const joins: [number, string][] = [];
    for (const [room, set] of members) {
      for (const i of set) if (i !== owners.get(room)) joins.push([i, room]);
    }
    let joined = 0;
    await pool(joins, 100, async ([i, room]) => {
      await joinRoom(clients[i], room);
      if (++joined % 100 === 0 || joined === joins.length) progress(`  rooms: joined ${joined}/${joins.length}`);
    });
    await new Promise((resolve) => setTimeout(resolve, 1000)); // membership pushes settle
    const step = Math.floor(n / FANOUT_SENDERS);
    const senders = Array.from({ length: FANOUT_SENDERS }, (_, p) => p * step);
    members.set(LOBBY, new Set(clients.map((_, i) => i)));
    const common = { clients, senders, members, messageChars: params.message_chars, maxUnacked: FANOUT_MAX_UNACKED };
    const [roomFan, lobbyFan] = await interleave(
      [
        new RoomTraffic({
          ...common,
          label: "fan-out in rooms",
          roomsOf: senders.map((i) => [roomA[Math.floor(i / ROOM_SIZE)], roomB[i % groups]]),
          ratePerSec: params.room_rate_per_s,
        }),
        new RoomTraffic({
          ...common,
          label: "fan-out in the lobby",
          roomsOf: senders.map(() => [LOBBY]),
          ratePerSec: params.lobby_rate_per_s,
        }),
      ],
      server,
      ctx.db.backendPattern,
      schedule,
    );
    closeAll(clients);
    sets.length = 0;
    // Messages per database transaction (rows committed together share xmin).
    const batching = async (sql: string, param: string[]) => {
      if (ctx.db.kind !== "postgres") return null;
      const row = (await ctx.db.query(sql, [param]))[0];
      return { messages: Number(row.messages), batches: Number(row.batches) };
    };
    const ROOM_BATCHES = `SELECT count(*)::int AS messages, count(DISTINCT xmin::text)::int AS batches
      FROM chat_room_events WHERE kind = 'message' AND room_id = ANY($1::text[])`;
    const LOBBY_BATCHES = `SELECT count(*)::int AS messages, count(DISTINCT m.xmin::text)::int AS batches
      FROM messages m JOIN users u ON u.id = m.sender_id WHERE u.username = ANY($1::text[])`;
    const batchesFan = {
      rooms: await batching(ROOM_BATCHES, [...roomA, ...roomB]),
      lobby: await batching(LOBBY_BATCHES, names),
    };

    // 2. ingest
    const inNames = usernames("roomin", INGEST_SENDERS);
    await registerUsers(server.port, inNames);
    const inClients = await connectLoggedIn(server.port, INGEST_SENDERS, { usernames: inNames });
    sets.push(inClients);
    await hello(inClients);
    // Two sets of 100 rooms: one per arm, so that each arm's batches can be counted apart.
    const allInRooms: string[] = new Array(2 * INGEST_ROOMS);
    await pool(Array.from({ length: 2 * INGEST_ROOMS }, (_, k) => k), 20, async (k) => {
      allInRooms[k] = await createRoom(inClients[0], `ri_${Deno.pid}_${k}`, "public");
      for (let i = 1; i < INGEST_SENDERS; i++) await joinRoom(inClients[i], allInRooms[k]);
      progress(`  ingest rooms: ${k + 1}/${2 * INGEST_ROOMS}`);
    });
    const inRooms = allInRooms.slice(0, INGEST_ROOMS);
    const runRooms = allInRooms.slice(INGEST_ROOMS);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const everyone = new Set(inClients.map((_, i) => i));
    const inMembers = new Map<string, Set<number>>([
      [LOBBY, everyone],
      ...allInRooms.map((r) => [r, everyone] as const),
    ]);
    const inSenders = inClients.map((_, i) => i);
    const inCommon = {
      clients: inClients,
      senders: inSenders,
      members: inMembers,
      messageChars: params.message_chars,
      window: INGEST_WINDOW,
    };
    const spread = (set: string[]) =>
      inSenders.map((s) => set.map((_, k) => set[(k + s * (INGEST_ROOMS / INGEST_SENDERS)) % INGEST_ROOMS]));
    const [roomIn, lobbyIn, runIn] = await interleave(
      [
        new RoomTraffic({
          ...inCommon,
          label: "ingest over 100 rooms",
          roomsOf: spread(inRooms),
        }),
        new RoomTraffic({ ...inCommon, label: "ingest in the lobby", roomsOf: inSenders.map(() => [LOBBY]) }),
        new RoomTraffic({
          ...inCommon,
          label: `ingest over 100 rooms, ${INGEST_WINDOW} in a row per room`,
          roomsOf: spread(runRooms),
          runLength: INGEST_WINDOW,
        }),
      ],
      server,
      ctx.db.backendPattern,
      schedule,
    );
    closeAll(inClients);
    sets.length = 0;
    const batchesIn = {
      rooms: await batching(ROOM_BATCHES, inRooms),
      lobby: await batching(LOBBY_BATCHES, inNames),
      rooms_in_runs: await batching(ROOM_BATCHES, runRooms),
    };
    const perBatch = (b: { messages: number; batches: number } | null) =>
      b === null ? "-" : fmt(b.messages / Math.max(1, b.batches));

    // 3. room_list for a user in 1,000 rooms
    const [listName] = usernames("roomlist", 1);
    await registerUsers(server.port, [listName]);
    const [lister] = await connectLoggedIn(server.port, 1, { usernames: [listName] });
    sets.push([lister]);
    await hello([lister]);
    let created = 0;
    await pool(Array.from({ length: LIST_ROOMS }, (_, k) => k), 20, async (k) => {
      await createRoom(lister, `rl_${Deno.pid}_${k}`, "private");
      if (++created % 100 === 0) progress(`  room_list: rooms created ${created}/${LIST_ROOMS}`);
    });
    const listLatency = new Histogram();
    let listed = -1;
    let listBytes = 0;
    for (let i = 0; i < 5; i++) await lister.request({ type: "room_list", scope: "joined" });
    const t0 = performance.now();
    let requests = 0;
    while (requests < LIST_MAX_REQUESTS && performance.now() - t0 < LIST_MAX_S * 1000) {
      const start = performance.now();
      const reply = await lister.request({ type: "room_list", scope: "joined" });
      listLatency.record((performance.now() - start) * 1000);
      requests++;
      if (reply.type !== "rooms_response" || !Array.isArray(reply.rooms)) {
        throw new Error(`room_list: ${JSON.stringify(reply).slice(0, 300)}`);
      }
      listed = reply.rooms.length;
      if (requests === 1) listBytes = JSON.stringify(reply).length;
      if (requests % 20 === 0) progress(`  room_list: ${requests} requests`);
    }
    const list = listLatency.summary();

    // 4. The lobby's ingest again, while the server also follows the lister's rooms: every room
    // the server follows must cost nothing while it is quiet.
    const again = await connectLoggedIn(server.port, INGEST_SENDERS, { usernames: inNames });
    sets.push(again);
    await hello(again);
    const [lobbyFollowing] = await interleave(
      [
        new RoomTraffic({
          ...inCommon,
          clients: again,
          label: `ingest in the lobby, ${LIST_ROOMS} more rooms followed`,
          roomsOf: inSenders.map(() => [LOBBY]),
        }),
      ],
      server,
      ctx.db.backendPattern,
      schedule,
    );
    closeAll(again);
    closeAll([lister]);
    sets.length = 0;

    const cpuRatio = ratioOf(roomFan.server_cpu_ms_per_1000_deliveries, lobbyFan.server_cpu_ms_per_1000_deliveries);
    const ingestRatio = ratioOf(roomIn.messages_per_s, lobbyIn.messages_per_s);
    const dbRatio = ratioOf(roomIn.database_cpu_ms_per_message, lobbyIn.database_cpu_ms_per_message);
    const followingRatio = ratioOf(lobbyFollowing.messages_per_s, lobbyIn.messages_per_s);
    const rc = roomFan.counts;
    const targets: Target[] = [
      {
        name: "rooms fan-out server CPU per delivery vs the lobby's",
        target: "<= 1.2x",
        measured: `${fmt(roomFan.server_cpu_ms_per_1000_deliveries)} vs ${
          fmt(lobbyFan.server_cpu_ms_per_1000_deliveries)
        } ms/1000 (${ratioText(cpuRatio)})`,
        ratio: cpuRatio === null ? null : round(cpuRatio, 3),
        pass: cpuRatio !== null && cpuRatio <= 1.2,
      },
      {
        name: "rooms fan-out missed / wrong-recipient",
        target: "0 / 0",
        measured: `${rc.missed} / ${rc.wrong_recipient} (duplicates ${rc.duplicates}, out of order ${rc.out_of_order})`,
        ratio: null,
        pass: rc.missed === 0 && rc.wrong_recipient === 0 && rc.duplicates === 0 && rc.out_of_order === 0 &&
          roomFan.drained,
      },
      {
        name: "ingest over 100 rooms vs the lobby (messages/s)",
        target: ">= 1.0x",
        measured: `${fmt(roomIn.messages_per_s)} vs ${fmt(lobbyIn.messages_per_s)} msg/s (${ratioText(ingestRatio)})`,
        ratio: ingestRatio === null ? null : round(ingestRatio, 3),
        pass: ingestRatio !== null && ingestRatio >= 1.0,
      },
      {
        name: `room_list p99 for a user in ${LIST_ROOMS} rooms`,
        target: "<= 20 ms",
        measured: `p50 ${fmt(list.p50_ms)} / p99 ${fmt(list.p99_ms)} ms (${listed} rooms listed)`,
        ratio: list.p99_ms,
        pass: list.p99_ms !== null && list.p99_ms <= 20,
      },
      {
        name: `lobby ingest with ${LIST_ROOMS} more quiet rooms followed vs before`,
        target: "info",
        measured: `${fmt(lobbyFollowing.messages_per_s)} vs ${fmt(lobbyIn.messages_per_s)} msg/s (${
          ratioText(followingRatio)
        })`,
        ratio: followingRatio === null ? null : round(followingRatio, 3),
        pass: null,
      },
    ];
    const rows: Row[] = [
      ["1. fan-out: in rooms vs in the lobby", "rooms", "lobby", "ratio"],
      [
        "messages/s (acknowledged)",
        fmt(roomFan.messages_per_s),
        fmt(lobbyFan.messages_per_s),
        ratioText(ratioOf(roomFan.messages_per_s, lobbyFan.messages_per_s)),
      ],
      [
        "deliveries/s",
        fmt(roomFan.deliveries_per_s),
        fmt(lobbyFan.deliveries_per_s),
        ratioText(ratioOf(roomFan.deliveries_per_s, lobbyFan.deliveries_per_s)),
      ],
      ["deliveries per message", fmt(roomFan.deliveries_per_message), fmt(lobbyFan.deliveries_per_message), ""],
      [
        "server CPU ms per 1,000 deliveries",
        fmt(roomFan.server_cpu_ms_per_1000_deliveries),
        fmt(lobbyFan.server_cpu_ms_per_1000_deliveries),
        ratioText(cpuRatio),
      ],
      [
        "server CPU ms per message",
        fmt(roomFan.server_cpu_ms_per_message),
        fmt(lobbyFan.server_cpu_ms_per_message),
        ratioText(ratioOf(roomFan.server_cpu_ms_per_message, lobbyFan.server_cpu_ms_per_message)),
      ],
      [
        "database backends' CPU ms per message",
        fmt(roomFan.database_cpu_ms_per_message),
        fmt(lobbyFan.database_cpu_ms_per_message),
        "",
      ],
      ["messages per database transaction", perBatch(batchesFan.rooms), perBatch(batchesFan.lobby), ""],
      ["latency p50 (ms)", fmt(roomFan.latency.p50_ms), fmt(lobbyFan.latency.p50_ms), ""],
      ["latency p99 (ms)", fmt(roomFan.latency.p99_ms), fmt(lobbyFan.latency.p99_ms), ""],
      [
        "missed / wrong-recipient",
        `${rc.missed} / ${rc.wrong_recipient}`,
        `${lobbyFan.counts.missed} / ${lobbyFan.counts.wrong_recipient}`,
        "",
      ],
      [
        "duplicates / out of order",
        `${rc.duplicates} / ${rc.out_of_order}`,
        `${lobbyFan.counts.duplicates} / ${lobbyFan.counts.out_of_order}`,
        "",
      ],
      ["load generator cores", fmt(roomFan.loadgen.cores), fmt(lobbyFan.loadgen.cores), ""],
      ["2. ingest: over 100 rooms vs in the lobby", "rooms", "lobby", "ratio"],
      ["messages/s (acknowledged)", fmt(roomIn.messages_per_s), fmt(lobbyIn.messages_per_s), ratioText(ingestRatio)],
      [
        "database backends' CPU ms per message",
        fmt(roomIn.database_cpu_ms_per_message),
        fmt(lobbyIn.database_cpu_ms_per_message),
        ratioText(dbRatio),
      ],
      [
        "server CPU ms per message",
        fmt(roomIn.server_cpu_ms_per_message),
        fmt(lobbyIn.server_cpu_ms_per_message),
        ratioText(ratioOf(roomIn.server_cpu_ms_per_message, lobbyIn.server_cpu_ms_per_message)),
      ],
      ["messages per database transaction", perBatch(batchesIn.rooms), perBatch(batchesIn.lobby), ""],
      ["ack latency p50 (ms)", fmt(roomIn.ack_latency.p50_ms), fmt(lobbyIn.ack_latency.p50_ms), ""],
      ["ack latency p99 (ms)", fmt(roomIn.ack_latency.p99_ms), fmt(lobbyIn.ack_latency.p99_ms), ""],
      [
        "missed / wrong-recipient",
        `${roomIn.counts.missed} / ${roomIn.counts.wrong_recipient}`,
        `${lobbyIn.counts.missed} / ${lobbyIn.counts.wrong_recipient}`,
        "",
      ],
      [
        `  info: over 100 rooms, ${INGEST_WINDOW} in a row per room: messages/s`,
        fmt(runIn.messages_per_s),
        fmt(lobbyIn.messages_per_s),
        ratioText(ratioOf(runIn.messages_per_s, lobbyIn.messages_per_s)),
      ],
      [
        "  info: same, database backends' CPU ms per message",
        fmt(runIn.database_cpu_ms_per_message),
        fmt(lobbyIn.database_cpu_ms_per_message),
        ratioText(ratioOf(runIn.database_cpu_ms_per_message, lobbyIn.database_cpu_ms_per_message)),
      ],
      [
        "  info: same, messages per database transaction",
        perBatch(batchesIn.rooms_in_runs),
        perBatch(batchesIn.lobby),
        "",
      ],
      [
        "  info: same, missed / wrong-recipient",
        `${runIn.counts.missed} / ${runIn.counts.wrong_recipient}`,
        "",
        "",
      ],
      [`3. room_list, user in ${LIST_ROOMS} rooms (${requests} requests)`, "", "", ""],
      ["room_list p50 / p99 / max (ms)", `${fmt(list.p50_ms)} / ${fmt(list.p99_ms)} / ${fmt(list.max_ms)}`, "", ""],
      ["rooms in the reply / reply bytes", `${listed} / ${listBytes}`, "", ""],
      [`4. lobby ingest: ${LIST_ROOMS} more quiet rooms followed vs part 2`, "now", "part 2", "ratio"],
      [
        "messages/s (acknowledged)",
        fmt(lobbyFollowing.messages_per_s),
        fmt(lobbyIn.messages_per_s),
        ratioText(followingRatio),
      ],
      [
        "server CPU ms per message",
        fmt(lobbyFollowing.server_cpu_ms_per_message),
        fmt(lobbyIn.server_cpu_ms_per_message),
        ratioText(ratioOf(lobbyFollowing.server_cpu_ms_per_message, lobbyIn.server_cpu_ms_per_message)),
      ],
    ];
    return {
      scenario: "rooms",
      params,
      results: {
        fanout_rooms: roomFan,
        fanout_batching: batchesFan,
        ingest_rooms: roomIn,
        ingest_rooms_in_runs: runIn,
        ingest_batching: batchesIn,
        room_list: { requests, rooms_listed: listed, reply_bytes: listBytes, latency: list },
        ingest_lobby_following_more_rooms: lobbyFollowing,
      },
      ceiling: {
        kind: "the same connections and senders in the lobby, same server, alternating rounds",
        fanout_lobby: lobbyFan,
        ingest_lobby: lobbyIn,
      },
      loadgen: roomFan.loadgen,
      targets,
      problems: [
        ...serverProblems(server),
        ...armProblems(roomFan),
        ...armProblems(lobbyFan),
        ...armProblems(roomIn),
        ...armProblems(lobbyIn),
        ...armProblems(runIn),
        ...armProblems(lobbyFollowing),
      ],
      rows,
    };
  } finally {
    for (const set of sets) closeAll(set);
    await server.stop();
  }
}
