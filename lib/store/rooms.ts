// Rooms in the database: what a user is to a room, the lists and member pages, history, read
// markers, and the membership changes (schema.sql's chat_room_* functions, each one round trip
// under the room's row lock). Which request may do what is decided in lib/chat/room_access.ts.

import type { Database } from "./db.ts";
import { ROOM_EVENT_COLUMNS, type RoomEvent } from "./message_stream.ts";

export type RoomKind = "public" | "private" | "dm";
export type Role = "owner" | "member" | "invited";
export type HistoryVisibility = "shared" | "joined";

/** What one user is to one room, and the room's counters, read in one snapshot. */
export interface RoomFacts {
  id: string;
  kind: RoomKind;
  /** A DM's is its peer's username. */
  name: string;
  history: HistoryVisibility;
  lastId: number;
  /** Owners and members. */
  members: number;
  role: Role | null;
  /** The id of the user's latest join (for history:"joined"), null when not a member. */
  joinedId: number | null;
  readId: number;
  unread: number;
  /** A DM's other member. */
  peer: string | undefined;
}

/** One row a membership change appended (or its status alone). */
export interface RoomChange {
  status: string;
  roomId: string | null;
  id: number | null;
  kind: string | null;
  /** The member the event is about. */
  userId: number | null;
  username: string | null;
  byUsername: string | null;
  stamp: string | null;
}

/** A room a user has, with its counters: room_list's rows. */
export type ListedRoom = RoomFacts;

/** A user's membership, as read at login. */
export interface Membership {
  userId: number;
  roomId: string;
  /** The id of the user's latest join. */
  joinedId: number;
  /** The room's head when read. */
  lastId: number;
}

export interface MemberRow {
  username: string;
  role: Role;
}

/** Unread counts stop here: "exact up to 1000, reported as 1000 beyond". */
export const UNREAD_CAP = 1000;

const FACTS_COLUMNS = `r.id, r.kind, r.name, r.history, r.last_id, r.members, m.role, m.joined_id,
  COALESCE(m.read_id, 0) AS read_id,
  CASE WHEN m.role IN ('owner', 'member') THEN LEAST(${UNREAD_CAP}, r.messages - m.read_messages) ELSE 0 END AS unread,
  CASE WHEN r.kind = 'dm' THEN (SELECT u.username FROM chat_room_members p JOIN users u ON u.id = p.user_id
    WHERE p.room_id = r.id AND p.user_id <> $2 LIMIT 1) END AS peer`;
const FACTS_SQL = `SELECT ${FACTS_COLUMNS} FROM chat_rooms r
  LEFT JOIN chat_room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1::text`;
const JOINED_SQL = `SELECT ${FACTS_COLUMNS} FROM chat_room_members m JOIN chat_rooms r ON r.id = m.room_id
  WHERE m.user_id = $2 AND m.room_id > $1::text ORDER BY m.room_id LIMIT $3`;
const PUBLIC_SQL = `SELECT ${FACTS_COLUMNS} FROM chat_rooms r
  LEFT JOIN chat_room_members m ON m.room_id = r.id AND m.user_id = $2
  WHERE r.kind = 'public' AND (lower(r.name) COLLATE "C") LIKE $1 ESCAPE '\\' AND (lower(r.name) COLLATE "C") > $3
  ORDER BY (lower(r.name) COLLATE "C") LIMIT $4`;
const MEMBERS_SQL = `SELECT u.username, m.role FROM chat_room_members m JOIN users u ON u.id = m.user_id
  WHERE m.room_id = $1 AND m.role IN ('owner', 'member') AND (lower(u.username) COLLATE "C") > $2
  ORDER BY (lower(u.username) COLLATE "C") LIMIT $3`;
const MEMBERSHIPS_SQL = `SELECT m.user_id, m.room_id, m.joined_id, r.last_id FROM chat_room_members m
  JOIN chat_rooms r ON r.id = m.room_id WHERE m.user_id = ANY ($1::int[]) AND m.role IN ('owner', 'member')`;
const ROOM_HISTORY_SQL = `SELECT ${ROOM_EVENT_COLUMNS} FROM chat_room_events
  WHERE room_id = $1 AND id > $2::bigint AND id < $3::bigint`;
const NEWEST_EVENTS_SQL = `${ROOM_HISTORY_SQL} ORDER BY id DESC LIMIT $4`;
const OLDEST_EVENTS_SQL = `${ROOM_HISTORY_SQL} ORDER BY id ASC LIMIT $4`;
const USER_SQL = `SELECT id, username FROM users WHERE lower(username) = lower($1::text)
  ORDER BY (username = $1::text) DESC, id LIMIT 1`;
const MARK_ROOM_SQL = `WITH target AS (
    SELECT id, msg_no FROM chat_room_events WHERE room_id = $1 AND id <= $3::bigint ORDER BY id DESC LIMIT 1
  ), moved AS (
    UPDATE chat_room_members m SET read_id = t.id, read_messages = t.msg_no FROM target t
    WHERE m.room_id = $1 AND m.user_id = $2 AND m.read_id < t.id RETURNING m.read_id, m.read_messages
  )
  SELECT COALESCE(v.read_id, m.read_id) AS read_id,
    LEAST(${UNREAD_CAP}, r.messages - COALESCE(v.read_messages, m.read_messages)) AS unread
  FROM chat_room_members m JOIN chat_rooms r ON r.id = m.room_id LEFT JOIN moved v ON true
  WHERE m.room_id = $1 AND m.user_id = $2`;
const LOBBY_HEAD_SQL = `SELECT COALESCE(max(id), 0)::bigint AS id FROM messages`;
const MARK_LOBBY_SQL = `INSERT INTO chat_lobby_markers AS k (user_id, read_id)
  VALUES ($1, LEAST($2::bigint, (SELECT COALESCE(max(id), 0) FROM messages)))
  ON CONFLICT (user_id) DO UPDATE SET read_id = GREATEST(k.read_id, EXCLUDED.read_id) RETURNING read_id`;
const LOBBY_MARKER_SQL = `SELECT COALESCE((SELECT read_id FROM chat_lobby_markers WHERE user_id = $1), 0) AS read_id,
  (SELECT COALESCE(max(id), 0) FROM messages)::bigint AS last_id`;
const LOBBY_UNREAD_SQL = `SELECT count(*)::int AS unread FROM (SELECT 1 FROM messages
  WHERE id > $1::bigint AND sender_id IS DISTINCT FROM $2 ORDER BY id LIMIT ${UNREAD_CAP}) s`;
const USER_COUNT_SQL = `SELECT count(*)::int AS n FROM users`;
const READABLE_SQL = `SELECT m.room_id, CASE WHEN r.history = 'joined' THEN m.joined_id ELSE 0 END AS from_id
  FROM chat_room_members m JOIN chat_rooms r ON r.id = m.room_id
  WHERE m.user_id = $1 AND m.role IN ('owner', 'member')`;

const NO_UPPER_BOUND = "9223372036854775807";

interface FactsRow extends Record<string, unknown> {
  id: string;
  kind: RoomKind;
  name: string;
  history: HistoryVisibility;
  last_id: number | string;
  members: number;
  role: Role | null;
  joined_id: number | string | null;
  read_id: number | string;
  unread: number | string;
  peer: string | null;
}

function toFacts(row: FactsRow): RoomFacts {
  return {
    id: row.id,
    kind: row.kind,
    name: row.kind === "dm" ? row.peer ?? "" : row.name,
    history: row.history,
    lastId: Number(row.last_id),
    members: Number(row.members),
    role: row.role,
    joinedId: row.joined_id === null ? null : Number(row.joined_id),
    readId: Number(row.read_id),
    unread: Number(row.unread),
    peer: row.kind === "dm" ? row.peer ?? undefined : undefined,
  };
}

function toEvent(row: RoomEvent): RoomEvent {
  row.id = Number(row.id);
  return row;
}

/** `prefix` as a LIKE pattern that matches names starting with it (%, _ and \ taken literally). */
function prefixPattern(prefix: string): string {
  return `${prefix.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export class RoomStore {
  readonly #db: Database;
  #userCount: { n: number; at: number } | undefined;

  constructor(db: Database) {
    this.#db = db;
  }

  /** The room `roomId` as `userId` sees it, or undefined when it does not exist. */
  async facts(roomId: string, userId: number): Promise<RoomFacts | undefined> {
    const rows = await this.#db.query<FactsRow>(FACTS_SQL, [roomId, userId]);
    return rows.length === 0 ? undefined : toFacts(rows[0]);
  }

  /** The user's rooms (joined, DMs, invitations), by id, after `after`. */
  async joined(userId: number, after: string, limit: number): Promise<ListedRoom[]> {
    return (await this.#db.query<FactsRow>(JOINED_SQL, [after, userId, limit])).map(toFacts);
  }

  /** Public rooms whose name starts with `prefix`, by lower-case name, after `after` (a lower-case name). */
  async publicRooms(userId: number, prefix: string, after: string, limit: number): Promise<ListedRoom[]> {
    return (await this.#db.query<FactsRow>(PUBLIC_SQL, [prefixPattern(prefix), userId, after, limit])).map(toFacts);
  }

  /** Members (owner and members) by lower-case username, after `after`. */
  members(roomId: string, after: string, limit: number): Promise<MemberRow[]> {
    return this.#db.query<MemberRow & Record<string, unknown>>(MEMBERS_SQL, [roomId, after, limit]);
  }

  /** The rooms each of `userIds` is a member of, with the id of their latest join and the room's head. */
  async memberships(userIds: number[]): Promise<Membership[]> {
    const rows = await this.#db.query<Record<string, unknown>>(MEMBERSHIPS_SQL, [userIds]);
    return rows.map((row) => ({
      userId: Number(row.user_id),
      roomId: String(row.room_id),
      joinedId: Number(row.joined_id),
      lastId: Number(row.last_id),
    }));
  }

  /** A room's events in (after, before): the newest `limit`, or with `oldest` the oldest; ids ascending. */
  async history(roomId: string, after: number, before: number | undefined, limit: number, oldest: boolean) {
    const upper = before === undefined ? NO_UPPER_BOUND : String(before);
    const rows = await this.#db.query<RoomEvent>(oldest ? OLDEST_EVENTS_SQL : NEWEST_EVENTS_SQL, [
      roomId,
      after,
      upper,
      limit,
    ]);
    if (!oldest) rows.reverse();
    return rows.map(toEvent);
  }

  /** The rooms a user may read now (is a member of), each from the first id they may see. */
  async readableRooms(userId: number): Promise<{ room: string; fromId: number }[]> {
    const rows = await this.#db.query<{ room_id: string; from_id: number | string }>(READABLE_SQL, [userId]);
    return rows.map((row) => ({ room: row.room_id, fromId: Number(row.from_id) }));
  }

  /** The user with this name (any case), or undefined. */
  async user(username: string): Promise<{ id: number; username: string } | undefined> {
    return (await this.#db.query<{ id: number; username: string }>(USER_SQL, [username]))[0];
  }

  /** Moves a room member's marker forward to `id` (at most the room's head); the marker and unread after. */
  async markRoom(roomId: string, userId: number, id: number): Promise<{ readId: number; unread: number }> {
    const rows = await this.#db.query<{ read_id: number | string; unread: number | string }>(MARK_ROOM_SQL, [
      roomId,
      userId,
      id,
    ]);
    return { readId: Number(rows[0]?.read_id ?? 0), unread: Number(rows[0]?.unread ?? 0) };
  }

  /** Moves the user's lobby marker forward to `id` (at most the newest message); the marker and unread after. */
  async markLobby(userId: number, id: number): Promise<{ readId: number; unread: number }> {
    const readId = Number(
      (await this.#db.query<{ read_id: number | string }>(MARK_LOBBY_SQL, [userId, id]))[0].read_id,
    );
    return { readId, unread: await this.#lobbyUnread(userId, readId) };
  }

  /** The lobby as `userId` sees it. */
  async lobby(userId: number): Promise<{ lastId: number; readId: number; unread: number; members: number }> {
    const row = (await this.#db.query<{ read_id: number | string; last_id: number | string }>(LOBBY_MARKER_SQL, [
      userId,
    ]))[0];
    const readId = Number(row.read_id);
    return {
      lastId: Number(row.last_id),
      readId,
      unread: await this.#lobbyUnread(userId, readId),
      members: await this.#registeredUsers(),
    };
  }

  /** The lobby's newest id. */
  async lobbyHead(): Promise<number> {
    return Number((await this.#db.query<{ id: number | string }>(LOBBY_HEAD_SQL))[0].id);
  }

  /** A membership change: one of schema.sql's chat_room_* functions, its rows. */
  async change(fn: ChangeFunction, params: unknown[]): Promise<RoomChange[]> {
    const placeholders = params.map((_, i) => `$${i + 1}`).join(", ");
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT status, room_id, id, kind, user_id, username, by_username, stamp FROM ${fn}(${placeholders})`,
      params,
    );
    return rows.map((row) => ({
      status: String(row.status),
      roomId: row.room_id as string | null,
      id: row.id === null ? null : Number(row.id),
      kind: row.kind as string | null,
      userId: row.user_id === null ? null : Number(row.user_id),
      username: row.username as string | null,
      byUsername: row.by_username as string | null,
      stamp: row.stamp as string | null,
    }));
  }

  async #lobbyUnread(userId: number, readId: number): Promise<number> {
    return Number((await this.#db.query<{ unread: number }>(LOBBY_UNREAD_SQL, [readId, userId]))[0].unread);
  }

  /** Registered users, counted at most once a minute (the lobby's member count). */
  async #registeredUsers(): Promise<number> {
    const now = performance.now();
    if (!this.#userCount || now - this.#userCount.at > 60_000) {
      this.#userCount = { n: Number((await this.#db.query<{ n: number }>(USER_COUNT_SQL))[0].n), at: now };
    }
    return this.#userCount.n;
  }
}

export type ChangeFunction =
  | "chat_room_create"
  | "chat_room_join"
  | "chat_room_leave"
  | "chat_room_invite"
  | "chat_room_kick"
  | "chat_dm_open";
