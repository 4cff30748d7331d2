/* Messages typed while the socket is closed: shown at once below the conversation as bubbles
 * marked "Not sent yet", each with a Cancel button, until the outbox sends them (the server's
 * own message then takes their place). They live in a list of their own after the conversation's,
 * so nothing that reads or replaces the conversation's messages sees them. */

import { keepBottom, nearBottom, page } from "./page.mjs";
import { $, $$ } from "./ui.mjs";

let cancel = null;

function bubble({ key, content }) {
  const item = document.createElement("li");
  item.className = "message message--user message--pending";
  item.dataset.outboxKey = String(key);
  const main = document.createElement("div");
  main.className = "message-main";
  const body = document.createElement("div");
  body.className = "message-bubble";
  const text = document.createElement("div");
  text.className = "message-text";
  text.textContent = content;
  body.append(text);
  const footer = document.createElement("div");
  footer.className = "message-footer";
  const note = document.createElement("span");
  note.className = "pending-note";
  note.textContent = "Not sent yet";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "button small";
  button.dataset.action = "cancel-send";
  button.textContent = "Cancel";
  button.setAttribute("aria-label", "Cancel this message");
  footer.append(note, button);
  main.append(body, footer);
  item.append(main);
  return item;
}

// Shows `items` ([{ key, content }], from Outbox.pending()) and nothing else as pending.
export function renderPending(items) {
  let list = document.getElementById("outbox-list");
  const empty = document.getElementById("empty-state");
  if (empty) empty.hidden = items.length > 0;
  if (!items.length) {
    if (list) list.remove();
    return;
  }
  const wasNear = nearBottom();
  keepBottom(wasNear || !list, () => {
    if (!list) {
      list = document.createElement("ol");
      list.className = "message-list pending-list";
      list.id = "outbox-list";
      list.setAttribute("aria-label", "Messages not sent yet");
      page.list.after(list);
    }
    const keys = new Set(items.map((item) => String(item.key)));
    for (const element of $$(".message--pending", list)) {
      if (!keys.has(element.dataset.outboxKey)) element.remove();
    }
    for (const item of items) {
      if (!$(`[data-outbox-key="${item.key}"]`, list)) list.append(bubble(item));
    }
  });
}

// `cancelSend(key)`: takes the message out of the outbox (and calls renderPending again).
export function setUpPending({ cancelSend }) {
  cancel = cancelSend;
  page.scroller.addEventListener("click", (event) => {
    const button = event.target.closest('[data-action="cancel-send"]');
    if (!button) return;
    const key = Number(button.closest(".message--pending").dataset.outboxKey);
    cancel(key);
    page.textarea.focus();
  });
}
