/* What the chat script's modules share: the page's elements, found once by setUpPage(), the
 * state of the live stream on the chat page, and small helpers over both (scrolling, the
 * composer's error line). */

import { Outbox } from "./outbox.mjs";
import { $, $$ } from "./ui.mjs";

// Stands for "the conversation to be" in URLs rendered before it exists; and the close code of
// "not signed in". Both are the server's (conversations/protocol.py), read from #app.
export let PLACEHOLDER = "";
export let CLOSE_UNAUTHENTICATED = 0;

// Elements; `chat` and those after it only on the chat page (else null).
export const page = {
  app: null,
  chat: null,
  list: null,
  scroller: null,
  composer: null,
  textarea: null,
};

// The chat page's state (null elsewhere).
export let state = null;

function newState() {
  return {
    socket: null,
    attempts: 0,
    retryTimer: null,
    signedOut: false,
    // assistant message id -> { seq, node, ... }: answers being written, with the last seq applied.
    streaming: new Map(),
    // Requests that start an answer, sent one at a time (outbox.mjs).
    outbox: new Outbox(),
    // request_id of the chat.subscribe that brings a fresh socket in step; the outbox waits
    // for its reply, so a queued message goes below what the conversation now ends with.
    syncing: null,
    // The socket closed while a request was on its way: the page may not show its outcome.
    resync: false,
    // Answers the user stopped while disconnected; the stops go out on reconnecting.
    stops: new Set(),
    // Answers being written on a branch this page does not show (their frames are ignored).
    offBranch: new Set(),
    // Set when a regenerate/edit replaced part of the branch: the sibling arrows need refreshing.
    branchChanged: false,
  };
}

// False when the page is not one of the app's (the sign-in page, say).
export function setUpPage() {
  page.app = document.getElementById("app");
  if (!page.app) return false;
  PLACEHOLDER = page.app.dataset.placeholder;
  CLOSE_UNAUTHENTICATED = Number(page.app.dataset.closeUnauthenticated);
  page.chat = document.getElementById("chat");
  if (page.chat) {
    page.list = document.getElementById("message-list");
    page.scroller = document.getElementById("messages");
    page.composer = document.getElementById("composer");
    page.textarea = $("textarea[name=content]", page.composer);
    state = newState();
  }
  return true;
}

export function conversationUrl(id) {
  return page.app.dataset.conversationUrl.replace(PLACEHOLDER, id);
}

export function isStreaming() {
  return Boolean(state) && state.streaming.size > 0;
}

// --- Scrolling ---

export function nearBottom() {
  const scroller = page.scroller;
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 96;
}

export function scrollToBottom() {
  page.scroller.scrollTop = page.scroller.scrollHeight;
}

// Makes a change to the conversation, staying at the bottom if the reader was there.
export function keepBottom(wasNear, change) {
  change();
  if (wasNear) scrollToBottom();
}

// --- Messages in the DOM ---

export function messageElement(id) {
  return id ? document.getElementById("m-" + id) : null;
}

export function lastMessage() {
  const messages = $$(".message", page.list);
  return messages.length ? messages[messages.length - 1] : null;
}

// --- The composer's error line ---

export function showComposerError(text) {
  const composerError = document.getElementById("composer-error");
  $('[data-slot="text"]', composerError).textContent = text;
  composerError.hidden = !text;
}

export function composerErrorText() {
  return $('[data-slot="text"]', document.getElementById("composer-error")).textContent;
}
