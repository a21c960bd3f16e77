// The floor for a connection flood: a bare server that refuses every connection from an address
// other than 127.0.0.1 (one error line written, then closed: the least a server that answers can
// do) and answers each line from 127.0.0.1 with a pong carrying its request_id. What the chat
// server's bystander sees during a flood, less what this one's sees, is the chat server's own cost.
//
//   deno run --allow-net=127.0.0.1 bench/refuser.ts   → prints {"msg":"refuser listening","port":N}

const REFUSAL = new TextEncoder().encode(
  '{"type":"error","code":"too_many_connections","message":"Server is at its connection limit"}\n',
);
const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function refuse(conn: Deno.Conn): Promise<void> {
  try {
    await conn.write(REFUSAL);
  } catch {
    // The peer is gone already.
  }
  conn.close();
}

/** Answers every line with a pong (and the line's request_id), until the peer leaves. */
async function answer(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(4096);
  let carry = "";
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const lines = (carry + decoder.decode(buffer.subarray(0, n))).split("\n");
      carry = lines.pop() ?? "";
      const replies = lines.filter(Boolean).map((line) => {
        const requestId = (JSON.parse(line) as { request_id?: unknown }).request_id;
        return JSON.stringify({ type: "pong", request_id: requestId }) + "\n";
      }).join("");
      const bytes = encoder.encode(replies);
      let offset = 0;
      while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
    }
  } catch {
    // Reset by the peer.
  }
  conn.close();
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  Deno.addSignalListener("SIGINT", () => Deno.exit(0));
  await Deno.stdout.write(
    encoder.encode(JSON.stringify({ msg: "refuser listening", port: listener.addr.port }) + "\n"),
  );
  for await (const conn of listener) {
    if ((conn.remoteAddr as Deno.NetAddr).hostname === "127.0.0.1") void answer(conn);
    else void refuse(conn);
  }
}
