// The interactive mode's room commands (protocol v2): /rooms, /join, /create, /dm, /invite, /kick,
// /leave and /r (or /switch). Each says what happened in one notice; refusals come back as
// ServerRefusal and are described by the caller.

import type { ChatSession } from "./session.ts";
import { findRoom, LOBBY, type RoomInfo, roomList, toRoomInfo } from "./rooms.ts";
import type { Frame } from "../lib/wire/protocol.ts";

/** What the commands need of the view. */
export interface RoomView {
  current: string;
  readonly rooms: Map<string, RoomInfo>;
  label(room: string): string;
  notice(text: string): void;
  refreshRooms(session: ChatSession): Promise<RoomInfo[]>;
  /** Keeps rooms' names for showing their events, also after leaving them. */
  remember(rooms: Iterable<RoomInfo>): void;
  /** A search result: a message with its conversation's name. */
  showResult(result: unknown): void;
  /** The last search, for /more. */
  lastSearch: { query: string; next: unknown } | undefined;
}

export const ROOM_COMMAND_HELP = `rooms and direct messages:
  /rooms                 your rooms, DMs and invitations, with unread counts
  /r <room>, /switch     make a room (or "lobby") the conversation you type into
  /join <room>           join a public room by name, or one you are invited to
  /create <name> [private]  create a room (public unless "private") and switch to it
  /dm <user>             a direct conversation with a user
  /invite <user>         invite someone to the current room
  /kick <user>           remove someone from the current room (its owner only)
  /leave                 leave the current room
  /search <words>        find messages you may read: "a phrase", -exclude, a or b (newest first)
  /more                  the next page of the last search`;

/** Runs `name` if it is a room command; false if it is not one. */
export async function roomCommand(
  name: string,
  params: string[],
  session: ChatSession,
  view: RoomView,
): Promise<boolean> {
  if (!ROOM_COMMANDS.has(name)) return false;
  if (!session.roomsEnabled) {
    view.notice("this server has no rooms (it does not speak protocol v2)");
    return true;
  }
  const arg = params.join(" ").trim();
  switch (name) {
    case "/rooms": {
      const rooms = await view.refreshRooms(session);
      view.notice(rooms.length === 0 ? "no rooms" : "your conversations:");
      for (const room of rooms) view.notice(`  ${describeRoom(room, view)}`);
      return true;
    }
    case "/r":
    case "/switch": {
      if (arg === "") return usage(view, "/r <room>");
      if (arg.toLowerCase() === LOBBY) return switchTo(view, LOBBY);
      const room = findRoom(view.rooms.values(), arg) ?? findRoom(await view.refreshRooms(session), arg);
      if (!room || room.role === "invited") {
        view.notice(room ? `you are invited to ${view.label(room.id)}: /join it first` : `you are in no room "${arg}"`);
        return true;
      }
      await markRead(session, room);
      return switchTo(view, room.id);
    }
    case "/join": {
      if (arg === "") return usage(view, "/join <room>");
      const id = await resolveJoinable(session, view, arg);
      if (!id) {
        view.notice(`no public room "${arg}", and no invitation to one`);
        return true;
      }
      const room = await roomReply(session, { type: "room_join", room: id }, view);
      view.notice(`joined ${view.label(room.id)}`);
      return switchTo(view, room.id);
    }
    case "/create": {
      const words = params.slice();
      const visibility = words.at(-1)?.toLowerCase() === "private" ? (words.pop(), "private") : "public";
      const roomName = words.join(" ").trim();
      if (roomName === "") return usage(view, "/create <name> [private]");
      const room = await roomReply(session, { type: "room_create", name: roomName, visibility }, view);
      view.notice(`created ${visibility} room ${view.label(room.id)}`);
      return switchTo(view, room.id);
    }
    case "/dm": {
      if (arg === "") return usage(view, "/dm <user>");
      const room = await roomReply(session, { type: "dm_open", user: arg }, view);
      return switchTo(view, room.id);
    }
    case "/invite":
    case "/kick": {
      if (arg === "") return usage(view, `${name} <user>`);
      if (view.current === LOBBY) {
        view.notice(`switch to a room first (/r <room>): everyone is in the lobby`);
        return true;
      }
      await session.request({ type: name === "/invite" ? "room_invite" : "room_kick", room: view.current, user: arg });
      view.notice(`${name === "/invite" ? "invited" : "removed"} ${arg}`);
      return true;
    }
    case "/search":
    case "/more": {
      const query = name === "/search" ? arg : view.lastSearch?.query;
      if (!query) return usage(view, "/search <words>");
      const before = name === "/more" ? view.lastSearch?.next : undefined;
      if (name === "/more" && before === undefined) {
        view.notice("no more results");
        return true;
      }
      const reply = await session.request({
        type: "search",
        query,
        limit: SEARCH_PAGE,
        ...(before === undefined ? {} : { before }),
      });
      const results = Array.isArray(reply.results) ? reply.results : [];
      view.lastSearch = { query, next: reply.next };
      view.notice(
        results.length === 0
          ? `no ${name === "/more" ? "more " : ""}messages match ${JSON.stringify(query)}`
          : `messages matching ${JSON.stringify(query)}, newest first${
            reply.next === undefined ? "" : " (/more for older)"
          }:`,
      );
      for (const result of results) view.showResult(result);
      return true;
    }
    case "/leave": {
      if (view.current === LOBBY) {
        view.notice("you cannot leave the lobby");
        return true;
      }
      const label = view.label(view.current);
      await session.request({ type: "room_leave", room: view.current });
      view.rooms.delete(view.current);
      view.notice(`left ${label}`);
      return switchTo(view, LOBBY);
    }
  }
  return false;
}

const ROOM_COMMANDS = new Set([
  "/rooms",
  "/r",
  "/switch",
  "/join",
  "/create",
  "/dm",
  "/invite",
  "/kick",
  "/leave",
  "/search",
  "/more",
]);

/** Results per /search page. */
const SEARCH_PAGE = 10;

function usage(view: RoomView, text: string): boolean {
  view.notice(`usage: ${text}`);
  return true;
}

function switchTo(view: RoomView, room: string): boolean {
  view.current = room;
  view.notice(`now talking in ${view.label(room)}`);
  return true;
}

/** "#design (3 unread)", "@bob", "#plans (invited by …: /join it)". */
function describeRoom(room: RoomInfo, view: RoomView): string {
  const label = view.label(room.id);
  if (room.role === "invited") return `${label} (invitation: /join ${room.kind === "dm" ? room.id : room.name})`;
  const unread = room.unread > 0 ? ` (${room.unread} unread)` : "";
  return `${label}${unread}${room.id === view.current ? " <- current" : ""}`;
}

/** A request answered with a room_response: the room, remembered. */
async function roomReply(session: ChatSession, frame: Frame, view: RoomView): Promise<RoomInfo> {
  const reply = await session.request(frame);
  const room = toRoomInfo(reply.room);
  if (!room) throw new Error(`unexpected reply to ${frame.type}`);
  if (room.id !== LOBBY) {
    view.rooms.set(room.id, room);
    view.remember([room]);
  }
  return room;
}

/** A room `query` names that the user may join: an invitation of theirs, or a public room by name or id. */
async function resolveJoinable(session: ChatSession, view: RoomView, query: string): Promise<string | undefined> {
  const invited = findRoom(await view.refreshRooms(session), query);
  if (invited) return invited.id;
  const name = query.replace(/^#/, "");
  const reply = await session.request({ type: "room_list", scope: "public", query: name, limit: 50 });
  return findRoom(roomList(reply), query)?.id ?? (/^r_[a-z0-9]{12,}$/.test(query) ? query : undefined);
}

/** Moves the read marker to the room's newest event: switching to it reads it. */
async function markRead(session: ChatSession, room: RoomInfo): Promise<void> {
  if (room.lastId > 0) await session.request({ type: "mark_read", room: room.id, id: room.lastId }).catch(() => {});
}
