// The WebSocket to the chat server: requests matched to replies by request_id, broadcasts handed
// on, and reconnection with backoff. Knows nothing of the DOM. One WebSocket message may carry
// several frames separated by "\n" (contract v1.2, "WebSocket batching").

const REQUEST_TIMEOUT_MS = 15_000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15_000];

/** A request that did not get its reply: the connection was lost, or the server took too long. */
export class ConnectionLost extends Error {
  name = "ConnectionLost";
}

export class ChatConnection {
  /** Called with every new_message frame (live, or the own copy of a send). */
  onMessage = (_frame) => {};
  /** Called with every v2 push other than new_message: member_event, read, typing. */
  onPush = (_frame) => {};
  /** Called with every error frame no request waits for (refusals before a close, say). */
  onError = (_frame) => {};
  /** Called each time the socket is open, before anything else is sent on it. */
  onOpen = () => {};
  /** Called with a short description of the link: "connected", "reconnecting in 2 s…". */
  onStatus = (_text) => {};

  #url;
  #socket = null;
  #nextRequestId = 1;
  /** Requests waiting for their reply, by request_id. */
  #waiting = new Map();
  #attempt = 0;
  #stopped = true;
  #retryTimer = undefined;

  constructor(url) {
    this.#url = url;
  }

  get isOpen() {
    return this.#socket !== null && this.#socket.readyState === WebSocket.OPEN;
  }

  /** Connects, and reconnects whenever the link is lost, until stop(). */
  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#socket?.close(1000, "bye");
  }

  /** Sends `frame` with a fresh request_id; resolves with the reply that echoes it. */
  request(frame) {
    if (!this.isOpen) return Promise.reject(new ConnectionLost("not connected"));
    const requestId = `r${this.#nextRequestId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(requestId);
        reject(new ConnectionLost("no reply from the server"));
      }, REQUEST_TIMEOUT_MS);
      this.#waiting.set(requestId, { resolve, reject, timer });
      this.#socket.send(JSON.stringify({ ...frame, request_id: requestId }));
    });
  }

  /** Sends `frame`, which gets no reply (a typing notice); false when not connected. */
  notify(frame) {
    if (!this.isOpen) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  #connect() {
    this.onStatus("connecting…");
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    socket.onopen = () => {
      this.#attempt = 0;
      this.onStatus("connected");
      this.onOpen();
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      for (const line of event.data.split("\n")) if (line.trim() !== "") this.#receive(line);
    };
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      for (const { reject, timer } of this.#waiting.values()) {
        clearTimeout(timer);
        reject(new ConnectionLost("connection lost"));
      }
      this.#waiting.clear();
      if (this.#stopped) return;
      // Backoff with jitter, so that a restarted server is not hit by every tab at once.
      const base = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      this.#attempt++;
      this.onStatus(`connection lost, reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
      this.#retryTimer = setTimeout(() => this.#connect(), delay);
    };
  }

  #receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (frame.type === "new_message") this.onMessage(frame);
    else if (frame.type === "member_event" || frame.type === "read" || frame.type === "typing") this.onPush(frame);
    const waiting = frame.request_id === undefined ? undefined : this.#waiting.get(frame.request_id);
    if (waiting) {
      this.#waiting.delete(frame.request_id);
      clearTimeout(waiting.timer);
      waiting.resolve(frame);
    } else if (frame.type === "error") {
      this.onError(frame);
    }
  }
}
