import { assert, assertEquals } from "../tests/support/assert.ts";
import { UsageError } from "./errors.ts";
import { DEFAULT_HOST, DEFAULT_PORT, parseAddress, parseArgs } from "./args.ts";
import { sanitized } from "../tests/support/util.ts";

Deno.test({
  name: "parseArgs defaults to localhost:5555 and the interactive mode",
  ...sanitized,
  fn() {
    assertEquals(parseArgs([]), {
      help: false,
      hostname: DEFAULT_HOST,
      port: DEFAULT_PORT,
      user: undefined,
      register: false,
      listen: false,
      history: undefined,
      room: undefined,
    });
  },
});

Deno.test({
  name: "parseArgs reads an address and every option, in any order",
  ...sanitized,
  fn() {
    const args = parseArgs(["--listen", "chat.example.org:6000", "-u", "alice", "--register", "--history=5"]);
    assertEquals(args.hostname, "chat.example.org");
    assertEquals(args.port, 6000);
    assertEquals(args.user, "alice");
    assertEquals(args.register, true);
    assertEquals(args.listen, true);
    assertEquals(args.history, 5);
    assertEquals(parseArgs(["--user=bob"]).user, "bob");
    assertEquals(parseArgs(["-h"]).help, true);
    assertEquals(parseArgs(["-ualice"]).user, "alice");
    assertEquals(parseArgs(["--listen", "--", "example.org:7000"]).port, 7000);
    assertEquals(parseArgs(["--room", " design "]).room, "design");
    assertEquals(parseArgs(["--room=@bob", "--listen"]).room, "@bob");
  },
});

Deno.test({
  name: "parseAddress handles hosts, ports, and IPv6 in brackets",
  ...sanitized,
  fn() {
    assertEquals(parseAddress("example.org"), { hostname: "example.org", port: DEFAULT_PORT });
    assertEquals(parseAddress(":7000"), { hostname: DEFAULT_HOST, port: 7000 });
    assertEquals(parseAddress("[::1]:7000"), { hostname: "::1", port: 7000 });
    assertEquals(parseAddress("[::1]"), { hostname: "::1", port: DEFAULT_PORT });
    assertEquals(parseAddress("::1"), { hostname: "::1", port: DEFAULT_PORT });
  },
});

Deno.test({
  name: "parseArgs refuses unknown options, missing values, bad ports and a second address",
  ...sanitized,
  fn() {
    for (
      const bad of [
        ["--nope"],
        ["--user"],
        ["--user", ""],
        ["--history", "-1"],
        ["--history", "x"],
        ["--listen=yes"],
        ["host:0"],
        ["host:65536"],
        ["host:12ab"],
        ["a", "b"],
        ["-x"],
        ["--register=yes"],
        ["--user", "alice", "--user="],
        ["--room", " "],
        ["--room"],
      ]
    ) {
      let error: unknown;
      try {
        parseArgs(bad);
      } catch (err) {
        error = err;
      }
      assert(error instanceof UsageError, `${JSON.stringify(bad)}: ${error}`);
    }
  },
});
