/* The WebSocket to /ws/chat/ (docs/protocol.md): connecting and reconnecting with backoff,
 * bringing a fresh socket in step with the conversation (subscribe, then a snapshot or idle),
 * sending what waits in the outbox, and handing each frame to the handler that acts on it.
 *
 * The handlers are given to setUpSocket() rather than imported: the modules that act on frames
 * (messages.mjs, composer.mjs) depend on this one, and files under hashed names cannot form a
 * cycle (each name would depend on the other's content). */

import { CLOSE_UNAUTHENTICATED, composerErrorText, page, showComposerError, state } from "./page.mjs";
import { renderPending, setUpPending } from "./pending.mjs";
import { outboxNotice as outboxNoticeText, reconnectDelay } from "./stream_state.mjs";
import { $, requestId } from "./ui.mjs";

let connection = null;
// Frame type -> function(frame), from setUpSocket().
let handlers = {};
// Frames about one conversation, acted on only when it is the page's.
const CONVERSATION_FRAMES = new Set([
  "message.created",
  "message.snapshot",
  "message.delta",
  "message.done",
  "conversation.idle",
]);

function setConnection(stateName, text, link) {
  connection.dataset.state = stateName;
  const label = $(".connection-text", connection);
  label.replaceChildren(document.createTextNode(text));
  if (link) {
    label.append(" ");
    const anchor = document.createElement("a");
    anchor.href = link.href;
    anchor.textContent = link.text;
    label.append(anchor);
  }
  connection.title = text;
}

export function connect() {
  clearTimeout(state.retryTimer);
  if (state.socket || state.signedOut) return;
  setConnection(state.attempts ? "retrying" : "connecting", state.attempts ? "Reconnecting…" : "Connecting…");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + page.app.dataset.wsPath);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.attempts = 0;
    setConnection("open", "Connected");
    onOpen();
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (frame && typeof frame.type === "string") handleFrame(frame);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    state.syncing = null;
    if (state.outbox.closed()) state.resync = true;
    announceOutbox();
    if (event.code === CLOSE_UNAUTHENTICATED) {
      state.signedOut = true;
      setConnection("closed", "Signed out.", { href: "/accounts/login/?next=" + encodeURIComponent(location.pathname), text: "Sign in" });
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const delay = reconnectDelay(state.attempts, Math.random());
  state.attempts += 1;
  setConnection("retrying", navigator.onLine === false ? "Offline. Waiting for the network…" : "Reconnecting…");
  state.retryTimer = setTimeout(connect, delay);
}

function isOpen() {
  return Boolean(state.socket) && state.socket.readyState === WebSocket.OPEN;
}

// Sends a frame if the socket is open; false if it is not (the caller decides what waits).
export function transmit(frame) {
  if (!isOpen()) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

// A request that starts an answer goes through the outbox (outbox.mjs), whether the socket is
// open or not. `item`: { content, frame() }.
export function enqueue(item) {
  state.outbox.add(item);
  flushOutbox();
  announceOutbox();
}

export function flushOutbox() {
  const frame = state.outbox.take({ open: isOpen(), syncing: state.syncing, streaming: state.streaming.size });
  if (!frame) return;
  transmit(frame);
  announceOutbox();
}

let shownNotice = "";

// Shows what waits in the outbox: its messages as pending bubbles, and a notice while offline.
export function announceOutbox() {
  renderPending(state.outbox.pending());
  const notice = outboxNoticeText(state.outbox.size, isOpen());
  // Only our own notice is replaced: an error shown meanwhile stays.
  const shown = composerErrorText();
  if (notice) showComposerError(notice);
  else if (shownNotice && shown === shownNotice) showComposerError("");
  shownNotice = notice;
}

// Cancels a message that waits in the outbox (its pending bubble's Cancel button).
export function cancelQueued(key) {
  if (state.outbox.cancel(key)) announceOutbox();
}

export function subscribe() {
  const id = page.chat.dataset.conversation;
  if (!id) return;
  const frame = { type: "chat.subscribe", conversation: id, request_id: requestId() };
  // An answer shown as streaming may have ended while we were away: naming it gets its
  // message.done even when nothing runs any more.
  const streaming = $('.message[data-status="streaming"]', page.list);
  if (streaming) frame.message = streaming.dataset.id;
  if (transmit(frame)) state.syncing = frame.request_id;
}

function onOpen() {
  for (const id of state.stops) transmit({ type: "chat.stop", message: id });
  state.stops.clear();
  // A fresh socket knows nothing of what we saw: the snapshot (or idle) resets each answer.
  if (page.chat.dataset.conversation) subscribe();
  else flushOutbox();
  announceOutbox();
}

// Stops every answer being written; one stopped while offline is stopped again on reconnecting
// (a stop of an ended answer is a no-op).
export function stopAll() {
  for (const id of state.streaming.keys()) {
    if (!transmit({ type: "chat.stop", message: id })) state.stops.add(id);
  }
}

// --- Frames from the server ---

function ours(frame) {
  const id = frame.conversation || (frame.message && frame.message.conversation);
  return Boolean(id) && id === page.chat.dataset.conversation;
}

function handleFrame(frame) {
  if (frame.type === "message.created" && frame.message && frame.message.role === "assistant") {
    // Our request's answer exists: the outbox now waits for it to end.
    state.outbox.started(frame.request_id);
  }
  const handler = Object.hasOwn(handlers, frame.type) ? handlers[frame.type] : null;
  if (!handler || (CONVERSATION_FRAMES.has(frame.type) && !ours(frame))) return;
  handler(frame);
}

// `frameHandlers`: frame type -> function(frame); other types are ignored.
export function setUpSocket(frameHandlers) {
  handlers = frameHandlers;
  setUpPending({ cancelSend: cancelQueued });
  connection = document.getElementById("connection");
  window.addEventListener("online", () => {
    if (!state.socket) {
      state.attempts = 0;
      connect();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !state.socket) connect();
  });
}
