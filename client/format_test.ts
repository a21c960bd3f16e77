import { assert, assertEquals, assertMatch } from "../tests/support/assert.ts";
import { ConnectFailed, ConnectionLost, NotConnected, ServerRefusal, SessionEnded } from "./errors.ts";
import {
  describeError,
  describeLost,
  describeReconnected,
  describeRefusal,
  formatDelay,
  formatTime,
  messageJson,
  renderMessage,
  sanitize,
  snippet,
} from "./format.ts";
import { ERROR_CODES } from "../lib/core/errors.ts";
import { sanitized } from "../tests/support/util.ts";

/** The local clock time of a UTC timestamp, computed independently of format.ts. */
function localHHMM(utc: string): string {
  const date = new Date(utc + "Z");
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
}

Deno.test({
  name: "formatTime shows local HH:MM for today, with the date for other days",
  ...sanitized,
  fn() {
    const now = new Date("2026-01-15T12:00:00Z");
    const today = new Date(now);
    // A timestamp that is "today" in local time whatever the zone: the local noon of `now`'s day.
    today.setHours(12, 34, 0, 0);
    const utc = today.toISOString().slice(0, 19);
    assertEquals(formatTime(utc, today), localHHMM(utc));
    const older = new Date(today.getTime() - 3 * 24 * 3600_000).toISOString().slice(0, 19);
    assertMatch(formatTime(older, today), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/);
    assertEquals(formatTime("not a time", now), "--:--");
    assertEquals(formatTime("2026-01-15T10:30:00+02:00", now), "--:--");
  },
});

Deno.test({
  name: "renderMessage marks own lines and indents continuation lines",
  ...sanitized,
  fn() {
    const now = new Date();
    const timestamp = now.toISOString().slice(0, 19);
    const time = localHHMM(timestamp);
    const message = { id: 1, sender: "alice", message: "hi", timestamp };
    assertEquals(renderMessage(message, { own: false, color: false, now }), `${time} alice: hi`);
    assertEquals(renderMessage(message, { own: true, color: false, now }), `${time} alice (you): hi`);
    const twoLines = renderMessage({ ...message, message: "one\ntwo" }, { own: false, color: false, now });
    assertEquals(twoLines, `${time} alice: one\n${" ".repeat(`${time} alice: `.length)}two`);
    assert(renderMessage(message, { own: true, color: true, now }).includes("\x1b["), "styled when color is on");
  },
});

Deno.test({
  name: "sanitize defuses escape sequences and control characters but keeps text",
  ...sanitized,
  fn() {
    assertEquals(sanitize("\x1b[2Jcleared"), "^[[2Jcleared");
    assertEquals(sanitize("a\rb\x07\x7f\u009b"), "a^Mb^G^?\uFFFD");
    assertEquals(sanitize('tab\tok, עברית, 🎉, "quotes"'), 'tab\tok, עברית, 🎉, "quotes"');
    const now = new Date();
    const line = renderMessage(
      { id: 1, sender: "mallory", message: "\x1b]0;pwned\x07", timestamp: "2026-01-15T10:30:00" },
      { own: false, color: false, now },
    );
    assert(!line.includes("\x1b") && !line.includes("\x07"), JSON.stringify(line));
  },
});

Deno.test({
  name: "describeRefusal has a human sentence for every error code of the contract",
  ...sanitized,
  fn() {
    const codes = ERROR_CODES;
    const texts = new Set<string>();
    for (const code of codes) {
      const text = describeRefusal(new ServerRefusal(code, "server text", 1500));
      // A code in snake_case is not an explanation.
      assert(!/\b[a-z]+_[a-z_]+\b/.test(text) && text !== "server text", `${code}: ${text}`);
      texts.add(text);
    }
    assertEquals(texts.size, codes.length, "each code has its own text");
    assertEquals(describeRefusal(new ServerRefusal("rate_limited", "Too many", 2000)), "slow down, try again in 2 s");
    assertEquals(
      describeRefusal(new ServerRefusal("too_many_attempts", "", 61_000)),
      "too many failed logins, try again in 61 s",
    );
    assertEquals(
      describeRefusal(new ServerRefusal("invalid_message", "message must be at most 4000 characters")),
      "the server refused the message: message must be at most 4000 characters",
    );
    assertEquals(describeRefusal(new ServerRefusal("brand_new", "Something new")), "Something new (brand_new)");
  },
});

Deno.test({
  name: "ServerRefusal.fromFrame reads code, message and retry_after_ms",
  ...sanitized,
  fn() {
    const refusal = ServerRefusal.fromFrame({ type: "error", code: "rate_limited", message: "x", retry_after_ms: 80 });
    assertEquals([refusal.code, refusal.serverMessage, refusal.retryAfterMs], ["rate_limited", "x", 80]);
    assertEquals(ServerRefusal.fromFrame({ type: "error" }).code, "unknown_error");
  },
});

Deno.test({
  name: "describeError covers connection failures, losses and ended sessions",
  ...sanitized,
  fn() {
    assertEquals(
      describeError(new ConnectFailed("localhost", 5555, "refused", "os error 111")),
      "cannot connect to localhost:5555: connection refused (is the server running?)",
    );
    assertEquals(
      describeError(new ConnectionLost({ kind: "closed", serverError: new ServerRefusal("idle_timeout", "") })),
      "connection lost (the server closed the connection because nobody logged in on it)",
    );
    assertEquals(
      describeError(new ConnectionLost({ kind: "closed" })),
      "connection lost (the server closed the connection)",
    );
    assertEquals(
      describeError(new ConnectionLost({ kind: "timeout", afterMs: 30_000 })),
      "connection lost (no reply from the server for 30 s)",
    );
    assertEquals(
      describeError(new SessionEnded("refused", new ServerRefusal("invalid_credentials", ""))),
      "cannot log in again: wrong username or password",
    );
    assertMatch(describeError(new NotConnected()), /not connected/);
  },
});

Deno.test({
  name: "status lines say what happened and when the next try is",
  ...sanitized,
  fn() {
    assertEquals(
      describeLost(new ConnectionLost({ kind: "closed" }), 0, 1800),
      "connection lost (the server closed the connection), reconnecting in 2 s…",
    );
    assertEquals(
      describeLost(new ConnectFailed("h", 1, "refused", ""), 3, 4000),
      "still cannot reconnect (connection refused), retrying in 4 s…",
    );
    assertEquals(describeReconnected(0), "reconnected, nothing missed");
    assertEquals(describeReconnected(1), "reconnected, caught up on 1 missed message");
    assertEquals(describeReconnected(3), "reconnected, caught up on 3 missed messages");
  },
});

Deno.test({
  name: "formatDelay rounds up to whole seconds, snippet shortens long text",
  ...sanitized,
  fn() {
    assertEquals([formatDelay(0), formatDelay(999), formatDelay(1001), formatDelay(2000)], [
      "1 s",
      "1 s",
      "2 s",
      "2 s",
    ]);
    assertEquals(snippet("short"), '"short"');
    assertEquals(snippet("x".repeat(100), 10), `"${"x".repeat(9)}…"`);
    assertEquals(snippet("a\nb\x1b"), '"a b^["');
  },
});

Deno.test({
  name: "messageJson prints the message fields as one JSON line",
  ...sanitized,
  fn() {
    const json = messageJson({ id: 7, sender: "bob", message: "line\nbreak", timestamp: "2026-01-15T10:30:00" });
    assert(!json.includes("\n"));
    assertEquals(JSON.parse(json), { id: 7, sender: "bob", message: "line\nbreak", timestamp: "2026-01-15T10:30:00" });
  },
});
