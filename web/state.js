// The page's state, without DOM or network: who is logged in, the rooms and DMs of the sidebar
// (with their read markers and unread counts), each conversation's events and outbox, which
// conversation is open, who is online. The views read it; the connection feeds it.

import { Conversation } from "./conversation.js";

export const LOBBY = "lobby";
/** The contract counts unread messages exactly up to this, and reports this beyond. */
const MAX_UNREAD = 1000;
/** Live events kept for a room not in the list yet (a DM someone just opened), until it is. */
const MAX_EARLY_EVENTS = 1000;

export class ChatState {
  /** @type {{id:number,username:string}|null} */
  me = null;
  /** Room objects of the sidebar (lobby, rooms, DMs, invitations), by id, as the server sent them. */
  rooms = new Map();
  /** Conversations read so far, by room id. */
  conversations = new Map();
  /** The room id of the conversation shown. */
  current = LOBBY;
  /** Users online, sorted. */
  users = [];
  /** Live events of rooms not listed yet, by room id: counted once the room's object arrives. */
  #early = new Map();

  /** The conversation of `room`, made empty on first use. */
  conversation(room) {
    let conversation = this.conversations.get(room);
    if (!conversation) {
      conversation = new Conversation(room);
      this.conversations.set(room, conversation);
    }
    return conversation;
  }

  /** Whether `name` is the logged-in user (names are unique regardless of case). */
  isMe(name) {
    return this.me !== null && typeof name === "string" && name.toLowerCase() === this.me.username.toLowerCase();
  }

  /** Whether `message` was sent by the logged-in user. */
  isOwn(message) {
    return this.isMe(message.sender);
  }

  /**
   * Takes the whole `joined` room list: rooms no longer listed are forgotten with their
   * conversations (left or removed meanwhile), except the lobby. Returns the ids forgotten.
   */
  setRooms(rooms) {
    const listed = new Map();
    for (const room of rooms) if (validRoom(room)) listed.set(room.id, { ...room });
    const gone = [...this.rooms.keys()].filter((id) => id !== LOBBY && !listed.has(id));
    for (const id of gone) this.removeRoom(id);
    for (const [id, room] of listed) this.upsertRoom(room, this.rooms.get(id));
    return gone;
  }

  /** Adds or updates one room object (a room_response). */
  upsertRoom(room, known = this.rooms.get(room.id)) {
    if (!validRoom(room)) return;
    // A live message may have moved past what this (older) object says: keep the newer facts.
    const merged = { ...room };
    if (known && known.last_id > merged.last_id) merged.last_id = known.last_id;
    this.rooms.set(room.id, merged);
    // Events that arrived before the room was listed: those after the object's last_id count now.
    const early = this.#early.get(room.id);
    this.#early.delete(room.id);
    for (const { frame, seen } of early ?? []) this.noteLive(room.id, frame, seen);
  }

  /** Forgets a room the user left or was removed from; the lobby is shown instead if it was open. */
  removeRoom(id) {
    if (id === LOBBY) return;
    this.rooms.delete(id);
    const conversation = this.conversations.get(id);
    this.conversations.delete(id);
    if (this.current === id) this.current = LOBBY;
    return conversation;
  }

  /**
   * A live event arrived in `room`: its newest id moves on, and a message by someone else that
   * is not seen now (`seen` false: another conversation is open, or the page is hidden) counts
   * as unread. An own message moves the marker to it (the server does the same).
   */
  noteLive(roomId, frame, seen) {
    const room = this.rooms.get(roomId);
    if (!room) return this.#keepEarly(roomId, frame, seen);
    if (!Number.isSafeInteger(frame.id) || frame.id <= room.last_id) return;
    room.last_id = frame.id;
    if (frame.type === "member_event") return;
    if (this.isOwn(frame)) {
      room.read_id = frame.id;
      room.unread = 0;
    } else if (!seen && frame.id > room.read_id) {
      room.unread = Math.min(MAX_UNREAD, room.unread + 1);
    }
  }

  #keepEarly(roomId, frame, seen) {
    let early = this.#early.get(roomId);
    if (!early) {
      early = [];
      this.#early.set(roomId, early);
    }
    if (early.length < MAX_EARLY_EVENTS) early.push({ frame, seen });
  }

  /** The read marker moved (read_response, or a read push from another connection): forward only. */
  applyRead(roomId, id, unread) {
    const room = this.rooms.get(roomId);
    if (!room || !Number.isSafeInteger(id) || id < room.read_id) return;
    room.read_id = id;
    if (Number.isSafeInteger(unread)) room.unread = unread;
  }

  /** Whether `room` has messages newer than its read marker that the page holds. */
  needsMarking(roomId) {
    const room = this.rooms.get(roomId);
    const conversation = this.conversations.get(roomId);
    if (!room || !conversation) return false;
    return conversation.newestMessageId > room.read_id || (room.unread > 0 && conversation.newestMessageId > 0);
  }

  /** The sidebar's lists: the lobby and rooms (by name), DMs (by peer), invitations. */
  sidebar() {
    const rooms = [];
    const dms = [];
    const invitations = [];
    for (const room of this.rooms.values()) {
      if (room.role === "invited") invitations.push(room);
      else if (room.kind === "dm") dms.push(room);
      else if (room.kind !== "lobby") rooms.push(room);
    }
    const byTitle = (a, b) => roomTitle(a).localeCompare(roomTitle(b));
    const lobby = this.rooms.get(LOBBY) ?? lobbyPlaceholder();
    return { rooms: [lobby, ...rooms.sort(byTitle)], dms: dms.sort(byTitle), invitations: invitations.sort(byTitle) };
  }

  /** Every send not yet acknowledged, in every conversation. */
  allPending() {
    const all = [];
    for (const conversation of this.conversations.values()) all.push(...conversation.pending.values());
    return all;
  }

  /** Forgets everything: another user logs in. */
  reset() {
    this.me = null;
    this.rooms.clear();
    this.conversations.clear();
    this.current = LOBBY;
    this.users = [];
    this.#early.clear();
  }
}

/** What a room is called on the page: the lobby, a room's name, a DM's peer. */
export function roomTitle(room) {
  if (!room) return "";
  if (room.kind === "lobby" || room.id === LOBBY) return "Lobby";
  if (room.kind === "dm") return typeof room.peer === "string" ? room.peer : room.name;
  return room.name;
}

function lobbyPlaceholder() {
  return { id: LOBBY, kind: "lobby", name: LOBBY, role: "member", members: 0, last_id: 0, read_id: 0, unread: 0 };
}

function validRoom(room) {
  if (room === null || typeof room !== "object" || typeof room.id !== "string") return false;
  for (const key of ["last_id", "read_id", "unread"]) if (!Number.isSafeInteger(room[key])) room[key] = 0;
  if (typeof room.name !== "string") room.name = room.id;
  return true;
}
