// Rooms and direct messages (protocol v2) as the client sees them: checks on the frames the
// server sends about rooms, each room's events delivered once and in id order across reconnects,
// and the names of the rooms the user is in. Pure: the session feeds it frames.

import { type Frame, isFrame } from "../lib/wire/protocol.ts";

/** What joinedRoom needs of a session. */
interface Requester {
  readonly roomsEnabled: boolean;
  request(frame: Frame): Promise<Frame>;
}

export const LOBBY = "lobby";

/** A room's event as pushed (`new_message`, `member_event`) and as listed by a room's history. */
export interface RoomEvent {
  readonly room: string;
  readonly id: number;
  readonly kind: "message" | "join" | "leave" | "invite" | "kick";
  /** The sender of a message, or the member a membership event is about. */
  readonly user: string;
  /** A message's text. */
  readonly message: string | undefined;
  /** Who made a membership event. */
  readonly by: string | undefined;
  readonly timestamp: string;
}

/** A room as `room_list` and `room_response` describe it. */
export interface RoomInfo {
  readonly id: string;
  readonly kind: string;
  readonly name: string;
  readonly role: string | null;
  readonly unread: number;
  readonly lastId: number;
}

const MEMBERSHIPS = new Set(["join", "leave", "invite", "kick"]);

/** The room event in a frame (a push, or a room history's item); undefined for the lobby or a malformed frame. */
export function toRoomEvent(value: unknown, room?: string): RoomEvent | undefined {
  if (!isFrame(value)) return undefined;
  const where = typeof value.room === "string" ? value.room : room;
  const { id, timestamp } = value;
  if (where === undefined || where === LOBBY || typeof id !== "number" || !Number.isSafeInteger(id)) return undefined;
  if (typeof timestamp !== "string") return undefined;
  if (value.type === "new_message" && typeof value.sender === "string" && typeof value.message === "string") {
    return { room: where, id, kind: "message", user: value.sender, message: value.message, by: undefined, timestamp };
  }
  if (
    value.type === "member_event" && typeof value.user === "string" && typeof value.membership === "string" &&
    MEMBERSHIPS.has(value.membership)
  ) {
    return {
      room: where,
      id,
      kind: value.membership as RoomEvent["kind"],
      user: value.user,
      message: undefined,
      by: typeof value.by === "string" ? value.by : undefined,
      timestamp,
    };
  }
  return undefined;
}

/** The room object of a `room_response` or a `room_list` entry. */
export function toRoomInfo(value: unknown): RoomInfo | undefined {
  if (!isFrame(value) || typeof value.id !== "string" || typeof value.name !== "string") return undefined;
  return {
    id: value.id,
    kind: typeof value.kind === "string" ? value.kind : "public",
    name: value.name,
    role: typeof value.role === "string" ? value.role : null,
    unread: typeof value.unread === "number" ? value.unread : 0,
    lastId: typeof value.last_id === "number" ? value.last_id : 0,
  };
}

/** The rooms of a `rooms_response`, skipping malformed entries. */
export function roomList(frame: Frame): RoomInfo[] {
  return Array.isArray(frame.rooms) ? frame.rooms.map(toRoomInfo).filter((r): r is RoomInfo => r !== undefined) : [];
}

/**
 * Each room's events in id order, each once: live pushes while caught up; held while a reconnect
 * catches up (the pushes of a fresh connection may start after what was missed), then merged.
 */
export class RoomFeeds {
  /** The last event delivered, by room. */
  readonly #last = new Map<string, number>();
  #held: RoomEvent[] | undefined;

  /** Rooms with something delivered, and how far. */
  get positions(): ReadonlyMap<string, number> {
    return this.#last;
  }

  /** Starts delivering `room` after `id` (what came before is history, not news). */
  startAfter(room: string, id: number): void {
    if (!this.#last.has(room)) this.#last.set(room, id);
  }

  /** Holds live events until release(): a reconnect is catching up. */
  hold(): void {
    this.#held ??= [];
  }

  /** A live event: the events ready to deliver now (none while holding, or for one delivered already). */
  live(event: RoomEvent): RoomEvent[] {
    if (this.#held) {
      this.#held.push(event);
      return [];
    }
    return this.#accept(event) ? [event] : [];
  }

  /** Events read from a room's history (ids ascending): the ones not delivered yet. */
  page(events: RoomEvent[]): RoomEvent[] {
    return events.filter((event) => this.#accept(event));
  }

  /** Ends holding: the held events not delivered yet, in arrival order. */
  release(): RoomEvent[] {
    const held = this.#held ?? [];
    this.#held = undefined;
    return held.filter((event) => this.#accept(event));
  }

  #accept(event: RoomEvent): boolean {
    const last = this.#last.get(event.room) ?? 0;
    if (event.id <= last) return false;
    this.#last.set(event.room, event.id);
    return true;
  }
}

/** A room's name for people: `#name` for rooms, `@peer` for DMs, `lobby`. */
export function roomLabel(info: RoomInfo | undefined, id: string): string {
  if (id === LOBBY) return "lobby";
  if (!info) return id;
  return info.kind === "dm" ? `@${info.name}` : `#${info.name}`;
}

/**
 * The room `query` names among `rooms`: its id, its name (case-insensitively; `#` and `@`
 * prefixes allowed), or undefined.
 */
export function findRoom(rooms: Iterable<RoomInfo>, query: string): RoomInfo | undefined {
  const wanted = query.replace(/^[#@]/, "").toLowerCase();
  let byName: RoomInfo | undefined;
  for (const room of rooms) {
    if (room.id === query) return room;
    if (!byName && room.name.toLowerCase() === wanted) byName = room;
  }
  return byName;
}

/** The id of the room or DM `query` names among the user's (not invitations); "lobby" for the lobby. */
export async function joinedRoom(session: Requester, query: string): Promise<string | undefined> {
  if (query.toLowerCase() === LOBBY) return LOBBY;
  if (!session.roomsEnabled) return undefined;
  const rooms = roomList(await session.request({ type: "room_list", scope: "joined" }));
  const room = findRoom(rooms.filter((r) => r.role !== "invited" && r.id !== LOBBY), query);
  return room?.id;
}
