// The v2 room requests: create, join, leave, invite, kick, DMs, the room list, members, a room's
// history and read markers. Every request is decided by room_access.ts on the facts read for it;
// a membership change is then made under the room's lock (a change that raced another is decided
// again), and its event reaches clients through the stream like every other.

import { ChatError, unavailable } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { TokenBuckets } from "../core/rate_limit.ts";
import { databaseErrorFields } from "../store/db.ts";
import type { MessageStream, RoomEvent } from "../store/message_stream.ts";
import type { ChangeFunction, RoomChange, RoomFacts, RoomStore } from "../store/rooms.ts";
import type { Frame, Reply } from "../wire/protocol.ts";
import {
  choiceOf,
  LOBBY,
  MAX_ROOM_NAME_LENGTH,
  optionalTextOf,
  pageLimitOf,
  requiredRoomOf,
  roomNameOf,
  targetUserOf,
} from "../wire/room_fields.ts";
import { authorize, authorizeLobby, type RoomAction } from "./room_access.ts";
import type { User } from "./session.ts";

export interface RoomLimits {
  maxRoomsPerUser: number;
  maxRoomMembers: number;
  roomLimitPerMin: number;
  roomLimitBurst: number;
}

/** A change that keeps racing others is given up after this many tries (answered unavailable). */
const MAX_CHANGE_TRIES = 5;
const DEFAULT_PUBLIC_PAGE = 50;
const MAX_PUBLIC_PAGE = 100;
const DEFAULT_MEMBERS_PAGE = 100;
const MAX_MEMBERS_PAGE = 1000;

/** The other servers' online users, for members' `online`. */
export type OnlineUsers = () => Promise<ReadonlySet<string>>;

export class RoomService {
  readonly #store: RoomStore;
  readonly #stream: MessageStream;
  readonly #log: Logger;
  readonly #limits: RoomLimits;
  readonly #online: OnlineUsers;
  /** room_create, room_invite and dm_open together, per user. */
  readonly #rate: TokenBuckets;

  constructor(store: RoomStore, stream: MessageStream, log: Logger, limits: RoomLimits, online: OnlineUsers) {
    this.#store = store;
    this.#stream = stream;
    this.#log = log;
    this.#limits = limits;
    this.#online = online;
    this.#rate = new TokenBuckets(limits.roomLimitPerMin / 60, limits.roomLimitBurst);
  }

  get limits(): RoomLimits {
    return this.#limits;
  }

  async create(user: User, frame: Frame): Promise<Reply> {
    const name = roomNameOf(frame);
    const visibility = choiceOf(frame, "visibility", ["public", "private"] as const);
    const history = choiceOf(frame, "history", ["shared", "joined"] as const, "shared");
    this.#takeRoomToken(user);
    const id = newRoomId("r");
    const changes = await this.#change("chat_room_create", [
      id,
      visibility,
      name,
      history,
      user.id,
      user.username,
      this.#limits.maxRoomsPerUser,
    ]);
    await this.#expect(changes, "create");
    this.#log.info("room created", { room: id, username: user.username, visibility });
    return { type: "room_response", room: roomObject(await this.#facts(id, user)) };
  }

  async join(user: User, frame: Frame): Promise<Reply> {
    const room = requiredRoomOf(frame);
    if (room === LOBBY) return { type: "room_response", room: await this.#lobbyObject(user) };
    for (let tries = 0; tries < MAX_CHANGE_TRIES; tries++) {
      const facts = await this.#facts(room, user);
      authorize(facts, "join");
      if (facts.role === "owner" || facts.role === "member") return { type: "room_response", room: roomObject(facts) };
      const changes = await this.#change("chat_room_join", [
        room,
        user.id,
        user.username,
        facts.role ?? "",
        this.#limits.maxRoomsPerUser,
        this.#limits.maxRoomMembers,
      ]);
      if (changes[0]?.status === "changed") continue;
      await this.#expect(changes, "join");
      return { type: "room_response", room: roomObject(await this.#facts(room, user)) };
    }
    throw unavailable();
  }

  async leave(user: User, frame: Frame): Promise<Reply> {
    const room = requiredRoomOf(frame);
    if (room === LOBBY) authorizeLobby("leave");
    await this.#retrying(
      room,
      user,
      "leave",
      (facts) => this.#change("chat_room_leave", [room, user.id, user.username, facts.role]),
    );
    return { type: "room_left", room };
  }

  async invite(user: User, frame: Frame): Promise<Reply> {
    const room = requiredRoomOf(frame);
    const name = targetUserOf(frame);
    if (room === LOBBY) authorizeLobby("invite");
    authorize(await this.#facts(room, user), "invite");
    const target = await this.#user(name);
    this.#takeRoomToken(user);
    await this.#retrying(room, user, "invite", async (facts) => {
      const theirs = await this.#facts(room, target);
      if (theirs?.role) return [{ ...NO_CHANGE, status: "noop" }];
      return this.#change("chat_room_invite", [
        room,
        user.id,
        user.username,
        facts.role,
        target.id,
        target.username,
        this.#limits.maxRoomsPerUser,
        this.#limits.maxRoomMembers,
      ]);
    });
    return { type: "invite_response", room, user: target.username };
  }

  async kick(user: User, frame: Frame): Promise<Reply> {
    const room = requiredRoomOf(frame);
    const name = targetUserOf(frame);
    if (room === LOBBY) authorizeLobby("kick");
    authorize(await this.#facts(room, user), "kick");
    const target = await this.#user(name);
    if (target.id === user.id) throw new ChatError("not_allowed", "To leave a room, use room_leave");
    await this.#retrying(
      room,
      user,
      "kick",
      (facts) => this.#change("chat_room_kick", [room, user.id, user.username, facts.role, target.id, target.username]),
    );
    return { type: "kick_response", room, user: target.username };
  }

  async dmOpen(user: User, frame: Frame): Promise<Reply> {
    const peer = await this.#user(targetUserOf(frame));
    if (peer.id === user.id) throw new ChatError("user_not_found", "No such user");
    this.#takeRoomToken(user);
    const changes = await this.#change("chat_dm_open", [
      newRoomId("d"),
      user.id,
      user.username,
      peer.id,
      peer.username,
      this.#limits.maxRoomsPerUser,
    ]);
    const status = changes[0]?.status;
    const room = status === "exists" ? changes[0].roomId! : (await this.#expect(changes, "dm_open")).roomId!;
    return { type: "room_response", room: roomObject(await this.#facts(room, user)) };
  }

  async list(user: User, frame: Frame): Promise<Reply> {
    const scope = choiceOf(frame, "scope", ["joined", "public"] as const, "joined");
    const after = optionalTextOf(frame, "after", 200);
    try {
      if (scope === "public") {
        const query = optionalTextOf(frame, "query", MAX_ROOM_NAME_LENGTH) ?? "";
        const limit = pageLimitOf(frame, DEFAULT_PUBLIC_PAGE, MAX_PUBLIC_PAGE);
        const rooms = await this.#store.publicRooms(user.id, query.trim(), after ?? "", limit + 1);
        return page(rooms.slice(0, limit).map(roomObject), rooms.length > limit, rooms[limit - 1]?.name.toLowerCase());
      }
      const limit = pageLimitOf(frame, this.#limits.maxRoomsPerUser, this.#limits.maxRoomsPerUser);
      const rooms = await this.#store.joined(user.id, after ?? "", limit + 1);
      const shown = rooms.slice(0, limit).map(roomObject);
      if (after === undefined) shown.unshift(await this.#lobbyObject(user));
      return page(shown, rooms.length > limit, rooms[limit - 1]?.id);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async members(user: User, frame: Frame, lobbyUsers: () => Promise<string[]>): Promise<Reply> {
    const room = requiredRoomOf(frame);
    const limit = pageLimitOf(frame, DEFAULT_MEMBERS_PAGE, MAX_MEMBERS_PAGE);
    const after = optionalTextOf(frame, "after", 50)?.toLowerCase() ?? "";
    if (room === LOBBY) {
      // Everyone is in the lobby: its members page lists who is online.
      const names = (await lobbyUsers()).filter((n) => n.toLowerCase() > after).slice(0, limit + 1);
      const members = names.slice(0, limit).map((username) => ({ username, role: "member", online: true }));
      return { type: "members_response", room, members, ...nextOf(names.length > limit, names[limit - 1]) };
    }
    authorize(await this.#facts(room, user), "read");
    try {
      const rows = await this.#store.members(room, after, limit + 1);
      const online = await this.#online();
      const members = rows.slice(0, limit).map((m) => ({ ...m, online: online.has(m.username) }));
      return { type: "members_response", room, members, ...nextOf(rows.length > limit, rows[limit - 1]?.username) };
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  /** The facts of a room the user may do `action` in (throws the contract's error otherwise). */
  async authorized(user: User, room: string, action: RoomAction): Promise<RoomFacts> {
    const facts = await this.#facts(room, user);
    authorize(facts, action);
    return facts;
  }

  /** A room's events in (after, before), as get_history answers them (with history:"joined"'s rule). */
  async history(
    user: User,
    room: string,
    query: { limit: number; before: number | undefined; after: number | undefined },
  ): Promise<RoomEvent[]> {
    const facts = await this.authorized(user, room, "read");
    let after = query.after ?? 0;
    if (facts.history === "joined") {
      // Each member sees the room from their latest join on; a visitor of a public room, nothing.
      if (facts.joinedId === null) return [];
      after = Math.max(after, facts.joinedId - 1);
    }
    try {
      return await this.#store.history(room, after, query.before, query.limit, query.after !== undefined);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  /** Moves the user's read marker in `room` forward to `id`; the marker and unread count after. */
  async markRead(user: User, room: string, id: number): Promise<{ readId: number; unread: number }> {
    if (room !== LOBBY) await this.authorized(user, room, "post");
    try {
      return room === LOBBY ? await this.#store.markLobby(user.id, id) : await this.#store.markRoom(room, user.id, id);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  /** Decides a change on fresh facts and makes it, again while it races another change. */
  async #retrying(
    room: string,
    user: User,
    action: RoomAction,
    change: (facts: RoomFacts & { role: string }) => Promise<RoomChange[]>,
  ): Promise<void> {
    for (let tries = 0; tries < MAX_CHANGE_TRIES; tries++) {
      const facts = await this.#facts(room, user);
      authorize(facts, action);
      const changes = await change(facts as RoomFacts & { role: string });
      if (changes[0]?.status === "changed") continue;
      if (changes[0]?.status !== "noop") await this.#expect(changes, action);
      return;
    }
    throw unavailable();
  }

  /**
   * The changes of a successful call, announced to the stream (answered once this server follows
   * the room if it has to); the contract's error otherwise.
   */
  async #expect(changes: RoomChange[], what: string): Promise<RoomChange> {
    const first = changes[0];
    switch (first?.status) {
      case "ok":
        await Promise.all(changes.map((change) => this.#stream.roomCommitted(change.roomId!, eventOf(change))));
        return first;
      case "name_taken":
        throw new ChatError("name_taken", "A public room with this name exists already");
      case "limit_exceeded":
        throw new ChatError("limit_exceeded", "Too many rooms or members");
      case "not_member":
        throw new ChatError("not_member", "That user is not a member of this room");
      default:
        this.#log.error("unexpected answer to a room change", { what, status: first?.status });
        throw unavailable();
    }
  }

  async #change(fn: ChangeFunction, params: unknown[]): Promise<RoomChange[]> {
    try {
      return await this.#store.change(fn, params);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async #facts(room: string, user: { id: number }): Promise<RoomFacts> {
    try {
      return (await this.#store.facts(room, user.id))!;
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async #user(name: string): Promise<{ id: number; username: string }> {
    let found;
    try {
      found = await this.#store.user(name);
    } catch (err) {
      throw this.#unavailable(err);
    }
    if (!found) throw new ChatError("user_not_found", "No such user");
    return found;
  }

  async #lobbyObject(user: User): Promise<Reply> {
    try {
      const lobby = await this.#store.lobby(user.id);
      return {
        id: LOBBY,
        kind: "lobby",
        name: LOBBY,
        role: "member",
        members: lobby.members,
        last_id: lobby.lastId,
        read_id: lobby.readId,
        unread: lobby.unread,
        history: "shared",
      };
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  #takeRoomToken(user: User): void {
    const waitMs = this.#rate.take(String(user.id));
    if (waitMs > 0) {
      throw new ChatError("rate_limited", "Too many rooms, invitations or DMs, slow down", { retryAfterMs: waitMs });
    }
  }

  #unavailable(err: unknown): ChatError {
    if (err instanceof ChatError) return err;
    this.#log.error("database error serving a room request", databaseErrorFields(err));
    return unavailable(err);
  }
}

const NO_CHANGE: RoomChange = {
  status: "",
  roomId: null,
  id: null,
  kind: null,
  userId: null,
  username: null,
  byUsername: null,
  stamp: null,
};

/** The event a membership change appended, as the stream carries it. */
function eventOf(change: RoomChange): RoomEvent {
  return {
    id: change.id!,
    kind: change.kind as RoomEvent["kind"],
    userId: change.userId,
    username: change.username!,
    body: null,
    by: change.byUsername,
    timestamp: change.stamp!,
  };
}

/** A room as replies show it (contract v2, "rooms"). */
export function roomObject(facts: RoomFacts): Reply {
  const room: Reply = {
    id: facts.id,
    kind: facts.kind,
    name: facts.name,
    role: facts.role,
    members: facts.members,
    last_id: facts.lastId,
    read_id: facts.readId,
    unread: facts.unread,
    history: facts.history,
  };
  if (facts.kind === "dm") room.peer = facts.peer ?? null;
  return room;
}

function page(rooms: Reply[], more: boolean, last: string | undefined): Reply {
  return { type: "rooms_response", rooms, ...nextOf(more, last) };
}

function nextOf(more: boolean, last: string | undefined): { next?: string } {
  return more && last !== undefined ? { next: last } : {};
}

const ROOM_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A new room id: `kind`_ and 20 random characters of [a-z0-9] (103 bits), never guessable. */
export function newRoomId(kind: "r" | "d"): string {
  const chars: string[] = [];
  const random = new Uint8Array(40);
  while (chars.length < 20) {
    crypto.getRandomValues(random);
    // 252 = 7 × 36: values above it are skipped, so every character is equally likely.
    for (const byte of random) if (byte < 252 && chars.length < 20) chars.push(ROOM_ID_ALPHABET[byte % 36]);
  }
  return `${kind}_${chars.join("")}`;
}
