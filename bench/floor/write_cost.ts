// deno-lint-ignore-file no-console -- a measuring program: its report is its output
// The floor under fan-out: what one socket write costs in Deno, with nothing of the server around
// it. Accepts `conns` connections, then writes a `bytes`-byte chunk to each, `rounds` times (the
// next round once every write of this one has completed, as the server's writers do), and prints
// the process's CPU per write. write_cost.mjs does the same on Node.js; reader.mjs is the client.
//
//   deno run -A bench/floor/write_cost.ts 7001 50 4000 6000 & node bench/floor/reader.mjs 7001 50
import process from "node:process";

const [port, conns, rounds, bytes] = Deno.args.map(Number);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const sockets: Deno.Conn[] = [];
for await (const conn of listener) {
  sockets.push(conn);
  if (sockets.length === conns) break;
}
const chunk = new Uint8Array(bytes).fill(120);
chunk[bytes - 1] = 10;
const before = process.cpuUsage();
const started = performance.now();
for (let round = 0; round < rounds; round++) {
  await Promise.all(sockets.map(async (conn) => {
    let offset = 0;
    while (offset < chunk.length) offset += await conn.write(offset === 0 ? chunk : chunk.subarray(offset));
  }));
}
const cpu = process.cpuUsage(before);
const writes = conns * rounds;
console.log(JSON.stringify({
  runtime: "deno",
  writes,
  seconds: +((performance.now() - started) / 1000).toFixed(2),
  user_us_per_write: +(cpu.user / writes).toFixed(2),
  system_us_per_write: +(cpu.system / writes).toFixed(2),
}));
for (const conn of sockets) conn.close();
