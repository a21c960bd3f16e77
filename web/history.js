// History per conversation (get_history with its room): the newest page, older pages before the
// oldest event known, and the catch-up after a reconnect, paging forward with `after` until
// nothing newer is left, so that nothing is missed or doubled. Each returns the events that were
// new, or the error reply.

import { LOBBY } from "./state.js";

export const PAGE_SIZE = 50;
/** Catch-up pages after a reconnect: at most this many, of the server's largest page each. */
const MAX_CATCH_UP_PAGES = 200;
const CATCH_UP_PAGE = 500;

export class History {
  #connection;

  constructor(connection) {
    this.#connection = connection;
  }

  /** The newest page of `conversation`. */
  async newest(conversation) {
    const reply = await this.#ask(conversation, { limit: PAGE_SIZE });
    if (reply.type !== "history_response") return { error: reply };
    conversation.hasOlder = reply.messages.length >= PAGE_SIZE;
    conversation.loaded = true;
    return { added: conversation.add(reply.messages) };
  }

  /** The page before the oldest event known. */
  async older(conversation) {
    const reply = await this.#ask(conversation, { before: conversation.oldestId, limit: PAGE_SIZE });
    if (reply.type !== "history_response") return { error: reply };
    conversation.hasOlder = reply.messages.length >= PAGE_SIZE;
    return { added: conversation.add(reply.messages) };
  }

  /** Pages forward from the newest event known until nothing newer is left. */
  async catchUp(conversation) {
    const added = [];
    for (let page = 0; page < MAX_CATCH_UP_PAGES; page++) {
      const reply = await this.#ask(conversation, { after: conversation.newestId, limit: CATCH_UP_PAGE });
      if (reply.type !== "history_response") return { error: reply, added };
      if (reply.messages.length === 0) break;
      added.push(...conversation.add(reply.messages));
    }
    return { added };
  }

  #ask(conversation, query) {
    const frame = { type: "get_history", ...query };
    if (conversation.id !== LOBBY) frame.room = conversation.id;
    return this.#connection.request(frame);
  }
}
