// Byte chunks joined into one buffer: what a socket writer does with the chunks of one turn.

/** `chunks` copied end to end into one new buffer (`total`: their length added up, if known). */
export function concatBytes(chunks: Uint8Array[], total = byteLength(chunks)): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function byteLength(chunks: Uint8Array[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  return total;
}
