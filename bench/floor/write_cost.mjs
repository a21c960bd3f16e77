// deno-lint-ignore-file no-console -- a measuring program: its report is its output
// write_cost.ts's twin on Node.js: the same writes through net.Socket.write.
//
//   node bench/floor/write_cost.mjs 7002 50 4000 6000 & node bench/floor/reader.mjs 7002 50
import net from "node:net";

const [port, conns, rounds, bytes] = process.argv.slice(2).map(Number);
const sockets = [];
const chunk = Buffer.alloc(bytes, 120);
chunk[bytes - 1] = 10;
const server = net.createServer((socket) => {
  sockets.push(socket);
  if (sockets.length === conns) run();
});
server.listen(port, "127.0.0.1");

async function run() {
  const before = process.cpuUsage();
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    await Promise.all(sockets.map((socket) => new Promise((resolve) => socket.write(chunk, resolve))));
  }
  const cpu = process.cpuUsage(before);
  const writes = conns * rounds;
  console.log(JSON.stringify({
    runtime: "node",
    writes,
    seconds: +((performance.now() - started) / 1000).toFixed(2),
    user_us_per_write: +(cpu.user / writes).toFixed(2),
    system_us_per_write: +(cpu.system / writes).toFixed(2),
  }));
  for (const socket of sockets) socket.destroy();
  server.close();
}
