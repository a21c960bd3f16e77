// Opens `count` idle connections to 127.0.0.1:`port` for idle_cost.ts, half, then after a pause
// of 3 s the rest: plain TCP ("tcp"), or WebSockets by a hand-made handshake ("ws"); holds them
// until the server goes.
import net from "node:net";

const [mode, port, count] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const HANDSHAKE = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

function connect() {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      if (mode === "ws") socket.write(HANDSHAKE);
      resolve();
    });
    socket.on("data", () => {});
    socket.on("error", () => {});
    socket.on("close", () => process.exit(0));
  });
}

async function open(n) {
  for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: Math.min(20, n - i) }, connect));
}

await open(count / 2);
await new Promise((resolve) => setTimeout(resolve, 3000));
await open(count / 2);
