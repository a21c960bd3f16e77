// deno-lint-ignore-file no-console -- a measuring program: its report is its output
// The floor under an idle connection: RSS per connection Deno holds for `count` idle sockets that
// a bare accept-and-read loop holds ("tcp", a 256-byte read buffer each, as
// ../shared/peers/deno-floor.ts), or that Deno.serve + Deno.upgradeWebSocket holds with one
// message handler ("ws"), nothing of the chat server around them. idle_clients.mjs opens half the
// connections, pauses, then the rest; the RSS growth over the second half, per connection, leaves
// out the fixed costs (compiled code, the heap's first pages).
//
//   deno run -A --v8-flags=--expose-gc bench/floor/idle_cost.ts ws 7003 2000 & node bench/floor/idle_clients.mjs ws 7003 2000
const [mode, portText, countText] = Deno.args;
const port = Number(portText);
const count = Number(countText);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

let open = 0;
let halfDone: () => void;
let allDone: () => void;
const halfOpen = new Promise<void>((resolve) => halfDone = resolve);
const allOpen = new Promise<void>((resolve) => allDone = resolve);
const opened = () => {
  open++;
  if (open === count / 2) halfDone();
  if (open === count) allDone();
};
const settledRss = async () => {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  gc();
  await new Promise((resolve) => setTimeout(resolve, 300));
  return Deno.memoryUsage().rss;
};

if (mode === "tcp") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const conn of listener) {
      opened();
      (async () => {
        const buffer = new Uint8Array(256);
        try {
          while ((await conn.read(buffer)) !== null) { /* drop */ }
        } catch { /* closed */ }
      })();
    }
  })();
} else {
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = () => {};
    socket.onopen = opened;
    return response;
  });
}
await halfOpen;
const before = await settledRss();
await allOpen;
const after = await settledRss();
console.log(JSON.stringify({ mode, count, kb_per_connection: +((after - before) / (count / 2) / 1024).toFixed(2) }));
Deno.exit(0);
