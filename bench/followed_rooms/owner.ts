// Logs one v2 user in, creates N rooms (it is their member), then holds the connection, reading,
// until killed: the server follows every room while it does. Used by run.sh.
// usage: deno run --allow-net bench/followed_rooms/owner.ts PORT N

const [port, count] = [Number(Deno.args[0]), Number(Deno.args[1])];
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
const name = `owner${Date.now()}`;
const requests = [
  { type: "hello", protocol: 2 },
  { type: "register", username: name, password: "secret123" },
  { type: "login", username: name, password: "secret123" },
  ...Array.from({ length: count }, (_, i) => ({ type: "room_create", name: `r${i}_${name}`, visibility: "public" })),
];
const bytes = new TextEncoder().encode(requests.map((r) => JSON.stringify(r) + "\n").join(""));
for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));

const decoder = new TextDecoder();
const buffer = new Uint8Array(65536);
let pending = "";
let created = 0;
while (created < count) {
  const read = await conn.read(buffer);
  if (read === null) throw new Error("the server closed the connection");
  pending += decoder.decode(buffer.subarray(0, read), { stream: true });
  const lines = pending.split("\n");
  pending = lines.pop()!;
  for (const line of lines) {
    if (line.includes('"type":"error"')) throw new Error(line);
    if (line.includes('"type":"room_response"')) created++;
  }
}
await Deno.stdout.write(new TextEncoder().encode(`created ${created}\n`));
// Reads (and drops) the lobby's broadcasts until killed.
while (await conn.read(buffer) !== null) continue;
