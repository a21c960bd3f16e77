// Bounded line framing over a byte stream: newline-delimited frames, "\r\n" accepted, empty lines
// skipped, and memory per connection capped at the line limit.

/** What the splitter reads from: a Deno.Conn, or anything with the same `read`. */
export interface ByteReader {
  read(buffer: Uint8Array): Promise<number | null>;
}

export class LineTooLongError extends Error {
  override readonly name = "LineTooLongError";
  constructor(readonly maxLineBytes: number) {
    super(`Line longer than ${maxLineBytes} bytes`);
  }
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
/**
 * Idle connections hold only this much (each holds a read in progress, so its buffer counts per
 * connection); a read that fills the buffer doubles it, up to MAX_READ_BUFFER. Most frames fit.
 */
export const MIN_READ_BUFFER = 256;
export const MAX_READ_BUFFER = 64 * 1024;

/**
 * What to do with each line: the returned promise, if any, is awaited before the next line
 * (back-pressure). The line may be a view of a reused read buffer: it MUST NOT be kept after the
 * call (or its promise) returns.
 */
export type LineHandler = (line: Uint8Array) => Promise<void> | void;

/**
 * Where readLines() hands its lines. A server's connection is its own sink, so that an idle
 * connection holds no closures for it.
 */
export interface LineSink {
  /** True once no more lines are wanted: reading stops. */
  readonly closed: boolean;
  /** A line, as LineHandler says. */
  onLine(line: Uint8Array): Promise<void> | void;
  /**
   * Called once, when reading is over: at the reader's end (`error` undefined; the peer may have
   * only shut down its sending side), once closed, or with the error that ended it
   * (LineTooLongError, a read error, or what onLine threw).
   */
  onEnd(error?: unknown): void;
}

/**
 * Reads `reader` to its end, handing `sink` each non-empty line without its line end (a final
 * line without "\n" counts too), until the sink is closed; never rejects (the sink's onEnd hears
 * how it ended). Fails with LineTooLongError as soon as a line passes `maxLineBytes`, without
 * buffering more than that.
 *
 * One plain async function: every idle connection keeps it suspended in a read, and each extra
 * suspended frame (an async generator, a wrapper awaiting this) cost 0.3-0.4 KB per connection.
 */
export async function readLines(reader: ByteReader, maxLineBytes: number, sink: LineSink): Promise<void> {
  let buffer: Uint8Array = new Uint8Array(MIN_READ_BUFFER);
  // Bytes of a line that began in an earlier read, copied out of the reused buffer.
  let partial: Uint8Array[] = [];
  let partialBytes = 0;
  try {
    while (!sink.closed) {
      const n = await reader.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      let start = 0;
      while (start < n && !sink.closed) {
        const end = chunk.indexOf(NEWLINE, start);
        if (end === -1) {
          // A "\r" may still be dropped from the end of the line, hence the one extra byte.
          partialBytes += n - start;
          if (partialBytes > maxLineBytes + 1) throw new LineTooLongError(maxLineBytes);
          partial.push(chunk.slice(start));
          break;
        }
        let line: Uint8Array = chunk.subarray(start, end);
        if (partialBytes > 0) {
          line = concat(partial, partialBytes, line);
          partial = [];
          partialBytes = 0;
        }
        start = end + 1;
        const length = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length;
        if (length > maxLineBytes) throw new LineTooLongError(maxLineBytes);
        if (length > 0) {
          const wait = sink.onLine(line.subarray(0, length));
          if (wait) await wait;
        }
      }
      buffer = nextBufferSize(buffer, n);
    }
    if (partialBytes > 0 && !sink.closed) {
      const line = concat(partial, partialBytes, new Uint8Array(0));
      const length = line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length;
      if (length > maxLineBytes) throw new LineTooLongError(maxLineBytes);
      if (length > 0) await sink.onLine(line.subarray(0, length));
    }
  } catch (err) {
    sink.onEnd(err);
    return;
  }
  sink.onEnd();
}

/**
 * readLines() with a handler: resolves at the reader's end (or once `stopped()` says so), rejects
 * with what ended it otherwise.
 */
export function forEachLine(
  reader: ByteReader,
  maxLineBytes: number,
  onLine: LineHandler,
  stopped: () => boolean = () => false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    void readLines(reader, maxLineBytes, {
      get closed() {
        return stopped();
      },
      onLine,
      onEnd: (error) => error === undefined ? resolve() : reject(error),
    });
  });
}

/** Grows the read buffer for bulk senders and gives the memory back once traffic is small again. */
function nextBufferSize(buffer: Uint8Array, bytesRead: number): Uint8Array {
  if (bytesRead === buffer.length && buffer.length < MAX_READ_BUFFER) return new Uint8Array(buffer.length * 2);
  if (bytesRead < MIN_READ_BUFFER && buffer.length > MIN_READ_BUFFER) return new Uint8Array(MIN_READ_BUFFER);
  return buffer;
}

function concat(parts: Uint8Array[], partsBytes: number, tail: Uint8Array): Uint8Array {
  const out = new Uint8Array(partsBytes + tail.length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  out.set(tail, offset);
  return out;
}
