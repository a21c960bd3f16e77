import { assert, assertEquals, fail } from "../../tests/support/assert.ts";
import { type ByteReader, forEachLine, LineTooLongError, MAX_READ_BUFFER, MIN_READ_BUFFER } from "./framing.ts";
import { sanitized } from "../../tests/support/util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Hands out the given chunks one read at a time (a chunk larger than the read buffer is split
 * across reads, as a socket would), then end of stream. Records what it was asked for.
 */
class ChunkReader implements ByteReader {
  readonly #chunks: Uint8Array[];
  bytesGiven = 0;
  readonly bufferSizes: number[] = [];

  constructor(chunks: (string | Uint8Array)[]) {
    this.#chunks = chunks.map((c) => typeof c === "string" ? encoder.encode(c) : c);
  }

  read(buffer: Uint8Array): Promise<number | null> {
    this.bufferSizes.push(buffer.length);
    const chunk = this.#chunks.shift();
    if (chunk === undefined) return Promise.resolve(null);
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#chunks.unshift(chunk.subarray(n));
    this.bytesGiven += n;
    return Promise.resolve(n);
  }
}

/** Never sends a newline: `byte` for ever, as much as each read asks for. */
class EndlessReader implements ByteReader {
  bytesGiven = 0;
  largestBuffer = 0;
  constructor(readonly byte: number, readonly perRead = Infinity) {}

  read(buffer: Uint8Array): Promise<number | null> {
    this.largestBuffer = Math.max(this.largestBuffer, buffer.length);
    const n = Math.min(buffer.length, this.perRead);
    buffer.fill(this.byte, 0, n);
    this.bytesGiven += n;
    return Promise.resolve(n);
  }
}

/** Every line as text, copied as soon as it is yielded (the views may be reused). */
async function collect(reader: ByteReader, maxLineBytes = 1024): Promise<string[]> {
  const out: string[] = [];
  await forEachLine(reader, maxLineBytes, (line) => void out.push(decoder.decode(line)));
  return out;
}

async function expectTooLong(reader: ByteReader, maxLineBytes: number): Promise<string[]> {
  const seen: string[] = [];
  try {
    await forEachLine(reader, maxLineBytes, (line) => void seen.push(decoder.decode(line)));
  } catch (err) {
    assert(err instanceof LineTooLongError, `expected LineTooLongError, got ${err}`);
    assertEquals(err.maxLineBytes, maxLineBytes);
    return seen;
  }
  fail("no LineTooLongError");
}

Deno.test("forEachLine yields each line of one read without its line end", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(["one\ntwo\nthree\n"])), ["one", "two", "three"]);
});

Deno.test("forEachLine joins a line split across reads", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(['{"ty', 'pe":"pi', 'ng"}\n'])), ['{"type":"ping"}']);
  const bytes = [...encoder.encode('{"type":"ping"}\n{"x":1}\n')].map((b) => new Uint8Array([b]));
  assertEquals(await collect(new ChunkReader(bytes)), ['{"type":"ping"}', '{"x":1}']);
});

Deno.test("forEachLine keeps a multi-byte character split across reads intact", sanitized, async () => {
  const text = "€😀é𝄞";
  const bytes = encoder.encode(`${text}\n`);
  const chunks = [...bytes].map((b) => new Uint8Array([b]));
  const lines: Uint8Array[] = [];
  await forEachLine(new ChunkReader(chunks), 1024, (line) => void lines.push(line.slice()));
  assertEquals(lines, [bytes.subarray(0, bytes.length - 1)]);
  assertEquals(decoder.decode(lines[0]), text);
});

Deno.test("forEachLine strips CRLF, also when the CR and LF arrive in different reads", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(["a\r\nb\r\n"])), ["a", "b"]);
  assertEquals(await collect(new ChunkReader(["abc\r", "\ndef\r", "\n"])), ["abc", "def"]);
});

Deno.test("forEachLine keeps a CR that is not at the end of the line", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(["a\rb\n\rc\n"])), ["a\rb", "\rc"]);
});

Deno.test("forEachLine skips empty lines", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(["\n\n\r\n", "a\n\n", "\r\n\nb\n\n"])), ["a", "b"]);
  assertEquals(await collect(new ChunkReader(["\n", "\r\n", "\n"])), []);
});

Deno.test("forEachLine yields a final line without a newline at end of stream", sanitized, async () => {
  assertEquals(await collect(new ChunkReader(["a\nlast"])), ["a", "last"]);
  assertEquals(await collect(new ChunkReader(["a\nla", "st\r"])), ["a", "last"]);
  assertEquals(await collect(new ChunkReader(["a\n\r"])), ["a"]);
});

Deno.test("forEachLine ends on an empty stream", sanitized, async () => {
  assertEquals(await collect(new ChunkReader([])), []);
});

Deno.test("forEachLine accepts a line of exactly maxLineBytes, with LF or CRLF", sanitized, async () => {
  const max = 2000;
  const exact = "x".repeat(max);
  assertEquals(await collect(new ChunkReader([`${exact}\n`]), max), [exact]);
  assertEquals(await collect(new ChunkReader([`${exact}\r\n`]), max), [exact]);
  assertEquals(await collect(new ChunkReader([exact.slice(0, 700), exact.slice(700), "\r", "\n"]), max), [exact]);
  assertEquals(await collect(new ChunkReader([exact]), max), [exact], "at end of stream too");
});

Deno.test("forEachLine throws LineTooLongError for a line of maxLineBytes + 1", sanitized, async () => {
  const max = 2000;
  const long = "x".repeat(max + 1);
  assertEquals(await expectTooLong(new ChunkReader([`ok\n${long}\nlater\n`]), max), ["ok"]);
  assertEquals(await expectTooLong(new ChunkReader(["ok\n", long.slice(0, 10), long.slice(10), "\n"]), max), ["ok"]);
  assertEquals(await expectTooLong(new ChunkReader([`${long}\r\n`]), max), []);
  assertEquals(await expectTooLong(new ChunkReader([long]), max), [], "at end of stream");
});

Deno.test(
  "forEachLine throws LineTooLongError before a newline arrives, having buffered at most the bound",
  sanitized,
  async () => {
    for (const perRead of [1, 100, 1024, Infinity]) {
      const max = 4096;
      const reader = new EndlessReader(0x78, perRead);
      await expectTooLong(reader, max);
      // It stopped reading within one read of passing the bound: nothing grows without limit.
      assert(
        reader.bytesGiven <= max + 1 + Math.min(perRead, reader.largestBuffer),
        `read ${reader.bytesGiven} bytes for a ${max}-byte bound (${perRead} per read)`,
      );
      assert(reader.bytesGiven > max, "not before the line was actually too long");
      assert(reader.largestBuffer <= MAX_READ_BUFFER, `read buffer grew to ${reader.largestBuffer}`);
    }
  },
);

Deno.test("forEachLine bounds a line of CRs without a newline too", sanitized, async () => {
  const max = 1024;
  const reader = new EndlessReader(0x0d);
  await expectTooLong(reader, max);
  assert(reader.bytesGiven <= max + 1 + reader.largestBuffer);
});

Deno.test("forEachLine keeps its read buffer between MIN_READ_BUFFER and MAX_READ_BUFFER", sanitized, async () => {
  const big = "y".repeat(300_000);
  const reader = new ChunkReader([`${big}\n`, "small\n", "small\n", "small\n"]);
  assertEquals(await collect(reader, 400_000), [big, "small", "small", "small"]);
  assertEquals(reader.bufferSizes[0], MIN_READ_BUFFER);
  assert(reader.bufferSizes.every((n) => n >= MIN_READ_BUFFER && n <= MAX_READ_BUFFER), `${reader.bufferSizes}`);
  assertEquals(Math.max(...reader.bufferSizes), MAX_READ_BUFFER, "a bulk sender gets the larger buffer");
  assertEquals(reader.bufferSizes.at(-1), MIN_READ_BUFFER, "and gives it back once traffic is small");
});

Deno.test("forEachLine yields many lines of one large read correctly", sanitized, async () => {
  const many = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
  assertEquals(await collect(new ChunkReader([many.join("\n") + "\n"])), many);
});

Deno.test("forEachLine passes a reader's error on", sanitized, async () => {
  const reader: ByteReader = {
    read: () => Promise.reject(new Deno.errors.ConnectionReset("reset")),
  };
  try {
    await collect(reader);
    fail("no error");
  } catch (err) {
    assert(err instanceof Deno.errors.ConnectionReset, String(err));
  }
});
