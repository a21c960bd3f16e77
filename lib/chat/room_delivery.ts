// Who gets a room's events on this server, decided by the stream itself: for every followed room,
// the local users who are members as of the last event delivered, updated by each membership
// event as it passes. A message goes to its room's members' v2 connections; a membership event
// also to the user it is about (a kicked user gets the kick, and nothing after it).
//
// The server follows every room a logged-in local user is a member of: their memberships are read
// when they come online, and a membership event about them in a room not followed yet (a join or
// invitation through another server) starts following it from just before that event.

import type { Logger } from "../core/log.ts";
import { databaseErrorFields } from "../store/db.ts";
import type { MessageStream, RoomEvent } from "../store/message_stream.ts";
import type { RoomStore } from "../store/rooms.ts";
import {
  encodeLines,
  needsOwnPieces,
  type PendingReply,
  personalPieces,
  sendRemaining,
  takeRunReplies,
} from "./fan_out.ts";
import type { Hub } from "./hub.ts";
import type { Session, User } from "./session.ts";

/** How long a failed read of a user's memberships waits before it is tried again. */
const LOAD_RETRY_MS = 1000;

/** A membership event about a user whose memberships are still being read. */
interface Notice {
  room: string;
  id: number;
}

export class RoomDelivery {
  readonly #hub: Hub;
  readonly #store: RoomStore;
  readonly #log: Logger;
  #stream: MessageStream | undefined;
  /** Followed rooms: the local users who are members as of the stream's position. */
  readonly #members = new Map<string, Set<number>>();
  /** Users online whose memberships are being read, with the notices about them meanwhile. */
  readonly #loading = new Map<number, Notice[]>();
  #loadScheduled = false;
  #loadTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(hub: Hub, store: RoomStore, log: Logger) {
    this.#hub = hub;
    this.#store = store;
    this.#log = log;
  }

  /** The stream to follow rooms on (made after this, since it delivers here). */
  attach(stream: MessageStream): void {
    this.#stream = stream;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#loadTimer);
  }

  /** Whether `userId` is, on this server, a member of the followed room `room` as of its last delivered event. */
  isLocalMember(room: string, userId: number): boolean {
    return this.#members.get(room)?.has(userId) ?? false;
  }

  /** The local members of a followed room (for typing notices). */
  localMembers(room: string): ReadonlySet<number> | undefined {
    return this.#members.get(room);
  }

  /** A user's first connection logged in here: read which rooms they are in (batched with others). */
  userOnline(user: User): void {
    this.#loading.set(user.id, []);
    this.#scheduleLoad(0);
  }

  /** A user's last connection left: they stop counting in every room here. */
  userOffline(user: User): void {
    this.#loading.delete(user.id);
    for (const [room, members] of this.#members) {
      if (members.delete(user.id)) this.#unfollowIfUnused(room, members);
    }
  }

  /** A membership event about `userId` in a room this server does not follow. */
  membershipElsewhere(room: string, id: number, userId: number): void {
    const pending = this.#loading.get(userId);
    if (pending) pending.push({ room, id });
    else if (this.#hub.hasUser(userId)) this.#followFrom(room, id);
  }

  /**
   * Delivers a followed room's events (ids ascending, the next ones), applying each membership
   * event as it passes. `replies`: an own batch's senders' replies in this room, in request order.
   */
  deliver(room: string, events: RoomEvent[], replies?: ReadonlyMap<Session, readonly PendingReply[]>): void {
    const members = this.#members.get(room);
    if (!members) {
      if (replies) sendAlone(replies, new Map());
      return;
    }
    const cursors = new Map<Session, { at: number }>();
    for (const session of replies?.keys() ?? []) cursors.set(session, { at: 0 });
    // A DM's pair are its members from its first event on: both get both joins.
    if (isDm(room)) { for (const event of events) if (event.kind === "join") this.#addIfLocal(members, event.userId); }
    let start = 0;
    while (start < events.length) {
      // A run: messages between membership events share their recipients, hence their bytes.
      let end = start + 1;
      if (events[start].kind === "message") { while (end < events.length && events[end].kind === "message") end++; }
      const run = events.slice(start, end);
      const recipients = this.#recipients(members, run[0]);
      this.#sendRun(room, run, recipients, replies, cursors);
      if (run[0].kind === "leave" || run[0].kind === "kick") members.delete(run[0].userId!);
      start = end;
    }
    if (replies) sendAlone(replies, cursors);
    this.#unfollowIfUnused(room, members);
  }

  /** Who gets `event` (the first of its run): members, and for a membership event the user it is about. */
  #recipients(members: Set<number>, event: RoomEvent): Iterable<number> {
    if (event.kind === "message" || event.userId === null) return members;
    if (event.kind === "join") this.#addIfLocal(members, event.userId);
    if (members.has(event.userId)) return members;
    return [...members, event.userId];
  }

  #sendRun(
    room: string,
    run: RoomEvent[],
    recipients: Iterable<number>,
    replies: ReadonlyMap<Session, readonly PendingReply[]> | undefined,
    cursors: Map<Session, { at: number }>,
  ): void {
    const lines = run.map((event) => roomEventLine(room, event));
    const { bytes: shared, offsets } = encodeLines(lines);
    const indexOf = new Map<number, number>();
    if (replies) { for (let i = 0; i < run.length; i++) indexOf.set(run[i].id, i); }
    for (const userId of recipients) {
      for (const session of this.#hub.sessionsOf(userId) ?? []) {
        if (session.protocol !== 2) continue;
        const own = replies?.get(session);
        const taken = own ? takeRunReplies(own, cursors.get(session)!, indexOf) : undefined;
        if (!taken || !needsOwnPieces(taken)) session.send(shared);
        else for (const piece of personalPieces(shared, offsets, lines, taken)) session.send(piece);
      }
    }
  }

  #addIfLocal(members: Set<number>, userId: number | null): void {
    if (userId !== null && this.#hub.hasUser(userId)) members.add(userId);
  }

  #scheduleLoad(delayMs: number): void {
    if (this.#loadScheduled || this.#stopped) return;
    this.#loadScheduled = true;
    this.#loadTimer = setTimeout(() => void this.#load(), delayMs);
  }

  /** Reads the memberships of every user still loading, in one query, and starts following their rooms. */
  async #load(): Promise<void> {
    this.#loadScheduled = false;
    const users = [...this.#loading.keys()];
    if (users.length === 0 || !this.#stream) return;
    let memberships;
    const stream = this.#stream;
    try {
      memberships = await this.#store.memberships(users);
    } catch (err) {
      this.#log.warn("cannot read users' rooms; retrying", databaseErrorFields(err));
      this.#scheduleLoad(LOAD_RETRY_MS);
      return;
    }
    if (this.#stopped) return;
    // The read may have seen events whose notices are still on their way (a room the user
    // created a moment ago, say): once they are all in, the rooms below start before them.
    await stream.noticeBarrier();
    if (this.#stopped) return;
    // A notice that came while the memberships were read is about an event that may be older
    // than the room's head as read: a room followed now starts before the earliest such event, so
    // that it is delivered (the user's own join to a room they just created, say).
    const earliest = new Map<string, number>();
    for (const userId of users) {
      for (const notice of this.#loading.get(userId) ?? []) {
        earliest.set(notice.room, Math.min(earliest.get(notice.room) ?? Infinity, notice.id));
      }
    }
    let followed = false;
    for (const { userId, roomId, joinedId, lastId } of memberships) {
      if (!this.#loading.has(userId)) continue;
      let members = this.#members.get(roomId);
      if (!members) {
        stream.follow(roomId, Math.min(lastId, (earliest.get(roomId) ?? Infinity) - 1));
        members = new Set();
        this.#members.set(roomId, members);
        followed = true;
      }
      // Joined after what is delivered here: the join event, when it passes, adds them.
      if (joinedId <= (stream.deliveredThrough(roomId) ?? lastId)) members.add(userId);
    }
    for (const userId of users) {
      const notices = this.#loading.get(userId);
      if (!notices) continue;
      this.#loading.delete(userId);
      for (const notice of notices) {
        if (stream.isFollowing(notice.room)) stream.expect(notice.room, notice.id);
        else this.#followFrom(notice.room, notice.id);
      }
    }
    // What was committed in these rooms between the read and now was announced to no one here.
    if (followed) stream.resync();
    if (this.#loading.size > 0) this.#scheduleLoad(0);
  }

  /**
   * Follows a room from just before event `id` (about a local user), with no local member yet; a
   * DM from its start (its two joins are all it has before it is used, and both go to both).
   */
  #followFrom(room: string, id: number): void {
    if (!this.#stream || this.#members.has(room)) return;
    // A notice of an event delivered when the room was last followed here (its NOTIFY, say).
    if ((this.#stream.retiredThrough(room) ?? -1) >= id) return;
    this.#members.set(room, new Set());
    this.#stream.follow(room, isDm(room) ? 0 : Math.max(0, id - 1));
    this.#stream.expect(room, id);
  }

  /**
   * Stops following a room no local user is a member of, unless events are still to come (a
   * notice raised them: they may be about a local user, such as an invitation or a join).
   */
  #unfollowIfUnused(room: string, members: Set<number>): void {
    if (members.size === 0 && !this.#stream?.hasPending(room)) this.#unfollow(room);
  }

  #unfollow(room: string): void {
    this.#members.delete(room);
    this.#stream?.unfollow(room);
  }
}

/**
 * The replies its room's delivery did not carry (the sender was not a recipient: a v1 connection,
 * or events already delivered): sent to the sender alone, in request order.
 */
function sendAlone(
  replies: ReadonlyMap<Session, readonly PendingReply[]>,
  cursors: Map<Session, { at: number }>,
): void {
  for (const [session, list] of replies) sendRemaining(session, list, cursors.get(session) ?? { at: 0 });
}

/** DM ids start with "d_" (rooms.ts newRoomId). */
function isDm(room: string): boolean {
  return room.startsWith("d_");
}

/** A room event as pushed: new_message or member_event, with its room (contract v2, "pushes"). */
export function roomEventLine(room: string, event: RoomEvent): string {
  if (event.kind === "message") {
    return `{"type":"new_message","room":${JSON.stringify(room)},"id":${event.id},"sender":${
      JSON.stringify(event.username)
    },"message":${JSON.stringify(event.body)},"timestamp":${JSON.stringify(event.timestamp)}}\n`;
  }
  return `{"type":"member_event","room":${JSON.stringify(room)},"id":${event.id},"user":${
    JSON.stringify(event.username)
  },"membership":"${event.kind}","by":${JSON.stringify(event.by)},"timestamp":${JSON.stringify(event.timestamp)}}\n`;
}
