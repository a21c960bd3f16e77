// The page's state, without DOM or network: the messages known (by id, in id order, never twice),
// the sends still pending, who is online. The view reads it; the connection feeds it.

export class ChatState {
  /** @type {{id:number,username:string}|null} */
  me = null;
  /** Every message shown, by id. */
  messages = new Map();
  /** Sends not yet acknowledged, by client_msg_id: {clientMsgId, text, status: "pending"|"failed", error?}. */
  pending = new Map();
  /** Users online, sorted. */
  users = [];
  /** False once a history page came back shorter than asked: nothing older exists. */
  hasOlder = true;

  /** The newest id known (0 when none): catching up asks for what is after it. */
  get newestId() {
    let newest = 0;
    for (const id of this.messages.keys()) if (id > newest) newest = id;
    return newest;
  }

  /** The oldest id known, or undefined: older pages are asked for before it. */
  get oldestId() {
    let oldest;
    for (const id of this.messages.keys()) if (oldest === undefined || id < oldest) oldest = id;
    return oldest;
  }

  /**
   * Adds messages (live, history or catch-up, in any order); returns those that were new, in id
   * order. A message seen before is not added again.
   */
  add(messages) {
    const added = [];
    for (const message of messages) {
      if (!Number.isSafeInteger(message.id) || this.messages.has(message.id)) continue;
      const stored = { id: message.id, sender: message.sender, message: message.message, timestamp: message.timestamp };
      this.messages.set(message.id, stored);
      added.push(stored);
    }
    return added.sort((a, b) => a.id - b.id);
  }

  /** Whether `message` was sent by the logged-in user (names are unique regardless of case). */
  isOwn(message) {
    return this.me !== null && message.sender.toLowerCase() === this.me.username.toLowerCase();
  }

  /** Records a send waiting for its acknowledgement. */
  addPending(clientMsgId, text) {
    const entry = { clientMsgId, text, status: "pending" };
    this.pending.set(clientMsgId, entry);
    return entry;
  }

  /** Forgets every message and send: another user logged in. */
  reset() {
    this.messages.clear();
    this.pending.clear();
    this.users = [];
    this.hasOlder = true;
  }
}
