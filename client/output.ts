// The client's only writer to stdout and stderr (it needs no console.*): each string goes out
// whole, synchronously, so lines from different sources never interleave.

const encoder = new TextEncoder();

interface SyncWriter {
  writeSync(bytes: Uint8Array): number;
}

/** False when stdout is gone (a closed pipe, as with `| head -1`): the caller should stop. */
export function writeStdout(text: string): boolean {
  return writeAll(Deno.stdout, text);
}

export function writeStderr(text: string): boolean {
  return writeAll(Deno.stderr, text);
}

function writeAll(file: SyncWriter, text: string): boolean {
  const bytes = encoder.encode(text);
  try {
    let offset = 0;
    while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.BrokenPipe) return false;
    throw err;
  }
}

/** Styling only for a terminal, and never when NO_COLOR is set. */
export function stdoutIsColorTerminal(): boolean {
  return Deno.stdout.isTerminal() && !Deno.noColor;
}
