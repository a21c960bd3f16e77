// One conversation as the page knows it (the lobby, a room or a DM): its events (messages and
// membership events) by id, in id order, never twice; whether older pages exist; and its outbox,
// the sends not yet acknowledged. Pure: no DOM, no network.

export class Conversation {
  /** Events shown, by id: {kind:"message",id,sender,message,timestamp} or {kind:"member",id,user,membership,by,timestamp}. */
  events = new Map();
  /** Sends not yet acknowledged, by client_msg_id: {clientMsgId, room, text, status: "pending"|"failed"}. */
  pending = new Map();
  /** False once a history page came back shorter than asked: nothing older exists. */
  hasOlder = true;
  /** True once the newest page of history was read. */
  loaded = false;

  constructor(id) {
    this.id = id;
  }

  /** The newest id known (0 when none): catching up asks for what is after it. */
  get newestId() {
    let newest = 0;
    for (const id of this.events.keys()) if (id > newest) newest = id;
    return newest;
  }

  /** The newest message's id (0 when none): what a read marker is moved to. */
  get newestMessageId() {
    let newest = 0;
    for (const event of this.events.values()) if (event.kind === "message" && event.id > newest) newest = event.id;
    return newest;
  }

  /** The oldest id known, or undefined: older pages are asked for before it. */
  get oldestId() {
    let oldest;
    for (const id of this.events.keys()) if (oldest === undefined || id < oldest) oldest = id;
    return oldest;
  }

  /**
   * Adds frames (new_message or member_event; live, history or catch-up, in any order); returns
   * those that were new, in id order. An event seen before is not added again.
   */
  add(frames) {
    const added = [];
    for (const frame of frames) {
      if (!Number.isSafeInteger(frame.id) || this.events.has(frame.id)) continue;
      const event = toEvent(frame);
      if (!event) continue;
      this.events.set(event.id, event);
      added.push(event);
    }
    return added.sort((a, b) => a.id - b.id);
  }

  /** Records a send waiting for its acknowledgement. */
  addPending(clientMsgId, text) {
    const entry = { clientMsgId, room: this.id, text, status: "pending" };
    this.pending.set(clientMsgId, entry);
    return entry;
  }
}

function toEvent(frame) {
  if (frame.type === "member_event") {
    const { id, user, membership, by, timestamp } = frame;
    if (typeof user !== "string" || typeof membership !== "string") return undefined;
    return { kind: "member", id, user, membership, by: typeof by === "string" ? by : null, timestamp };
  }
  if (typeof frame.sender !== "string" || typeof frame.message !== "string") return undefined;
  return { kind: "message", id: frame.id, sender: frame.sender, message: frame.message, timestamp: frame.timestamp };
}
