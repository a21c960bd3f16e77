// A child process's output, line by line, as log entries: the server logs JSON (LOG_FORMAT=json);
// any other line (Deno's own warnings) becomes { level: "text", msg: <the line> }. Blank lines are
// skipped. Shared by the test, bench and soak code that runs the server as a subprocess.

export type LogEntry = Record<string, unknown>;

export async function* logEntries(stream: ReadableStream<Uint8Array>): AsyncGenerator<LogEntry> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim() === "") continue;
      try {
        yield JSON.parse(line);
      } catch {
        yield { level: "text", msg: line };
      }
    }
  }
}

/** The port of the server's "chat server listening" line (or of the line `msg`), if `entry` is that line. */
export function listeningPortOf(entry: LogEntry, msg = "chat server listening"): number | undefined {
  if (entry.msg !== msg || typeof entry.address !== "string") return undefined;
  return Number(entry.address.split(":").pop());
}
