// Protocol v2's requests as dispatcher commands: hello, the room requests, read markers and
// typing, and get_history's room form. Each checks its fields and hands over to the services.

import { ChatError } from "../core/errors.ts";
import type { RoomEvent } from "../store/message_stream.ts";
import { field, type Frame, type HistoryQuery, type Reply } from "../wire/protocol.ts";
import { choiceOf, eventIdOf, LOBBY, MAX_ROOM_NAME_LENGTH, requiredRoomOf } from "../wire/room_fields.ts";
import type { Command } from "./command.ts";
import type { Hub } from "./hub.ts";
import type { RoomService } from "./rooms.ts";
import type { SearchService } from "./search.ts";
import type { RoomSignals } from "./room_signals.ts";
import type { Session, User } from "./session.ts";

/** A logged-in session (the dispatcher checks login before these run). */
type LoggedIn = Session & { user: User };

export class RoomCommands {
  readonly #hub: Hub;
  readonly #rooms: RoomService;
  readonly #signals: RoomSignals;
  readonly #onlineUsers: () => Promise<string[]>;
  readonly #search: SearchService;

  constructor(
    hub: Hub,
    rooms: RoomService,
    signals: RoomSignals,
    search: SearchService,
    onlineUsers: () => Promise<string[]>,
  ) {
    this.#search = search;
    this.#hub = hub;
    this.#rooms = rooms;
    this.#signals = signals;
    this.#onlineUsers = onlineUsers;
  }

  /** The dispatcher's table entries for v2's requests. */
  commands(): Record<string, Command> {
    const user = (s: Session) => (s as LoggedIn).user;
    return {
      hello: { needsLogin: false, handle: (s, f) => this.#hello(s, f) },
      room_create: { needsLogin: true, handle: (s, f) => this.#rooms.create(user(s), f) },
      room_join: { needsLogin: true, handle: (s, f) => this.#rooms.join(user(s), f) },
      room_leave: { needsLogin: true, handle: (s, f) => this.#rooms.leave(user(s), f) },
      room_invite: { needsLogin: true, handle: (s, f) => this.#rooms.invite(user(s), f) },
      room_kick: { needsLogin: true, handle: (s, f) => this.#rooms.kick(user(s), f) },
      room_list: { needsLogin: true, handle: (s, f) => this.#rooms.list(user(s), f) },
      room_members: { needsLogin: true, handle: (s, f) => this.#rooms.members(user(s), f, this.#onlineUsers) },
      dm_open: { needsLogin: true, handle: (s, f) => this.#rooms.dmOpen(user(s), f) },
      mark_read: { needsLogin: true, handle: (s, f) => this.#markRead(s as LoggedIn, f) },
      typing: { needsLogin: true, handle: (s, f) => this.#typing(s as LoggedIn, f) },
      search: { needsLogin: true, handle: (s, f) => this.#search.search(user(s), f) },
    };
  }

  /** get_history with a room other than the lobby: the room's events as they were pushed. */
  async roomHistory(user: User, room: string, query: HistoryQuery): Promise<Reply> {
    const events = await this.#rooms.history(user, room, query);
    return { type: "history_response", room, messages: events.map((event) => roomEventFrame(room, event)) };
  }

  #hello(session: Session, frame: Frame): Reply {
    const protocol = field(frame, "protocol");
    if (protocol === 1) {
      this.#hub.setProtocol(session, 1);
      return { type: "hello_response", protocol: 1 };
    }
    if (protocol !== 2) throw new ChatError("bad_request", "protocol must be 1 or 2");
    this.#hub.setProtocol(session, 2);
    const limits = this.#rooms.limits;
    return {
      type: "hello_response",
      protocol: 2,
      lobby: LOBBY,
      limits: {
        max_rooms_per_user: limits.maxRoomsPerUser,
        max_room_members: limits.maxRoomMembers,
        max_room_name_length: MAX_ROOM_NAME_LENGTH,
      },
    };
  }

  async #markRead(session: LoggedIn, frame: Frame): Promise<Reply> {
    const room = requiredRoomOf(frame);
    const id = eventIdOf(frame, "id");
    const { readId, unread } = await this.#rooms.markRead(session.user, room, id);
    this.#signals.readMoved(session, session.user, room, readId, unread);
    return { type: "read_response", room, id: readId, unread };
  }

  async #typing(session: LoggedIn, frame: Frame): Promise<undefined> {
    const room = requiredRoomOf(frame);
    const state = choiceOf(frame, "state", ["start", "stop"] as const);
    if (room !== LOBBY) await this.#rooms.authorized(session.user, room, "post");
    this.#signals.typing(session.user, room, state);
    return undefined;
  }
}

/** A room event as history lists it: the frame it was pushed as. */
export function roomEventFrame(room: string, event: RoomEvent): Reply {
  if (event.kind === "message") {
    return {
      type: "new_message",
      room,
      id: event.id,
      sender: event.username,
      message: event.body,
      timestamp: event.timestamp,
    };
  }
  return {
    type: "member_event",
    room,
    id: event.id,
    user: event.username,
    membership: event.kind,
    by: event.by,
    timestamp: event.timestamp,
  };
}
