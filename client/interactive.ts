// The interactive mode: asks to log in or register, shows the newest messages, then live ones
// above the prompt, and runs the slash commands. With a v2 server it chats in rooms and DMs too:
// one conversation is current (the prompt names it); the others' messages are shown with their
// room's name.

import type { ClientArgs } from "./args.ts";
import { DEFAULT_INTERACTIVE_HISTORY } from "./args.ts";
import { Connection } from "./connection.ts";
import { envSetting } from "./credentials.ts";
import { ServerRefusal, SessionEnded } from "./errors.ts";
import {
  COMMAND_HELP,
  describeError,
  describeLost,
  describeReconnected,
  describeRefusal,
  HISTORY_RESET_TEXT,
  renderMessage,
  renderNotice,
  snippet,
} from "./format.ts";
import { stdoutIsColorTerminal } from "./output.ts";
import { ChatSession, type RegisterMode, type SessionEvent } from "./session.ts";
import { type Input, Terminal } from "./terminal.ts";
import { isFrame, isValidPassword, isValidUsername } from "../lib/wire/protocol.ts";
import { type ChatMessage, sameUser, toChatMessage } from "./wire.ts";
import { LOBBY, type RoomEvent, type RoomInfo, roomLabel, roomList } from "./rooms.ts";
import { ROOM_COMMAND_HELP, roomCommand } from "./room_commands.ts";
import { renderRoomEvent } from "./room_format.ts";

/** Events of rooms not known yet held for the room list at most (beyond: shown by the room's id). */
const MAX_HELD_EVENTS = 1000;
/** Rooms whose names are kept for labels, at most. */
const MAX_REMEMBERED_ROOMS = 1000;
/** Messages per /older page, and /history's default. */
const PAGE = 20;
const PROMPT = "> ";

interface Preset {
  user: string | undefined;
  password: string | undefined;
  register: boolean;
}

interface Identity {
  username: string;
  password: string;
  register: RegisterMode;
  /** Something was typed in: on a refusal, ask again rather than exit. */
  asked: boolean;
}

type Outcome = "quit" | "logout" | "ended";

export async function runInteractive(args: ClientArgs): Promise<number> {
  const terminal = new Terminal();
  const color = stdoutIsColorTerminal();
  terminal.start();
  try {
    // Say at once when there is no server, rather than after the questions.
    try {
      (await Connection.open(args.hostname, args.port, () => undefined)).close();
    } catch (err) {
      terminal.print(renderNotice(describeError(err), color));
      return 1;
    }
    let preset: Preset = {
      user: args.user ?? envSetting("CHAT_USER"),
      password: envSetting("CHAT_PASSWORD"),
      register: args.register,
    };
    while (true) {
      const identity = await askIdentity(terminal, preset);
      if (!identity) return 0;
      const view = new ChatView(terminal, color, identity.username);
      view.notice(`connecting to ${args.hostname}:${args.port}…`);
      let session: ChatSession;
      try {
        session = await ChatSession.open({
          hostname: args.hostname,
          port: args.port,
          username: identity.username,
          password: identity.password,
          register: identity.register,
          initialHistory: args.history ?? DEFAULT_INTERACTIVE_HISTORY,
          maxReconnectAttempts: Infinity,
          rooms: true,
        }, (event) => view.onEvent(event));
      } catch (err) {
        view.notice(describeError(err));
        // A wrong password or a taken name can be typed again; flags and environment cannot.
        if (err instanceof ServerRefusal && identity.asked) {
          preset = { ...preset, password: undefined };
          continue;
        }
        return 1;
      }
      view.notice(`connected to ${args.hostname}:${args.port} as ${session.username}; /help lists the commands`);
      if (session.roomsEnabled) await view.refreshRooms(session).catch(() => undefined);
      const outcome = await chat(terminal, session, view);
      if (outcome !== "logout") return outcome === "ended" ? 1 : 0;
      preset = { user: undefined, password: undefined, register: false };
    }
  } finally {
    terminal.stop();
  }
}

async function askIdentity(terminal: Terminal, preset: Preset): Promise<Identity | undefined> {
  let asked = false;
  let register: RegisterMode = preset.register ? "if_free" : "no";
  let username = preset.user;
  if (username === undefined && !preset.register) {
    while (true) {
      const answer = await ask(terminal, "log in, or register a new account? [l/r] ");
      if (answer === undefined) return undefined;
      const choice = answer.trim().toLowerCase();
      if (choice === "" || choice === "l" || choice === "login") break;
      if (choice === "r" || choice === "register") {
        register = "new";
        break;
      }
      terminal.print("answer l to log in, or r to register");
    }
  }
  while (username === undefined) {
    const answer = await ask(terminal, "username: ");
    if (answer === undefined) return undefined;
    asked = true;
    if (isValidUsername(answer.trim())) username = answer.trim();
    else terminal.print(describeRefusal(new ServerRefusal("invalid_username", "")));
  }
  let password = preset.password;
  while (password === undefined) {
    const first = await ask(terminal, "password: ", true);
    if (first === undefined) return undefined;
    asked = true;
    if (!isValidPassword(first)) {
      terminal.print(describeRefusal(new ServerRefusal("invalid_password", "")));
      continue;
    }
    if (register === "new") {
      const again = await ask(terminal, "the same password again: ", true);
      if (again === undefined) return undefined;
      if (again !== first) {
        terminal.print("the two passwords differ, try again");
        continue;
      }
    }
    password = first;
  }
  return { username, password, register, asked };
}

/** One answer; undefined when the person pressed Ctrl-C or Ctrl-D instead. */
async function ask(terminal: Terminal, prompt: string, secret = false): Promise<string | undefined> {
  const input = await terminal.read(prompt, { secret, keep: true });
  return input.kind === "line" ? input.text : undefined;
}

/**
 * What the chat shows: messages, notices, the oldest message id shown (for /older), the current
 * conversation and the names of the user's rooms.
 */
export class ChatView {
  readonly #terminal: Terminal;
  readonly #color: boolean;
  readonly #username: string;
  oldestShown: number | undefined;
  /** The conversation typed lines go to: "lobby" or a room's id. */
  current = LOBBY;
  lastSearch: { query: string; next: unknown } | undefined;
  /** The user's rooms, DMs and invitations, by id (protocol v2). */
  readonly rooms = new Map<string, RoomInfo>();
  /** Called for an event of a room not known yet (an invitation, say): the list is read again. */
  onUnknownRoom: () => void = () => this.flushUnknown();
  #unknown: RoomEvent[] = [];
  /** Every room seen in this session, also those left since: their last events still need a name. */
  readonly #names = new Map<string, RoomInfo>();

  constructor(terminal: Terminal, color: boolean, username: string) {
    this.#terminal = terminal;
    this.#color = color;
    this.#username = username;
  }

  get prompt(): string {
    return this.current === LOBBY ? PROMPT : `${this.label(this.current)}> `;
  }

  label(room: string): string {
    return roomLabel(this.rooms.get(room) ?? this.#names.get(room), room);
  }

  /** Reads the user's rooms again. */
  async refreshRooms(session: ChatSession): Promise<RoomInfo[]> {
    const rooms = roomList(await session.request({ type: "room_list", scope: "joined" }));
    this.rooms.clear();
    for (const room of rooms) if (room.id !== LOBBY) this.rooms.set(room.id, room);
    this.remember(rooms);
    return rooms;
  }

  /** Keeps rooms' names for labels (bounded: the oldest are forgotten). */
  remember(rooms: Iterable<RoomInfo>): void {
    for (const room of rooms) {
      this.#names.delete(room.id);
      this.#names.set(room.id, room);
    }
    while (this.#names.size > MAX_REMEMBERED_ROOMS) this.#names.delete(this.#names.keys().next().value!);
  }

  onEvent(event: SessionEvent): void {
    switch (event.kind) {
      case "message":
        this.show(event.message, this.current === LOBBY ? undefined : "lobby");
        break;
      case "room_event":
        this.showRoomEvent(event.event);
        break;
      case "lost":
        this.notice(describeLost(event.cause, event.attempt, event.retryInMs));
        break;
      case "reconnected":
        this.notice(describeReconnected(event.missed));
        break;
      case "history_reset":
        this.notice(HISTORY_RESET_TEXT);
        break;
      case "ended":
        // The chat loop reports it, once, as it leaves.
        break;
    }
  }

  /** A lobby message; `where` prefixes it with the conversation's name (not the current one). */
  show(message: ChatMessage, where?: string): void {
    if (where === undefined && (this.oldestShown === undefined || message.id < this.oldestShown)) {
      this.oldestShown = message.id;
    }
    const own = sameUser(message.sender, this.#username);
    const line = renderMessage(message, { own, color: this.#color, now: new Date() });
    this.#terminal.print(where === undefined ? line : `[${where}] ${line}`);
  }

  /**
   * A room's event. One of a room not known yet (just created, joined or invited to, on this or
   * another connection) waits for the room list, so that it is shown with the room's name.
   */
  showRoomEvent(event: RoomEvent): void {
    if (!this.rooms.has(event.room) && !this.#names.has(event.room) && this.#unknown.length < MAX_HELD_EVENTS) {
      this.#unknown.push(event);
      this.onUnknownRoom();
      return;
    }
    this.#print(event);
  }

  /** A search result (a `new_message` frame with its room), with its conversation's name. */
  showResult(result: unknown): void {
    const room = isFrame(result) && typeof result.room === "string" ? result.room : LOBBY;
    const message = toChatMessage(result);
    if (!message) return;
    const own = sameUser(message.sender, this.#username);
    const line = renderMessage(message, { own, color: this.#color, now: new Date() });
    this.#terminal.print(`[${this.label(room)}] ${line}`);
  }

  /** Shows the events held for the room list (known now, or never: then by the room's id). */
  flushUnknown(): void {
    const held = this.#unknown;
    this.#unknown = [];
    for (const event of held) this.#print(event);
  }

  #print(event: RoomEvent): void {
    const where = event.room === this.current ? undefined : this.label(event.room);
    this.#terminal.print(renderRoomEvent(event, {
      own: sameUser(event.user, this.#username),
      color: this.#color,
      now: new Date(),
      where,
    }));
  }

  notice(text: string): void {
    this.#terminal.print(renderNotice(text, this.#color));
  }
}

async function chat(terminal: Terminal, session: ChatSession, view: ChatView): Promise<Outcome> {
  let ended: SessionEnded | undefined;
  void session.ended.then((error) => {
    ended = error;
    terminal.cancelRead();
  });
  let unsent = 0;
  let refreshing = false;
  view.onUnknownRoom = () => {
    if (refreshing) return;
    refreshing = true;
    view.refreshRooms(session).catch(() => undefined).finally(() => {
      refreshing = false;
      view.flushUnknown();
    });
  };
  while (true) {
    const input: Input = await terminal.read(view.prompt);
    if (ended) {
      if (ended.reason !== "closed") view.notice(describeError(ended));
      return "ended";
    }
    if (input.kind === "eof" || input.kind === "interrupt") {
      if (unsent > 0) view.notice(`leaving with ${unsent} message${unsent === 1 ? "" : "s"} not sent`);
      session.close();
      return "quit";
    }
    if (input.kind !== "line" || input.text.trim() === "") continue;
    const line = input.text;
    if (line.startsWith("/") && !line.startsWith("//")) {
      const outcome = await command(line, session, view);
      if (outcome) return outcome;
      continue;
    }
    const text = line.startsWith("//") ? line.slice(1) : line;
    if (!session.connected) view.notice("offline: the message will be sent once reconnected");
    unsent++;
    // Not awaited: typing goes on while it is sent; its broadcast is its echo.
    session.send(text, view.current).catch((err) => {
      if (!(err instanceof SessionEnded && err.reason === "closed")) {
        view.notice(`not sent (${snippet(text)}): ${describeError(err)}`);
      }
    }).finally(() => unsent--);
  }
}

/** Runs a slash command; returns an outcome when the chat is over. */
async function command(line: string, session: ChatSession, view: ChatView): Promise<Outcome | undefined> {
  const [name, ...params] = line.trim().split(/\s+/);
  try {
    switch (name) {
      case "/quit":
      case "/exit":
        session.close();
        return "quit";
      case "/logout":
        await session.logout();
        view.notice("logged out");
        return "logout";
      case "/help":
        view.notice(session.roomsEnabled ? `${COMMAND_HELP}\n${ROOM_COMMAND_HELP}` : COMMAND_HELP);
        return undefined;
      case "/users": {
        const users = await session.users();
        view.notice(`online (${users.length}): ${users.join(", ")}`);
        return undefined;
      }
      case "/history": {
        const limit = params[0] === undefined ? PAGE : Number(params[0]);
        if (!Number.isSafeInteger(limit) || limit < 1 || params.length > 1) {
          view.notice("usage: /history [n], with n a whole number of at least 1");
          return undefined;
        }
        if (view.current !== LOBBY) {
          const events = await session.roomHistory(view.current, { limit });
          view.notice(`the ${limit} newest events of ${view.label(view.current)}:`);
          for (const event of events) view.showRoomEvent(event);
          return undefined;
        }
        showPage(view, `the ${limit} newest messages`, await session.history({ limit }));
        return undefined;
      }
      case "/older": {
        if (view.current !== LOBBY) {
          view.notice("in a room, /history n shows its n newest events");
          return undefined;
        }
        const before = view.oldestShown;
        const messages = before === undefined ? [] : await session.history({ limit: PAGE, before });
        showPage(view, "older messages", messages);
        return undefined;
      }
      default:
        if (await roomCommand(name, params, session, view)) return undefined;
        view.notice(
          `unknown command ${name}; /help lists them (start a message with // to send a line beginning with /)`,
        );
        return undefined;
    }
  } catch (err) {
    view.notice(describeError(err));
    return undefined;
  }
}

function showPage(view: ChatView, title: string, messages: ChatMessage[]): void {
  if (messages.length === 0) {
    view.notice("no older messages");
    return;
  }
  view.notice(`${title}:`);
  for (const message of messages) view.show(message);
}
