import { assert, assertEquals, fail } from "../../tests/support/assert.ts";
import { sanitized } from "../../tests/support/util.ts";
import { ChatError, type ErrorCode } from "../core/errors.ts";
import {
  checkMessageText,
  checkPassword,
  checkRequestId,
  checkUsername,
  clientMsgIdOf,
  decodeFrame,
  DEFAULT_HISTORY_LIMIT,
  encodeLine,
  errorReply,
  field,
  type Frame,
  isValidPassword,
  isValidUsername,
  MAX_PASSWORD_BYTES,
  MIN_PASSWORD_BYTES,
  parseHistoryQuery,
  requestIdOf,
} from "./protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    assert(err instanceof ChatError, `expected a ChatError, got ${err}`);
    assert(err.message.length > 0 && !err.message.endsWith("."), `message ${JSON.stringify(err.message)}`);
    return err.code;
  }
  fail("no error thrown");
}

Deno.test("decodeFrame parses a JSON object", sanitized, () => {
  assertEquals(decodeFrame(encoder.encode('{"type":"ping","n":1,"s":"€"}')), { type: "ping", n: 1, s: "€" });
  assertEquals(decodeFrame(encoder.encode("  {}  ")), {});
});

Deno.test("decodeFrame refuses invalid UTF-8 with bad_request", sanitized, () => {
  for (
    const bytes of [
      [0xff],
      [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d],
      [0xed, 0xa0, 0x80],
      [0xc0, 0xaf],
      [0xef, 0xbf, 0xbd, 0x80],
    ]
  ) {
    assertEquals(codeOf(() => decodeFrame(new Uint8Array(bytes))), "bad_request", JSON.stringify(bytes));
  }
});

Deno.test("decodeFrame refuses text that is not a JSON object with bad_request", sanitized, () => {
  for (const text of ["", "hello", "{", "{'a':1}", "[]", "[{}]", "1", '"s"', "null", "true", "{} {}"]) {
    assertEquals(codeOf(() => decodeFrame(encoder.encode(text))), "bad_request", text);
  }
});

Deno.test("requestIdOf returns a string or finite number request_id, else undefined", sanitized, () => {
  assertEquals(requestIdOf({ request_id: "abc" }), "abc");
  assertEquals(requestIdOf({ request_id: "" }), "");
  assertEquals(requestIdOf({ request_id: 0 }), 0);
  assertEquals(requestIdOf({ request_id: -1.5 }), -1.5);
  assertEquals(requestIdOf({ request_id: "x".repeat(256) }), "x".repeat(256));
  assertEquals(requestIdOf({}), undefined);
  for (const bad of [null, true, {}, [], "x".repeat(257), Infinity, NaN]) {
    assertEquals(requestIdOf({ request_id: bad }), undefined, String(bad));
  }
});

Deno.test("checkRequestId refuses a present request_id that is not a string or a number", sanitized, () => {
  checkRequestId({});
  checkRequestId({ request_id: "a" });
  checkRequestId({ request_id: 7 });
  for (const bad of [null, true, false, { id: 1 }, [1], "x".repeat(257)]) {
    assertEquals(codeOf(() => checkRequestId({ request_id: bad })), "bad_request", JSON.stringify(bad));
  }
});

Deno.test("field reads only a frame's own fields", sanitized, () => {
  const frame = decodeFrame(encoder.encode('{"type":"ping","__proto__":{"polluted":1}}'));
  assertEquals(field(frame, "type"), "ping");
  assertEquals(field(frame, "toString"), undefined);
  assertEquals(field(frame, "constructor"), undefined);
  assertEquals(field(frame, "hasOwnProperty"), undefined);
  assertEquals(field(frame, "polluted"), undefined);
  assertEquals(field(frame, "missing"), undefined);
  assertEquals(({} as Frame).polluted, undefined, "the prototype was not polluted");
});

Deno.test("encodeLine writes one JSON line, escaping line breaks inside strings", sanitized, () => {
  const bytes = encodeLine({ type: "new_message", message: "a\nb\r\nc\u2028😀" });
  const text = decoder.decode(bytes);
  assertEquals(text.indexOf("\n"), text.length - 1);
  assert(!text.includes("\r"));
  assertEquals(JSON.parse(text), { type: "new_message", message: "a\nb\r\nc\u2028😀" });
});

Deno.test("errorReply builds the error frame with optional retry_after_ms and request_id", sanitized, () => {
  const plain = new ChatError("invalid_message", "message must not be empty");
  assertEquals(errorReply(plain), { type: "error", code: "invalid_message", message: "message must not be empty" });
  assertEquals(errorReply(plain, "r1"), {
    type: "error",
    code: "invalid_message",
    message: "message must not be empty",
    request_id: "r1",
  });
  const limited = new ChatError("rate_limited", "Too many messages", { retryAfterMs: 250 });
  assertEquals(errorReply(limited, 0), {
    type: "error",
    code: "rate_limited",
    message: "Too many messages",
    retry_after_ms: 250,
    request_id: 0,
  });
});

Deno.test("errorReply with a response type builds a register/login response with status error", sanitized, () => {
  const taken = new ChatError("username_taken", "Username already exists");
  assertEquals(errorReply(taken, undefined, "register_response"), {
    type: "register_response",
    status: "error",
    code: "username_taken",
    message: "Username already exists",
  });
  const throttled = new ChatError("too_many_attempts", "Too many failed logins", { retryAfterMs: 12000 });
  assertEquals(errorReply(throttled, 5, "login_response"), {
    type: "login_response",
    status: "error",
    code: "too_many_attempts",
    message: "Too many failed logins",
    retry_after_ms: 12000,
    request_id: 5,
  });
});

Deno.test("isValidUsername accepts 3 to 50 characters of [A-Za-z0-9_.-]", sanitized, () => {
  for (const ok of ["abc", "a".repeat(50), "John_Doe", "a.b-c_d", "123", "...", "-_-"]) {
    assert(isValidUsername(ok), ok);
    assertEquals(checkUsername(ok), ok);
  }
  for (
    const bad of ["", "ab", "a".repeat(51), "a b", "abc!", "ábc", "abc\n", "ab\0c", "a/b", 123, null, undefined, []]
  ) {
    assert(!isValidUsername(bad), JSON.stringify(bad));
    assertEquals(codeOf(() => checkUsername(bad)), "invalid_username", JSON.stringify(bad));
  }
});

Deno.test("isValidPassword counts UTF-8 bytes, 6 to 72, and refuses NUL", sanitized, () => {
  assertEquals([MIN_PASSWORD_BYTES, MAX_PASSWORD_BYTES], [6, 72]);
  for (const ok of ["abcdef", "x".repeat(72), "€".repeat(24), "€€", "ééé", "😀😀", "a b c "]) {
    assert(isValidPassword(ok), `${ok} (${encoder.encode(ok).length} bytes)`);
    assertEquals(checkPassword(ok), ok);
  }
  for (
    const bad of ["abcde", "x".repeat(73), "€".repeat(25), "€".repeat(24) + "a", "€", "abc\0def", 123456, null, {}]
  ) {
    assert(!isValidPassword(bad), JSON.stringify(bad));
    assertEquals(codeOf(() => checkPassword(bad)), "invalid_password", JSON.stringify(bad));
  }
});

Deno.test("checkMessageText accepts non-blank strings of at most maxLength code points", sanitized, () => {
  for (const ok of ["a", "  a  ", "😀".repeat(5), "€😀é𝄞a", "a\nb", "'); DROP TABLE messages;--"]) {
    assertEquals(checkMessageText(ok, 100), ok);
  }
  assertEquals(checkMessageText("😀".repeat(5), 5), "😀".repeat(5), "5 emoji are 5 characters, not 10");
  assertEquals(checkMessageText("abcde", 5), "abcde");
});

Deno.test("checkMessageText refuses invalid text with invalid_message", sanitized, () => {
  const cases: [string, unknown][] = [
    ["empty", ""],
    ["spaces", "   "],
    ["whitespace", "\t\n\r \u00a0"],
    ["too long", "abcdef"],
    ["too many emoji", "😀".repeat(6)],
    ["NUL", "a\0b"],
    ["lone high surrogate", "a\ud800b"],
    ["lone low surrogate", "a\udc00"],
    ["number", 1],
    ["null", null],
    ["missing", undefined],
    ["array", ["a"]],
    ["object", { a: 1 }],
  ];
  for (const [label, value] of cases) {
    assertEquals(codeOf(() => checkMessageText(value, 5)), "invalid_message", label);
  }
});

Deno.test("parseHistoryQuery defaults limit to 50 and clamps it to the maximum", sanitized, () => {
  assertEquals(DEFAULT_HISTORY_LIMIT, 50);
  assertEquals(parseHistoryQuery({ type: "get_history" }, 500), { limit: 50, before: undefined, after: undefined });
  assertEquals(parseHistoryQuery({ limit: 7 }, 500).limit, 7);
  assertEquals(parseHistoryQuery({ limit: 1 }, 500).limit, 1);
  assertEquals(parseHistoryQuery({ limit: 501 }, 500).limit, 500);
  assertEquals(parseHistoryQuery({ limit: 1e9 }, 500).limit, 500);
  assertEquals(parseHistoryQuery({}, 10).limit, 10, "the default is clamped too");
});

Deno.test("parseHistoryQuery refuses a limit that is not an integer of at least 1", sanitized, () => {
  for (const limit of [0, -1, 1.5, "10", true, [], {}, NaN, Infinity]) {
    assertEquals(codeOf(() => parseHistoryQuery({ limit }, 500)), "invalid_limit", JSON.stringify(limit));
  }
});

Deno.test("parseHistoryQuery reads before and after as non-negative integer ids", sanitized, () => {
  assertEquals(parseHistoryQuery({ before: 10, after: 3 }, 500), { limit: 50, before: 10, after: 3 });
  assertEquals(parseHistoryQuery({ before: 0 }, 500).before, 0);
  assertEquals(parseHistoryQuery({ after: 0 }, 500).after, 0);
  for (const name of ["before", "after"]) {
    for (const value of [-1, 1.5, "3", true, [], {}, 2 ** 53]) {
      assertEquals(codeOf(() => parseHistoryQuery({ [name]: value }, 500)), "bad_request", `${name}=${value}`);
    }
  }
});

Deno.test("clientMsgIdOf accepts 1 to 64 of [A-Za-z0-9_.:-] and treats null as absent", sanitized, () => {
  for (const ok of ["a", "x".repeat(64), "550e8400-e29b-41d4-a716-446655440000", "web:1.2_3"]) {
    assertEquals(clientMsgIdOf({ client_msg_id: ok }), ok);
  }
  assertEquals(clientMsgIdOf({}), undefined);
  assertEquals(clientMsgIdOf({ client_msg_id: null }), undefined);
  for (const bad of ["", "x".repeat(65), "has space", "é", "a/b", 7, true, ["a"], {}]) {
    try {
      clientMsgIdOf({ client_msg_id: bad });
      fail(`accepted ${JSON.stringify(bad)}`);
    } catch (err) {
      assert(err instanceof ChatError && err.code === "bad_request", JSON.stringify(bad));
    }
  }
});
