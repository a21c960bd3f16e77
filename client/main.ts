// The terminal client's entry: parses the arguments, picks the mode (interactive when stdin is a
// terminal, send when it is not, or --listen) and turns any failure into one line on stderr and
// an exit status. Run as `deno task client` or `chat-server client`.

import { parseArgs, USAGE } from "./args.ts";
import { UsageError } from "./errors.ts";
import { describeError } from "./format.ts";
import { runInteractive } from "./interactive.ts";
import { runListen } from "./listen.ts";
import { writeStderr, writeStdout } from "./output.ts";
import { runSend } from "./send.ts";

/** Runs the client with `args` (after the "client" subcommand); returns the exit status. */
export async function runClient(args: string[]): Promise<number> {
  try {
    const parsed = parseArgs(args);
    if (parsed.help) {
      writeStdout(USAGE + "\n");
      return 0;
    }
    if (parsed.listen) return await runListen(parsed);
    if (Deno.stdin.isTerminal()) return await runInteractive(parsed);
    return await runSend(parsed, Deno.stdin);
  } catch (err) {
    writeStderr(`chat client: ${describeError(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) {
  // Exit explicitly: a pending read of stdin would otherwise keep the process alive.
  Deno.exit(await runClient(Deno.args));
}
