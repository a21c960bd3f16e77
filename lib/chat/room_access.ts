// Who may see and do what in a room: the one place every room request is decided. A private room
// or DM the user has no part in answers exactly as a room that does not exist (same code, same
// words), so that no request can tell whether it exists.

import { ChatError } from "../core/errors.ts";
import type { RoomFacts } from "../store/rooms.ts";
import { roomNotFound } from "../wire/room_fields.ts";

/**
 * see: the room object (room_join's answer, room_list). read: history, members, search. post: send,
 * typing, read markers. join, leave, invite, kick: the membership requests.
 */
export type RoomAction = "see" | "read" | "post" | "join" | "leave" | "invite" | "kick";

function notMember(): ChatError {
  return new ChatError("not_member", "You are not a member of this room");
}

function notAllowed(why: string): ChatError {
  return new ChatError("not_allowed", why);
}

/** Throws the contract's error unless the user whose view `facts` is may do `action` in the room. */
export function authorize(facts: RoomFacts | undefined, action: RoomAction): asserts facts is RoomFacts {
  if (!facts) throw roomNotFound();
  const { kind, role } = facts;
  const member = role === "owner" || role === "member";
  if (kind !== "public" && role === null) throw roomNotFound();
  switch (action) {
    case "see":
    case "join":
      // Public: anyone. Private: members and invited users (the only ones who can see it). DM: its pair.
      return;
    case "read":
      if (kind === "public" || member) return;
      throw notMember();
    case "post":
      if (member) return;
      throw notMember();
    case "leave":
      if (kind === "dm") throw notAllowed("A direct message cannot be left");
      if (role === null) throw notMember();
      return;
    case "invite":
      if (kind === "dm") throw notAllowed("No one can be invited to a direct message");
      if (!member) throw notMember();
      return;
    case "kick":
      if (kind === "dm") throw notAllowed("No one can be removed from a direct message");
      if (!member) throw notMember();
      if (role !== "owner") throw notAllowed("Only the room's owner can remove members");
      return;
  }
}

/** The lobby: everyone logged in reads and posts there; nobody joins, leaves, invites or kicks. */
export function authorizeLobby(action: RoomAction): void {
  if (action === "leave") throw notAllowed("The lobby cannot be left");
  if (action === "invite" || action === "kick") throw notAllowed("Everyone is in the lobby");
}

/**
 * The error for a send the database refused (its sender was not a member when the message would
 * have taken its id): `denial` is the room's kind and the sender's role there ('public:invited'),
 * or 'missing'. Decided by the same rules as every other request.
 */
export function deniedSend(denial: string): ChatError {
  if (denial === "missing") return roomNotFound();
  const [kind, role] = denial.split(":");
  try {
    authorize(
      {
        kind: kind as RoomFacts["kind"],
        role: (role || null) as RoomFacts["role"],
      } as RoomFacts,
      "post",
    );
  } catch (err) {
    if (err instanceof ChatError) return err;
    throw err;
  }
  return notMember();
}
