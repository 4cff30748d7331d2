/* The outbox: requests that start an answer (send, edit, regenerate), oldest first, each sent
 * once the answer before it has ended, and built only then, so that two messages typed while
 * offline become a question, its answer, then the next question (not two branches of one parent,
 * nor two new conversations). No page and no socket here: socket.mjs asks it what to send and
 * tells it what happened, and tests/js checks its rules with Node's test runner. */

import { outboxMaySend } from "./stream_state.mjs";

export class Outbox {
  constructor() {
    // Waiting requests: { key, content, frame() }, where frame() builds the request when it goes
    // out and `content` is what the user typed, shown as a pending bubble until then ("" for a
    // request with nothing to show: an edit or a regenerate).
    this.items = [];
    this.lastKey = 0;
    // request_id of the request sent last, until its answer has started.
    this.sending = null;
    // The request sent last, until it is answered or refused: { id, content }.
    this.lastRequest = null;
    // request_id of a chat.send that has no conversation yet.
    this.awaitingNew = null;
  }

  get size() {
    return this.items.length;
  }

  // Queues `item` ({ content, frame() }); returns its key, for cancel().
  add(item) {
    this.lastKey += 1;
    this.items.push({ ...item, key: this.lastKey });
    return this.lastKey;
  }

  // Takes a request out before it is sent; false if it is not waiting (already sent, say).
  cancel(key) {
    const index = this.items.findIndex((item) => item.key === key);
    if (index < 0) return false;
    this.items.splice(index, 1);
    return true;
  }

  // What the page shows as not sent yet, oldest first: [{ key, content }].
  pending() {
    return this.items.filter((item) => item.content).map(({ key, content }) => ({ key, content }));
  }

  // The next request's frame if one may go out now (`open`: the socket is; `syncing`: a
  // subscribe waits for its reply; `streaming`: answers being written), else null.
  take({ open, syncing, streaming }) {
    const waiting = this.items.length;
    if (!outboxMaySend({ waiting, open, sending: this.sending, syncing, streaming })) return null;
    const item = this.items.shift();
    const frame = item.frame();
    this.sending = frame.request_id;
    this.lastRequest = { id: frame.request_id, content: item.content };
    if (frame.type === "chat.send" && !frame.conversation) this.awaitingNew = frame.request_id;
    return frame;
  }

  // An answer was created for request `requestId`: the outbox now waits for it to end.
  started(requestId) {
    if (requestId && requestId === this.sending) this.sending = null;
  }

  // The socket closed. True if a request was on its way: the page may not show its outcome.
  closed() {
    const wasSending = Boolean(this.sending);
    this.sending = null;
    return wasSending;
  }

  // Whether a conversation.created frame (with `requestId`, which may be absent) answers our
  // chat.send that started a new conversation; if so, it is no longer awaited.
  claimNew(requestId) {
    const mine = Boolean(this.awaitingNew) && (!requestId || requestId === this.awaitingNew);
    if (mine) this.awaitingNew = null;
    return mine;
  }

  // The server refused request `requestId`: the text it carried if it was ours, else null.
  refused(requestId) {
    const request = this.lastRequest;
    if (!request || !requestId || requestId !== request.id) return null;
    this.lastRequest = null;
    if (this.sending === requestId) this.sending = null;
    if (this.awaitingNew === requestId) this.awaitingNew = null;
    return request.content;
  }

  // Empties the outbox, returning the texts that waited (oldest first).
  drain() {
    return this.items.splice(0).map((item) => item.content);
  }
}
