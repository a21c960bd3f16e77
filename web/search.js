// Search (protocol v2): a box in the sidebar, results newest first with their conversation and
// time, more on demand (the reply's `next` as `before`), and a click that opens the conversation
// at the message. Built with textContent only.

import { formatTime } from "./format.js";

export const SEARCH_PAGE = 20;

export class SearchView {
  /** Called with a result (a new_message frame with its room) that was clicked. */
  onOpen = () => {};

  #doc;
  #el;
  #connection;
  #titleOf;
  #query = "";
  #next;
  #generation = 0;

  /** `titleOf(room)`: the conversation's name for people. */
  constructor(doc, connection, titleOf) {
    this.#doc = doc;
    this.#el = (id) => doc.getElementById(id);
    this.#connection = connection;
    this.#titleOf = titleOf;
    this.#el("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.search(this.#el("search-query").value);
    });
    this.#el("search-more").addEventListener("click", () => void this.#page());
  }

  /** Forgets the results (at logout). */
  clear() {
    this.#generation++;
    this.#query = "";
    this.#next = undefined;
    this.#el("search-query").value = "";
    this.#el("search-results").replaceChildren();
    this.#el("search-status").textContent = "";
    this.#el("search-more").hidden = true;
  }

  async search(query) {
    this.#query = query.trim();
    this.#next = undefined;
    this.#el("search-results").replaceChildren();
    this.#el("search-more").hidden = true;
    if (this.#query === "") {
      this.#el("search-status").textContent = "";
      return;
    }
    await this.#page();
  }

  async #page() {
    const generation = ++this.#generation;
    const frame = { type: "search", query: this.#query, limit: SEARCH_PAGE };
    if (this.#next !== undefined) frame.before = this.#next;
    this.#el("search-status").textContent = "Searching…";
    let reply;
    try {
      reply = await this.#connection.request(frame);
    } catch {
      reply = { type: "error", message: "Not connected" };
    }
    if (generation !== this.#generation) return;
    if (reply.type !== "search_response") {
      this.#el("search-status").textContent = reply.message ?? "The search failed.";
      return;
    }
    const list = this.#el("search-results");
    for (const result of reply.results) list.append(this.#item(result));
    this.#next = reply.next;
    this.#el("search-more").hidden = reply.next === undefined;
    const count = list.children.length;
    this.#el("search-status").textContent = count === 0 ? "No messages match." : `${count} shown, newest first.`;
  }

  #item(result) {
    const item = this.#doc.createElement("li");
    const button = this.#doc.createElement("button");
    button.type = "button";
    button.className = "search-result";
    button.dataset.room = result.room;
    button.dataset.id = String(result.id);
    const where = this.#span("where", `${this.#titleOf(result.room)} · ${formatTime(result.timestamp)}`);
    const who = this.#span("sender", result.sender);
    const text = this.#span("text", result.message);
    button.append(where, who, text);
    button.addEventListener("click", () => this.onOpen(result));
    item.append(button);
    return item;
  }

  #span(className, text) {
    const span = this.#doc.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }
}
