// Command-line arguments of the client, and its --help text. Pure.

import { parseArgs as parseNodeArgs } from "node:util";
import { UsageError } from "./errors.ts";

export const DEFAULT_HOST = "localhost";
export const DEFAULT_PORT = 5555;
/** Messages shown on start in the interactive mode (--listen shows none unless asked). */
export const DEFAULT_INTERACTIVE_HISTORY = 20;

export interface ClientArgs {
  help: boolean;
  hostname: string;
  port: number;
  user: string | undefined;
  register: boolean;
  listen: boolean;
  /** --history N; undefined: the mode's default. */
  history: number | undefined;
  /** --room NAME|ID: piped sends go to, and --listen prints, this room (protocol v2). */
  room: string | undefined;
}

export const USAGE = `Terminal client for the chat server.

Usage:
  deno task client [host[:port]] [options]
  chat-server client [host[:port]] [options]

host defaults to ${DEFAULT_HOST}, port to ${DEFAULT_PORT} (IPv6: [::1]:5555).

Modes:
  stdin is a terminal     interactive: log in or register, see the newest messages, then chat
  stdin is not a terminal send each line of stdin as a message and exit once the server has
                          broadcast every one of them (blank lines are refused; rate limits
                          are waited out)
  --listen                print each incoming message as a JSON line on stdout, until
                          interrupted: {"id":1,"sender":"bob","message":"hi","timestamp":"…"}

Options:
  -u, --user NAME   the username (default: $CHAT_USER; asked for when interactive)
      --register    register NAME first; if it exists already, just log in
      --listen      the listen mode above
      --history N   show the N newest messages first (interactive: ${DEFAULT_INTERACTIVE_HISTORY}, --listen: 0)
      --room ROOM   piped lines go to, and --listen prints, this room or DM (a name, @user for
                    a DM, or an id) instead of the lobby; you must be in it
  -h, --help        this text

Environment:
  CHAT_PASSWORD     the password; needed when stdin is not a terminal (else it is asked for,
                    without echo)
  CHAT_USER         the username when --user is not given

The client reconnects by itself when the connection drops (waiting longer after each failed
try, up to 10 s), logs in again and prints what was sent meanwhile, each message once.
Interactive commands: /history [n], /older, /users, /logout, /quit, /help; rooms and DMs:
/rooms, /r <room>, /join <room>, /create <name> [private], /dm <user>, /invite <user>,
/kick <user>, /leave.

Examples:
  deno task client
  echo "hello" | CHAT_PASSWORD=secret123 deno task client --user alice --register
  CHAT_PASSWORD=secret123 deno task client chat.example.org:5555 --user bob --listen
  echo "build is green" | CHAT_PASSWORD=secret123 deno task client --user ci --room builds

Exit status: 0 done; 1 a message was refused, the login failed or the server could not be
reached; 2 bad arguments or a missing setting.`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  user: { type: "string", short: "u" },
  register: { type: "boolean" },
  listen: { type: "boolean" },
  history: { type: "string" },
  room: { type: "string" },
} as const;

/** Parses `args` (without the "client" subcommand); throws UsageError. */
export function parseArgs(args: readonly string[]): ClientArgs {
  let parsed;
  try {
    parsed = parseNodeArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(err);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${positionals[1]} (see --help)`);
  if (values.user === "") throw new UsageError("--user needs a value");
  if (values.room !== undefined && values.room.trim() === "") throw new UsageError("--room needs a value");
  return {
    help: values.help ?? false,
    ...(positionals.length === 1 ? parseAddress(positionals[0]) : { hostname: DEFAULT_HOST, port: DEFAULT_PORT }),
    user: values.user,
    register: values.register ?? false,
    listen: values.listen ?? false,
    history: values.history === undefined ? undefined : parseCount(values.history, "--history"),
    room: values.room?.trim(),
  };
}

/** node:util's parse errors, shortened to one line that names the option. */
function usageError(err: unknown): UsageError {
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof Error && "code" in err ? err.code : undefined;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return new UsageError(`unknown option ${/'([^']+)'/.exec(message)?.[1] ?? message} (see --help)`);
  }
  return new UsageError(`${message.split("\n")[0]} (see --help)`);
}

/** "host", "host:port", ":port", "[v6]", "[v6]:port"; a bare IPv6 address has no port. */
export function parseAddress(address: string): { hostname: string; port: number } {
  let hostname = address;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(address);
  if (bracketed) {
    hostname = bracketed[1];
    portText = bracketed[2];
  } else if (address.split(":").length === 2) {
    [hostname, portText] = address.split(":");
  }
  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (!/^\d+$/.test(portText ?? "0") || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`invalid port in ${address}: expected a number from 1 to 65535`);
  }
  return { hostname: hostname || DEFAULT_HOST, port };
}

function parseCount(text: string, name: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${name} must be a whole number, got ${text}`);
  return n;
}
