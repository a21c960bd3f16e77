// The room requests of protocol v2 (room_list, room_create, room_join, room_leave, room_invite,
// room_kick, room_members, dm_open, mark_read), each applied to the state when it succeeds.
// Every method answers {error: sentence} when it did not work, so callers only show it; a reply
// that arrives after clear() (another user logged in meanwhile) changes nothing and answers {error: ""}.

import { ConnectionLost } from "./connection.js";
import { describeError } from "./format.js";

const NOT_CONNECTED = "Not connected to the server; try again in a moment.";
const PUBLIC_PAGE = 50;
const MEMBERS_PAGE = 200;

export class Rooms {
  #connection;
  #state;
  /** Rooms with a mark_read on its way: one at a time each. */
  #marking = new Set();
  /** Bumped by clear(): replies to an earlier login's requests are dropped. */
  #epoch = 0;

  constructor(connection, state) {
    this.#connection = connection;
    this.#state = state;
  }

  /** Reads the joined list (lobby, rooms, DMs, invitations); `gone`: the rooms no longer in it. */
  async refresh() {
    const reply = await this.#ask({ type: "room_list", scope: "joined" }, "rooms_response");
    if ("error" in reply) return reply;
    return { gone: this.#state.setRooms(reply.rooms ?? []) };
  }

  create(name, visibility) {
    return this.#roomReply({ type: "room_create", name, visibility });
  }

  /** Joins a public room, or accepts an invitation. */
  join(room) {
    return this.#roomReply({ type: "room_join", room });
  }

  /** Leaves a room, or declines an invitation. */
  async leave(room) {
    const reply = await this.#ask({ type: "room_leave", room }, "room_left");
    if ("error" in reply) return reply;
    this.#state.removeRoom(room);
    return {};
  }

  dmOpen(user) {
    return this.#roomReply({ type: "dm_open", user });
  }

  invite(room, user) {
    return this.#ask({ type: "room_invite", room, user }, "invite_response");
  }

  kick(room, user) {
    return this.#ask({ type: "room_kick", room, user }, "kick_response");
  }

  members(room) {
    return this.#ask({ type: "room_members", room, limit: MEMBERS_PAGE }, "members_response");
  }

  browse(query) {
    return this.#ask({ type: "room_list", scope: "public", query, limit: PUBLIC_PAGE }, "rooms_response");
  }

  /** Moves the read marker of `room` to its newest message the page holds, if it is behind. */
  async markRead(room) {
    if (this.#marking.has(room) || !this.#state.needsMarking(room)) return;
    const id = this.#state.conversations.get(room).newestMessageId;
    this.#marking.add(room);
    try {
      const reply = await this.#ask({ type: "mark_read", room, id }, "read_response");
      if (!("error" in reply)) this.#state.applyRead(room, reply.id, reply.unread);
    } finally {
      this.#marking.delete(room);
    }
  }

  /** Logout: replies still on their way are dropped. */
  clear() {
    this.#epoch++;
    this.#marking.clear();
  }

  async #roomReply(frame) {
    const reply = await this.#ask(frame, "room_response");
    if ("error" in reply) return reply;
    this.#state.upsertRoom(reply.room);
    return { room: this.#state.rooms.get(reply.room?.id) };
  }

  /** The reply of type `expected`, or {error: sentence}. */
  async #ask(frame, expected) {
    const epoch = this.#epoch;
    let reply;
    try {
      reply = await this.#connection.request(frame);
    } catch (err) {
      if (err instanceof ConnectionLost) return { error: epoch === this.#epoch ? NOT_CONNECTED : "" };
      throw err;
    }
    if (epoch !== this.#epoch) return { error: "" };
    return reply.type === expected ? reply : { error: describeError(reply) };
  }
}
