// Who the scripted modes log in as: --user or CHAT_USER, and CHAT_PASSWORD, asked for without
// echo only when stdin is a terminal.

import type { ClientArgs } from "./args.ts";
import { UsageError } from "./errors.ts";
import type { SessionOptions } from "./session.ts";
import { Terminal } from "./terminal.ts";

export interface Credentials {
  username: string;
  password: string;
}

/** CHAT_USER and CHAT_PASSWORD; unset or empty reads as undefined. */
export function envSetting(name: "CHAT_USER" | "CHAT_PASSWORD"): string | undefined {
  return Deno.env.get(name) || undefined;
}

async function scriptedCredentials(args: ClientArgs): Promise<Credentials> {
  const username = args.user ?? envSetting("CHAT_USER");
  if (username === undefined) throw new UsageError("a username is needed: pass --user NAME or set CHAT_USER");
  let password = envSetting("CHAT_PASSWORD");
  if (password === undefined) {
    if (!Deno.stdin.isTerminal()) {
      throw new UsageError("set CHAT_PASSWORD: stdin is not a terminal, so the password cannot be asked for");
    }
    password = await askPassword(`password for ${username}: `);
    if (password === undefined) throw new UsageError("no password given");
  }
  return { username, password };
}

/** What the scripted modes' sessions share: the address, who logs in, and whether to register first. */
export async function scriptedLogin(
  args: ClientArgs,
): Promise<Pick<SessionOptions, "hostname" | "port" | "username" | "password" | "register">> {
  const { username, password } = await scriptedCredentials(args);
  return {
    hostname: args.hostname,
    port: args.port,
    username,
    password,
    register: args.register ? "if_free" : "no",
  };
}

async function askPassword(prompt: string): Promise<string | undefined> {
  const terminal = new Terminal();
  terminal.start();
  try {
    const input = await terminal.read(prompt, { secret: true, keep: true });
    return input.kind === "line" ? input.text : undefined;
  } finally {
    terminal.stop();
  }
}
