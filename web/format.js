// What the page says to people: local times and a sentence for every error code of the contract
// (the same texts as the terminal client's client/format.ts). Pure: no DOM, no network.

/** "HH:MM" in local time for today's messages, "YYYY-MM-DD HH:MM" for older ones. */
export function formatTime(timestamp, now = new Date()) {
  // The contract's timestamps are UTC without a zone: say so, or they would be read as local.
  const date = new Date(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(timestamp) ? timestamp + "Z" : NaN);
  if (Number.isNaN(date.getTime())) return "--:--";
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const sameDay = date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() &&
    date.getDate() === now.getDate();
  return sameDay ? time : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** "3 s", "1.5 s", "2 min". */
export function formatDelay(ms) {
  if (ms < 1000) return `${Math.max(1, Math.round(ms / 100) / 10)} s`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 60_000)} min`;
}

function lowerFirst(text) {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** A membership event as a line of the conversation: "alice invited bob". */
export function describeMembership(event) {
  const by = typeof event.by === "string" && event.by !== event.user ? event.by : undefined;
  switch (event.membership) {
    case "join":
      return `${event.user} joined`;
    case "leave":
      return `${event.user} left`;
    case "invite":
      return by ? `${by} invited ${event.user}` : `${event.user} was invited`;
    case "kick":
      return by ? `${by} removed ${event.user}` : `${event.user} was removed`;
    default:
      return `${event.user}: ${event.membership}`;
  }
}

/** "alice is typing…", "alice and bob are typing…", "4 people are typing…"; "" when nobody. */
export function describeTyping(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names.length} people are typing…`;
}

/** An unread badge's text: the count, "999+" beyond (the server reports 1000 for "1000 or more"). */
export function formatUnread(count) {
  return count > 999 ? "999+" : String(count);
}

/** A sentence for an error frame (or a register/login error reply), for every code of the contract. */
export function describeError(frame) {
  const retry = typeof frame.retry_after_ms === "number" ? formatDelay(frame.retry_after_ms) : undefined;
  const detail = typeof frame.message === "string" ? frame.message : "";
  switch (frame.code) {
    case "rate_limited":
      return `Slow down, try again in ${retry ?? "a moment"}.`;
    case "too_many_attempts":
      return `Too many failed logins, try again in ${retry ?? "a while"}.`;
    case "invalid_credentials":
      return "Wrong username or password.";
    case "username_taken":
      return "That username is already taken, choose another one.";
    case "invalid_username":
      return "A username is 3 to 50 characters: letters, digits, _ . or -.";
    case "invalid_password":
      return "A password is 6 to 72 bytes long.";
    case "invalid_message":
      return detail ? `The server refused the message: ${detail}.` : "The server refused the message.";
    case "line_too_long":
      return "The message is too large for the server.";
    case "unavailable":
      return "The server is temporarily unavailable, try again in a moment.";
    case "too_many_connections":
      return "The server is full (too many connections).";
    case "idle_timeout":
      return "The server closed the connection because nobody logged in on it.";
    case "not_authenticated":
      return "Not logged in.";
    case "sender_mismatch":
      return "The server refused the message: its sender is not the logged-in user.";
    case "invalid_limit":
      return "The number of messages must be a whole number of at least 1.";
    case "bad_request":
      return `The server could not understand the request${detail ? ` (${detail})` : ""}.`;
    case "unknown_type":
      return `The server does not support this request${detail ? ` (${detail})` : ""}.`;
    case "internal_error":
      return "The server ran into an internal error, try again.";
    case "room_not_found":
      return "There is no such room, or you cannot see it (perhaps you were removed from it).";
    case "not_member":
      return "Join the room first: only its members can do that.";
    case "not_allowed":
      return detail ? `Not allowed: ${lowerFirst(detail)}.` : "That is not allowed in this room.";
    case "name_taken":
      return "A public room with that name exists already; choose another name, or join it.";
    case "invalid_room_name":
      return "A room name is 1 to 64 characters, without control characters.";
    case "user_not_found":
      return "There is no user of that name (and you cannot message yourself).";
    case "limit_exceeded":
      return "Too many rooms or members: you are in as many rooms as allowed, or the room is full.";
    default:
      return detail ? `${detail} (${frame.code})` : `Error ${frame.code}.`;
  }
}
