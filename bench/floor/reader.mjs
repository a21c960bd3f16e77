// Opens `conns` connections to 127.0.0.1:`port` and reads (and drops) everything until they close.
import net from "node:net";

const [port, conns] = process.argv.slice(2).map(Number);
for (let i = 0; i < conns; i++) {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("data", () => {});
  socket.on("error", () => {});
}
