// End-to-end tests of the terminal client (client/): servers and clients in their own processes
// (no in-process database, so no timer of it can trip the sanitizers), clients driven through
// piped stdin and stdout, and, when tmux is installed, the interactive mode in a real terminal.

import { assert, assertEquals, assertMatch, fail } from "./support/assert.ts";
import { type Frame, sanitized, type TestClient, uniqueName } from "./support/client.ts";
import { runServerCommand, type ServerProcess, spawnServer } from "./support/process.ts";
import { CLIENT_MAIN, CLIENT_PASSWORD, ClientProcess, CONFIG, freePort, runClient } from "./support/client_process.ts";
import { sleep } from "./support/util.ts";

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") || undefined;

/**
 * Runs `fn` with a database for servers: PostgreSQL when TEST_DATABASE_URL is set, else (or when
 * `isolated`: a screen must show only this test's messages) PGlite in a temp dir.
 */
async function withDatabase(
  fn: (env: Record<string, string>) => Promise<void>,
  { isolated = false } = {},
): Promise<void> {
  if (TEST_DATABASE_URL && !isolated) return await fn({ DATABASE_URL: TEST_DATABASE_URL });
  const dataDir = await Deno.makeTempDir({ prefix: "chat-client-test-" });
  try {
    await fn({ DATA_DIR: dataDir });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

function address(port: number): string {
  return `127.0.0.1:${port}`;
}

/** The texts of the listener's messages from `sender`, in the order printed. */
function textsFrom(listener: ClientProcess, sender: string): string[] {
  return listener.messages().filter((m) => m.sender === sender).map((m) => m.message as string);
}

Deno.test({
  name: "client: piped and --listen modes against a server",
  ...sanitized,
  async fn(t) {
    await withDatabase(async (db) => {
      await using server = await spawnServer({ ...db, MAX_MESSAGE_LENGTH: "50" });
      const at = address(server.port);

      await t.step("lines piped in reach a --listen client as JSON lines, and the sender exits 0", async () => {
        const alice = uniqueName("alice");
        const bob = uniqueName("bob");
        await using listener = new ClientProcess([at, "--listen", "--user", bob, "--register"]);
        await listener.waitForStderr(/^listening on /);

        const sent = await runClient([at, "--user", alice, "--register"], 'hello\nümlaut ✓ 🎉 "quoted"\n');
        assertEquals(sent.code, 0, sent.stderr);
        assertEquals(sent.stdout, "");
        await listener.waitFor("both messages", () => textsFrom(listener, alice).length === 2);
        const printed = listener.messages().filter((m) => m.sender === alice);
        assertEquals(printed.map((m) => m.message), ["hello", 'ümlaut ✓ 🎉 "quoted"']);
        for (const m of printed) {
          assertEquals(Object.keys(m).sort(), ["id", "message", "sender", "timestamp"]);
          assertMatch(m.timestamp as string, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
        }
        assert((printed[0].id as number) < (printed[1].id as number));

        // --register again: the name exists, which is fine; it logs in and sends.
        const again = await runClient([at, "--user", alice, "--register"], "third\r\n");
        assertEquals(again.code, 0, again.stderr);
        await listener.waitFor("the third message", () => textsFrom(listener, alice).length === 3);
        assertEquals(textsFrom(listener, alice)[2], "third");
        assertEquals(await listener.stop("SIGTERM"), 0);
      });

      await t.step("--listen --history N prints the N newest messages first", async () => {
        const carol = uniqueName("carol");
        const sent = await runClient([at, "--user", carol, "--register"], "one\ntwo\nthree\n");
        assertEquals(sent.code, 0, sent.stderr);
        await using listener = new ClientProcess([at, "--listen", "--user", carol, "--history", "2"]);
        await listener.waitForStderr(/^listening on /);
        // Other tests may write to the same database: the newest two are ours only if nobody did.
        await listener.waitFor("two messages", () => listener.stdout.length >= 2);
        assertEquals(listener.messages().length, 2);
        assertEquals(await listener.stop("SIGINT"), 0);
      });

      await t.step("refused lines give exit 1 with the reasons on stderr; the other lines are still sent", async () => {
        const dave = uniqueName("dave");
        const input = ["before", "   ", "x".repeat(51), "after", ""].join("\n");
        const run = await runClient([at, "--user", dave, "--register"], input);
        assertEquals(run.code, 1, run.stderr);
        assertMatch(run.stderr, /not sent: a line of stdin is blank/);
        assertMatch(
          run.stderr,
          /not sent \("x+…"\): the server refused the message: message must be at most 50 characters/,
        );
        await using reader = await server.connect();
        await reader.registerAndLogin();
        const history = await reader.request({ type: "get_history", limit: 500 });
        const stored = (history.messages as Record<string, unknown>[]).filter((m) => m.sender === dave);
        assertEquals(stored.map((m) => m.message), ["before", "after"]);
      });

      await t.step("a wrong or missing password fails with a clear message", async () => {
        const erin = uniqueName("erin");
        assertEquals((await runClient([at, "--user", erin, "--register"])).code, 0);
        const wrong = await runClient([at, "--user", erin], "hi\n", { CHAT_PASSWORD: "not-the-one" });
        assertEquals(wrong.code, 1);
        assertMatch(wrong.stderr, /wrong username or password/);
        const missing = await runClient([at, "--user", erin], "hi\n", { CHAT_PASSWORD: "" });
        assertEquals(missing.code, 2);
        assertMatch(missing.stderr, /set CHAT_PASSWORD/);
        const noUser = await runClient([at], "hi\n");
        assertEquals(noUser.code, 2);
        assertMatch(noUser.stderr, /--user NAME or set CHAT_USER/);
      });

      assertEquals(await server.stop("SIGTERM"), 0);
    });
  },
});

Deno.test({
  name: "client: bad arguments, an unreachable server and --help, also through `chat-server client`",
  ...sanitized,
  async fn() {
    const badArgs = await runClient(["--bogus"]);
    assertEquals(badArgs.code, 2);
    assertMatch(badArgs.stderr, /unknown option --bogus/);

    const down = await runClient([address(freePort()), "--user", "nobody"], "hi\n");
    assertEquals(down.code, 1);
    assertMatch(down.stderr, /cannot connect to 127\.0\.0\.1:\d+: connection refused/);

    const help = await runClient(["--help"]);
    assertEquals(help.code, 0);
    for (const word of ["--listen", "--register", "--user", "--history", "CHAT_PASSWORD", "/older", "Exit status"]) {
      assert(help.stdout.includes(word), `--help mentions ${word}`);
    }
    // The server's entry point dispatches to the client (the compiled binary's `chat-server client`).
    const viaMain = await runServerCommand({}, ["client", "--help"]);
    assertEquals(viaMain.code, 0, viaMain.stderr);
    assertEquals(viaMain.stdout, help.stdout);
  },
});

Deno.test({
  name: "client: --listen reconnects after a server restart and prints what it missed and what follows, each once",
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      const port = freePort();
      const env = { ...db, PORT: String(port) };
      const alice = uniqueName("alice");
      const bob = uniqueName("bob");
      const first = await spawnServer(env);
      await using listener = new ClientProcess([address(port), "--listen", "--user", bob, "--register"]);
      try {
        await listener.waitForStderr(/^listening on /);
        const before = await runClient([address(port), "--user", alice, "--register"], "before the restart\n");
        assertEquals(before.code, 0, before.stderr);
        await listener.waitFor("the first message", () => textsFrom(listener, alice).length === 1);
      } finally {
        assertEquals(await first.stop("SIGTERM"), 0);
      }
      await listener.waitForStderr(/^connection lost \(.+\), reconnecting in \d+ s…$/);

      // The same database behind another port: the listener cannot reach it, so it surely misses these.
      {
        await using meanwhile = await spawnServer({ ...env, PORT: "0" });
        const missed = await runClient([address(meanwhile.port), "--user", alice], "while away 1\nwhile away 2\n");
        assertEquals(missed.code, 0, missed.stderr);
        assertEquals(await meanwhile.stop("SIGTERM"), 0);
      }

      await using second = await spawnServer(env);
      await listener.waitForStderr(/^reconnected, caught up on \d+ missed messages?$/);
      const after = await runClient([address(port), "--user", alice], "after the restart\n");
      assertEquals(after.code, 0, after.stderr);
      await listener.waitFor("the last message", () => textsFrom(listener, alice).includes("after the restart"));

      assertEquals(textsFrom(listener, alice), [
        "before the restart",
        "while away 1",
        "while away 2",
        "after the restart",
      ]);
      const ids = listener.messages().map((m) => m.id as number);
      assertEquals(ids, [...new Set(ids)].sort((a, b) => a - b), "each id printed once, in order");
      assertEquals(await listener.stop("SIGTERM"), 0);
      assertEquals(await second.stop("SIGTERM"), 0);
    });
  },
});

Deno.test({
  name: "client: a piped sender rides out a server restart: later lines are sent after it reconnects, each once",
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      const port = freePort();
      const env = { ...db, PORT: String(port) };
      const alice = uniqueName("alice");
      const bob = uniqueName("bob");
      const first = await spawnServer(env);
      await using listener = new ClientProcess([address(port), "--listen", "--user", bob, "--register"]);
      await using sender = new ClientProcess([address(port), "--user", alice, "--register"], {}, { keepStdin: true });
      try {
        await listener.waitForStderr(/^listening on /);
        await sender.write("one\n");
        await listener.waitFor("the first message", () => textsFrom(listener, alice).length === 1);
      } finally {
        assertEquals(await first.stop("SIGTERM"), 0);
      }
      await sender.waitForStderr(/^connection lost /);
      // Typed while the sender is offline: it waits for the reconnect, then sends.
      await sender.write("two\n");
      await using second = await spawnServer(env);
      await sender.closeStdin();
      assertEquals(await sender.exited(), 0, sender.stderr.join("\n"));
      assert(sender.stderr.some((line) => line.startsWith("reconnected")), sender.stderr.join("\n"));
      await listener.waitFor("the second message", () => textsFrom(listener, alice).length === 2);
      assertEquals(textsFrom(listener, alice), ["one", "two"]);
      assertEquals(await listener.stop("SIGTERM"), 0);
      assertEquals(await second.stop("SIGTERM"), 0);
    });
  },
});

Deno.test({
  name: "client: piped, across a server killed in the middle of its input: every line appears exactly once",
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      const port = freePort();
      const env = { ...db, PORT: String(port), RATE_LIMIT_PER_SEC: "0" };
      const alice = uniqueName("alice");
      const bob = uniqueName("bob");
      const lines = Array.from({ length: 300 }, (_, i) => `line ${i + 1}`);
      const first = await spawnServer(env);
      await using listener = new ClientProcess([address(port), "--listen", "--user", bob, "--register"]);
      await using sender = new ClientProcess([address(port), "--user", alice, "--register"], {}, { keepStdin: true });
      try {
        await listener.waitForStderr(/^listening on /);
        await sender.write(lines.slice(0, 200).map((line) => line + "\n").join(""));
        // Killed while the sender is busy with its input: a send may be stored and not yet acknowledged.
        await listener.waitFor("some of the lines", () => textsFrom(listener, alice).length >= 60);
      } finally {
        await first.stop("SIGKILL");
      }
      const beforeKill = textsFrom(listener, alice).length;
      assert(beforeKill < 200, `the sender had sent all ${beforeKill} lines before the kill`);
      await sender.waitForStderr(/^connection lost /);
      await using second = await spawnServer(env);
      await sender.write(lines.slice(200).map((line) => line + "\n").join(""));
      await sender.closeStdin();
      assertEquals(await sender.exited(60_000), 0, sender.stderr.join("\n"));
      await listener.waitFor("every line", () => textsFrom(listener, alice).length >= lines.length);
      assertEquals(textsFrom(listener, alice), lines, "each line once, in order");
      assertEquals(await listener.stop("SIGTERM"), 0);
      assertEquals(await second.stop("SIGTERM"), 0);
    });
  },
});

const HAS_TMUX = await new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).output()
  .then((output) => output.success, () => false);

/** A detached tmux server of our own (its own socket), driven with send-keys and read with capture-pane. */
class Tmux implements AsyncDisposable {
  readonly socket = `chat-client-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;

  async run(...args: string[]): Promise<string> {
    const output = await new Deno.Command("tmux", {
      args: ["-L", this.socket, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    if (!output.success) fail(`tmux ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
    return new TextDecoder().decode(output.stdout);
  }

  /** Types `text` literally (no key names), then the given keys. */
  async type(text: string, ...keys: string[]): Promise<void> {
    if (text) await this.run("send-keys", "-t", "chat", "-l", text);
    if (keys.length) await this.run("send-keys", "-t", "chat", ...keys);
  }

  /** The visible screen, trailing blank lines removed. */
  async screen(): Promise<string> {
    return (await this.run("capture-pane", "-p", "-t", "chat")).trimEnd();
  }

  async waitForScreen(pattern: RegExp, ms = 30_000): Promise<string> {
    const deadline = Date.now() + ms;
    while (true) {
      const screen = await this.screen();
      if (pattern.test(screen)) return screen;
      if (Date.now() > deadline) fail(`timed out waiting for ${pattern} on the screen:\n${screen}`);
      await sleep(100);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await new Deno.Command("tmux", { args: ["-L", this.socket, "kill-server"], stdout: "null", stderr: "null" })
      .output();
  }
}

Deno.test({
  name: "client: interactive in a terminal: hidden password, own lines marked, typing not garbled by incoming lines",
  ignore: !HAS_TMUX,
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      await using server: ServerProcess = await spawnServer(db);
      const carol = uniqueName("carol");
      const dave = uniqueName("dave");
      await using tmux = new Tmux();
      const client = [Deno.execPath(), "run", "-P=client", "--config", CONFIG, CLIENT_MAIN, address(server.port)];
      // CHAT_PASSWORD empty: the client must ask for it. The shell stays to show the exit status.
      const shell = `env CHAT_PASSWORD= NO_COLOR=1 ${client.map(quote).join(" ")} --user ${carol} --register; ` +
        `echo "exited $?"; sleep 60`;
      await tmux.run("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", shell);

      await tmux.waitForScreen(/^password:\s*$/m);
      await tmux.type(CLIENT_PASSWORD, "Enter");
      let screen = await tmux.waitForScreen(new RegExp(`connected to .* as ${carol}`));
      assert(!screen.includes(CLIENT_PASSWORD), `the password was echoed:\n${screen}`);

      await tmux.type("hello from a terminal", "Enter");
      await tmux.waitForScreen(new RegExp(`^\\d\\d:\\d\\d ${carol} \\(you\\): hello from a terminal$`, "m"));

      // Half a line typed, then a message arrives: it is printed above, the typing stays intact.
      await tmux.type("half typed");
      await tmux.waitForScreen(/^> half typed$/m);
      const sent = await runClient([address(server.port), "--user", dave, "--register"], "interrupting\n");
      assertEquals(sent.code, 0, sent.stderr);
      screen = await tmux.waitForScreen(new RegExp(`^\\d\\d:\\d\\d ${dave}: interrupting$`, "m"));
      const lines = screen.split("\n");
      assertEquals(lines.at(-1), "> half typed", screen);
      assertMatch(lines.at(-2) ?? "", new RegExp(`${dave}: interrupting$`), screen);

      await tmux.type(" and finished", "Enter");
      await tmux.waitForScreen(new RegExp(`${carol} \\(you\\): half typed and finished$`, "m"));
      await tmux.type("/users", "Enter");
      await tmux.waitForScreen(new RegExp(`^-- online \\(\\d+\\): .*${carol}`, "m"));
      await tmux.type("/older", "Enter");
      await tmux.waitForScreen(/^-- (older messages:|no older messages)$/m);
      await tmux.type("/quit", "Enter");
      await tmux.waitForScreen(/^exited 0$/m);
      assertEquals(await server.stop("SIGTERM"), 0);
    }, { isolated: true });
  },
});

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

Deno.test({
  name:
    "client: --room sends piped lines to a room or DM and --listen --room prints only that room's events; a room you are not in is refused",
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      await using server = await spawnServer({ ...db, ROOM_LIMIT_PER_MIN: "0" });
      const at = address(server.port);
      const alice = uniqueName("alice");
      const bob = uniqueName("bob");
      const room = uniqueName("design");
      for (const name of [alice, bob]) assertEquals((await runClient([at, "--user", name, "--register"])).code, 0);
      // Alice creates a public room over the protocol; bob joins it.
      await using a = await server.connect();
      await ask(a, { type: "login", username: alice, password: CLIENT_PASSWORD });
      await ask(a, { type: "hello", protocol: 2 });
      const created = await ask(a, { type: "room_create", name: room, visibility: "public" });
      const roomId = (created.room as Record<string, unknown>).id as string;
      await using b = await server.connect();
      await ask(b, { type: "login", username: bob, password: CLIENT_PASSWORD });
      await ask(b, { type: "hello", protocol: 2 });
      const joined = await ask(b, { type: "room_join", room: roomId });
      assertEquals(joined.type, "room_response", JSON.stringify(joined));

      await using inRoom = new ClientProcess([at, "--listen", "--user", bob, "--room", room]);
      await using inLobby = new ClientProcess([at, "--listen", "--user", bob]);
      await inRoom.waitForStderr(/^listening on /);
      await inLobby.waitForStderr(/^listening on /);

      const sent = await runClient([at, "--user", alice, "--room", `#${room}`], "in the room\nstill in it\n");
      assertEquals(sent.code, 0, sent.stderr);
      await inRoom.waitFor("two room messages", () => inRoom.messages().filter((m) => m.sender === alice).length === 2);
      const printed = inRoom.messages().filter((m) => m.sender === alice);
      assertEquals(printed.map((m) => [m.room, m.message]), [[roomId, "in the room"], [roomId, "still in it"]]);
      assert((printed[0].id as number) + 1 === printed[1].id, "room ids are consecutive");

      // A lobby line reaches the lobby listener only; the room's listener printed nothing of it.
      assertEquals((await runClient([at, "--user", alice], "in the lobby\n")).code, 0);
      await inLobby.waitFor("the lobby line", () => textsFrom(inLobby, alice).includes("in the lobby"));
      assertEquals(textsFrom(inLobby, alice), ["in the lobby"]);
      assert(!inRoom.messages().some((m) => m.message === "in the lobby"), "a lobby line in the room's output");

      // A DM, by the peer's name.
      assertEquals((await ask(b, { type: "dm_open", user: alice })).type, "room_response");
      const dm = await runClient([at, "--user", alice, "--room", `@${bob}`], "just for you\n");
      assertEquals(dm.code, 0, dm.stderr);
      const history = await ask(b, { type: "get_history", room: await dmRoom(b, alice), limit: 10 });
      assert((history.messages as Record<string, unknown>[]).some((m) => m.message === "just for you"));

      // A room the sender is not in: nothing sent, exit 1.
      const nowhere = await runClient([at, "--user", alice, "--room", "no-such-room"], "lost\n");
      assertEquals(nowhere.code, 1);
      assertMatch(nowhere.stderr, /you are in no room "no-such-room"/);
      assertEquals(await inRoom.stop("SIGTERM"), 0);
      assertEquals(await inLobby.stop("SIGTERM"), 0);
    });
  },
});

/** A request with a request_id of its own, answered by the frame that echoes it (pushes may come first). */
async function ask(client: TestClient, frame: Frame): Promise<Frame> {
  const requestId = crypto.randomUUID();
  await client.send({ ...frame, request_id: requestId });
  return await client.waitFor((f) => f.request_id === requestId);
}

/** The id of `client`'s DM with `peer`. */
async function dmRoom(client: TestClient, peer: string): Promise<string> {
  const list = await ask(client, { type: "room_list", scope: "joined" });
  const rooms = list.rooms as Record<string, unknown>[];
  return rooms.find((r) => r.kind === "dm" && r.name === peer)!.id as string;
}

Deno.test({
  name:
    "client: interactive rooms in a terminal: /create, /join by name, other rooms' messages shown with their name, /dm, /invite, /rooms with unread counts, /search, /leave",
  ignore: !HAS_TMUX,
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      await using server: ServerProcess = await spawnServer({ ...db, ROOM_LIMIT_PER_MIN: "0" });
      const carol = uniqueName("carol");
      const dave = uniqueName("dave");
      const room = uniqueName("plans");
      assertEquals((await runClient([address(server.port), "--user", dave, "--register"])).code, 0);
      await using tmux = new Tmux();
      const client = [Deno.execPath(), "run", "-P=client", "--config", CONFIG, CLIENT_MAIN, address(server.port)];
      const shell = `env CHAT_PASSWORD=${CLIENT_PASSWORD} NO_COLOR=1 ${client.map(quote).join(" ")} --user ${carol} ` +
        `--register; echo "exited $?"; sleep 60`;
      await tmux.run("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", shell);
      await tmux.waitForScreen(new RegExp(`connected to .* as ${carol}`));

      await tmux.type(`/create ${room}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- now talking in #${room}$`, "m"));
      await tmux.waitForScreen(new RegExp(`^#${room}>$`, "m"));
      await tmux.type("first in the room", "Enter");
      await tmux.waitForScreen(new RegExp(`^\\d\\d:\\d\\d ${carol} \\(you\\): first in the room$`, "m"));

      // Dave joins by name (piped client cannot: he uses the protocol) and writes in the room.
      await using d = await server.connect();
      await ask(d, { type: "login", username: dave, password: CLIENT_PASSWORD });
      await ask(d, { type: "hello", protocol: 2 });
      const publicRooms = await ask(d, { type: "room_list", scope: "public", query: room });
      const roomId = (publicRooms.rooms as Record<string, unknown>[])[0].id as string;
      await ask(d, { type: "room_join", room: roomId });
      await tmux.waitForScreen(new RegExp(`^-- ${dave} joined$`, "m"));

      // Back in the lobby, the room's messages are shown with the room's name.
      await tmux.type("/r lobby", "Enter");
      await tmux.waitForScreen(/^-- now talking in lobby$/m);
      await ask(d, { type: "send_message", room: roomId, message: "seen from the lobby" });
      await tmux.waitForScreen(new RegExp(`^\\[#${room}\\] \\d\\d:\\d\\d ${dave}: seen from the lobby$`, "m"));
      await tmux.type("/rooms", "Enter");
      await tmux.waitForScreen(new RegExp(`^--   #${room} \\(\\d+ unread\\)$`, "m"));

      // A DM, then an invitation from the room, then leaving it.
      await tmux.type(`/dm ${dave}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- now talking in @${dave}$`, "m"));
      await tmux.type("hello dave", "Enter");
      await tmux.waitForScreen(new RegExp(`${carol} \\(you\\): hello dave$`, "m"));
      const dms = await dmRoom(d, carol);
      const dmHistory = await ask(d, { type: "get_history", room: dms, limit: 10 });
      assert((dmHistory.messages as Record<string, unknown>[]).some((m) => m.message === "hello dave"));

      await tmux.type(`/r ${room}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- now talking in #${room}$`, "m"));
      await tmux.type(`/kick ${dave}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- removed ${dave}$`, "m"));
      await tmux.type(`/invite ${dave}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- invited ${dave}$`, "m"));
      await tmux.type("/leave", "Enter");
      await tmux.waitForScreen(new RegExp(`^-- left #${room}$`, "m"));
      await tmux.waitForScreen(/^>$/m);
      // Search finds messages in every conversation, each shown with its conversation's name.
      await tmux.type("/search dave", "Enter");
      await tmux.waitForScreen(new RegExp(`^\\[@${dave}\\] \\d\\d:\\d\\d ${carol} \\(you\\): hello dave$`, "m"));
      await tmux.type("/search seen -nothing", "Enter");
      await tmux.waitForScreen(new RegExp(`^\\[#${room}\\] \\d\\d:\\d\\d ${dave}: seen from the lobby$`, "m"));
      // A public room is joined again by its name.
      await tmux.type(`/join ${room}`, "Enter");
      await tmux.waitForScreen(new RegExp(`^-- joined #${room}$`, "m"));
      const screen = await tmux.waitForScreen(new RegExp(`^#${room}>$`, "m"));
      assert(!/\[[rd]_[a-z0-9]+\]/.test(screen), `a room shown by its id, not its name:\n${screen}`);
      await tmux.type("/quit", "Enter");
      await tmux.waitForScreen(/^exited 0$/m);
      assertEquals(await server.stop("SIGTERM"), 0);
    }, { isolated: true });
  },
});

Deno.test({
  name:
    "client: --listen --room rides out a server restart: the room's events once each, in order, missed ones included",
  ...sanitized,
  async fn() {
    await withDatabase(async (db) => {
      const port = freePort();
      const env = { ...db, PORT: String(port), ROOM_LIMIT_PER_MIN: "0" };
      const alice = uniqueName("alice");
      const bob = uniqueName("bob");
      const first = await spawnServer(env);
      let roomId: string;
      await using listener = await (async () => {
        for (const name of [alice, bob]) {
          assertEquals((await runClient([address(port), "--user", name, "--register"])).code, 0);
        }
        await using a = await first.connect();
        await ask(a, { type: "login", username: alice, password: CLIENT_PASSWORD });
        await ask(a, { type: "hello", protocol: 2 });
        const created = await ask(a, { type: "room_create", name: uniqueName("ops"), visibility: "private" });
        roomId = (created.room as Record<string, unknown>).id as string;
        await ask(a, { type: "room_invite", room: roomId, user: bob });
        await using b = await first.connect();
        await ask(b, { type: "login", username: bob, password: CLIENT_PASSWORD });
        await ask(b, { type: "hello", protocol: 2 });
        await ask(b, { type: "room_join", room: roomId });
        return new ClientProcess([address(port), "--listen", "--user", bob, "--room", roomId]);
      })();
      const texts = () => listener.messages().filter((m) => m.message !== undefined).map((m) => m.message as string);
      const say = async (server: ServerProcess, text: string) => {
        await using a = await server.connect();
        await ask(a, { type: "login", username: alice, password: CLIENT_PASSWORD });
        await ask(a, { type: "hello", protocol: 2 });
        assertEquals((await ask(a, { type: "send_message", room: roomId, message: text })).type, "new_message");
      };
      try {
        await listener.waitForStderr(/^listening on /);
        await say(first, "before");
        await listener.waitFor("the first message", () => texts().length === 1);
      } finally {
        assertEquals(await first.stop("SIGTERM"), 0);
      }
      await listener.waitForStderr(/^connection lost /);
      await using second = await spawnServer(env);
      // Sent at once: the listener may still be away (then it catches up) or back (then it is live).
      await say(second, "while away");
      await say(second, "after");
      await listener.waitFor("every message", () => texts().length >= 3);
      assertEquals(texts(), ["before", "while away", "after"]);
      const ids = listener.messages().filter((m) => m.message !== undefined).map((m) => m.id as number);
      assertEquals(ids, [...ids].sort((x, y) => x - y));
      assertEquals(await listener.stop("SIGTERM"), 0);
      assertEquals(await second.stop("SIGTERM"), 0);
    });
  },
});
