/* The conversation on the page: messages built from the page's templates, answers rendered as
 * they stream, the frames that change them, older messages loaded on scrolling up, and the
 * actions under each message (copy, retry/regenerate, edit).
 *
 * Safety rule: text from a model is only ever put into the page as text (textContent, text
 * nodes). The single exception is the `html` of a `message.done` frame, which the server has
 * rendered and sanitised; it is the only thing assigned to innerHTML. Server-rendered fragments
 * (older messages, the rendering of an answer so far) are parsed with DOMParser, whose
 * documents run no scripts.
 *
 * While an answer streams, its text so far is rendered by the server (POST render/, the same
 * Markdown code and sanitiser as the finished answer) at most every RENDER_INTERVAL_MS, one
 * request in flight per answer; the text that came after the last rendering is shown as plain
 * text below it until the next one. So no Markdown parser runs here, the CSP stays as strict,
 * and the finished answer's HTML from `message.done` remains the record. */

import { attachmentsSent, showAttachments } from "./attachments.mjs";
import { saveSettings, updateComposer } from "./composer.mjs";
import { fetchFragment, parseFragment, postForm } from "./http.mjs";
import { typesetMath as typesetWithKatex } from "./math.mjs";
import {
  PLACEHOLDER,
  conversationUrl,
  keepBottom,
  lastMessage,
  messageElement,
  nearBottom,
  page,
  scrollToBottom,
  showComposerError,
  state,
} from "./page.mjs";
import { applyTitle, refreshSidebar } from "./sidebar.mjs";
import { enqueue, flushOutbox, subscribe } from "./socket.mjs";
import { deltaAction, renderDelay, renderInterval } from "./stream_state.mjs";
import { $, $$, copyText, flashCopied, requestId } from "./ui.mjs";
import { showUsage } from "./usage.mjs";

// Often enough to look live, rarely enough that a 20 kB answer (about 45 ms to render on the
// server) costs a small share of one core per streaming answer.
const RENDER_INTERVAL_MS = 300;

// --- Building messages ---

export function contentOf(element) {
  if (element.dataset.role !== "assistant") return $('[data-slot="text"]', element).textContent;
  const source = $('template[data-slot="source"]', element);
  return source ? source.content.textContent : $('[data-slot="content"]', element).textContent;
}

function setSource(element, content) {
  const source = $('template[data-slot="source"]', element);
  if (source) source.content.replaceChildren(document.createTextNode(content));
}

function buildMessage(message) {
  const template = document.getElementById(message.role === "user" ? "tpl-user" : "tpl-assistant");
  const element = template.content.firstElementChild.cloneNode(true);
  element.id = "m-" + message.id;
  element.dataset.id = message.id;
  element.dataset.parent = message.parent || "";
  element.dataset.status = message.status || "complete";
  if (message.role === "assistant") {
    $('[data-slot="content"]', element).textContent = message.content || "";
    setSource(element, message.content || "");
    setMeta(element, message);
  } else {
    element.className = "message message--" + message.role;
    element.dataset.role = message.role;
    $('[data-slot="text"]', element).textContent = message.content || "";
    showAttachments(element, message.attachments);
  }
  return element;
}

function setMeta(element, info) {
  const meta = $('[data-slot="meta"]', element);
  if (!meta) return;
  meta.replaceChildren();
  if (info.status === "stopped") {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "Stopped";
    meta.append(tag, " ");
  }
  const name = info.model || info.provider || "";
  meta.append(name);
  // The name may be cut short by an ellipsis: the tooltip has it whole, and once the answer is
  // done, its token counts (the server's sentence, `meta` of message.done).
  const title = info.meta || name;
  if (title) meta.title = title;
  else meta.removeAttribute("title");
  showUsage(element, info);
}

function setError(element, status, error) {
  const box = $('[data-slot="error-box"]', element);
  if (!box) return;
  const failed = status === "error" || status === "interrupted";
  box.hidden = !failed;
  $('[data-slot="error"]', box).textContent = failed
    ? (error && error.detail) || "The answer could not be completed."
    : "";
}

function typesetMath(scope) {
  typesetWithKatex(scope, { js: page.app.dataset.katexJs, css: page.app.dataset.katexCss });
}

function enhanceAnswers(scope) {
  addCodeCopyButtons(scope);
  showTryAnother(scope);
  typesetMath(scope);
}

function addCodeCopyButtons(scope) {
  const icon = $("#tpl-assistant").content.querySelector('[data-action="copy"] svg');
  for (const pre of $$(".markdown pre", scope)) {
    if ($(".code-copy", pre)) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "code-copy";
    button.dataset.action = "copy-code";
    button.setAttribute("aria-label", "Copy code");
    if (icon) button.append(icon.cloneNode(true));
    button.append("Copy");
    pre.append(button);
  }
}

function hideEmptyState() {
  const empty = document.getElementById("empty-state");
  if (empty) empty.remove();
}

// --- Frames about the conversation ---

export function onConversationCreated(frame) {
  const conversation = frame.conversation || {};
  if (!conversation.id) return;
  if (!page.chat.dataset.conversation && state.outbox.claimNew(frame.request_id)) {
    adoptConversation(conversation);
  }
  refreshSidebar();
}

function adoptConversation(conversation) {
  const chat = page.chat;
  const id = conversation.id;
  chat.dataset.conversation = id;
  // Links and forms rendered for "the conversation to be" now point at it.
  for (const element of $$("[href*='" + PLACEHOLDER + "'], [action*='" + PLACEHOLDER + "']", chat)) {
    for (const name of ["href", "action"]) {
      const value = element.getAttribute(name);
      if (value && value.includes(PLACEHOLDER)) element.setAttribute(name, value.replace(PLACEHOLDER, id));
    }
  }
  for (const name of ["settingsUrl", "sendUrl"]) {
    chat.dataset[name] = chat.dataset[name].replace(PLACEHOLDER, id);
  }
  page.composer.action = chat.dataset.sendUrl;
  document.getElementById("conversation-menu").hidden = false;
  history.replaceState(null, "", conversationUrl(id));
  applyTitle(id, conversation.title || "");
}

export function onConversationUpdated(frame) {
  const conversation = frame.conversation || {};
  if (conversation.id && "title" in conversation) applyTitle(conversation.id, conversation.title);
}

// --- Frames about messages ---

export function onMessageCreated(frame) {
  const message = frame.message;
  if (messageElement(message.id)) return;
  const wasNear = nearBottom() || message.role === "user";
  const parent = messageElement(message.parent);
  if (message.parent && !parent) {
    // On a branch this page does not show (or below the page, on a page opened further up).
    state.offBranch.add(message.id);
    return;
  }
  // A new message below `parent` replaces whatever this page showed below it: that was
  // another branch (a regenerate or an edit makes a sibling).
  let stale = parent ? parent.nextElementSibling : page.list.firstElementChild;
  while (stale) {
    const next = stale.nextElementSibling;
    if (stale.classList.contains("message")) {
      state.branchChanged = true;
      state.streaming.delete(stale.dataset.id);
      stale.remove();
    }
    stale = next;
  }
  hideEmptyState();
  if (message.role === "user" && frame.request_id) attachmentsSent();
  keepBottom(wasNear, () => page.list.append(buildMessage(message)));
  if (message.role === "assistant" && message.status === "streaming") {
    startStreaming(messageElement(message.id), "", 0);
  }
  updateComposer();
}

// What a screen reader says of an answer: that it is being written, then the answer itself
// (read once, when it ends, rather than token by token; aria-busy holds the log meanwhile).
const ANNOUNCE_CHARS = 600;

function announce(text) {
  document.getElementById("answer-status").textContent = text;
}

function announceEnd(element, frame) {
  const body = $('[data-slot="content"]', element);
  if (frame.status === "complete") {
    const text = body.textContent.replace(/\s+/g, " ").trim();
    announce("The assistant answered: " + text.slice(0, ANNOUNCE_CHARS) + (text.length > ANNOUNCE_CHARS ? "…" : ""));
  } else if (frame.status === "stopped") {
    announce("The answer was stopped.");
  } else {
    announce("The answer failed: " + ((frame.error && frame.error.detail) || "it could not be completed."));
  }
}

function startStreaming(element, content, seq) {
  element.setAttribute("aria-busy", "true");
  if (!state.streaming.size) announce("The assistant is answering…");
  const body = $('[data-slot="content"]', element);
  body.className = "message-content markdown";
  const rendered = document.createElement("div");
  const tail = document.createElement("span");
  tail.className = "stream-tail";
  const node = document.createTextNode(content);
  tail.append(node);
  body.replaceChildren(rendered, tail);
  element.dataset.status = "streaming";
  setError(element, "streaming", null);
  forgetStream(element.dataset.id);
  const stream = { id: element.dataset.id, seq, text: content, node, rendered, timer: null, asking: false, askedAt: 0 };
  state.streaming.set(stream.id, stream);
  if (content) scheduleRender(stream);
}

function forgetStream(id) {
  const stream = state.streaming.get(id);
  if (stream) clearTimeout(stream.timer);
  state.streaming.delete(id);
}

function scheduleRender(stream) {
  const interval = renderInterval(stream.text.length, RENDER_INTERVAL_MS);
  const wait = renderDelay(stream, Date.now(), interval);
  if (wait === null) return; // the pending or running one picks the newer text up
  stream.timer = setTimeout(() => renderSoFar(stream), wait);
}

async function renderSoFar(stream) {
  stream.timer = null;
  stream.asking = true;
  stream.askedAt = Date.now();
  const text = stream.text;
  const data = new FormData();
  data.append("content", text);
  let html = null;
  try {
    const response = await postForm(page.app.dataset.renderUrl, data);
    if (response.ok) html = (await response.json()).html;
  } catch (error) {
    // Offline or refused: the plain text stays, the next delta asks again.
  }
  stream.asking = false;
  if (state.streaming.get(stream.id) !== stream) return; // finished or restarted meanwhile
  if (html !== null) {
    const wasNear = nearBottom();
    keepBottom(wasNear, () => {
      stream.rendered.replaceChildren(...parseFragment(html));
      stream.node.data = stream.text.slice(text.length);
    });
    typesetMath(stream.rendered);
  }
  if (stream.text.length > text.length) scheduleRender(stream);
}

export function onSnapshot(frame) {
  let element = messageElement(frame.message);
  const wasNear = nearBottom();
  state.syncing = null;
  if (!element && (state.offBranch.has(frame.message) || page.chat.dataset.tail === "0")) {
    // Not below the last message shown: appending it there would put it under the wrong
    // question. Its message.done is ignored too; the conversation's page shows it.
    flushOutbox();
    return;
  }
  if (!element) {
    // An answer this page has not seen start (another tab, or a reconnect after a reload).
    const last = lastMessage();
    element = buildMessage({ id: frame.message, parent: last ? last.dataset.id : "", role: "assistant", status: "streaming" });
    hideEmptyState();
    page.list.append(element);
  }
  keepBottom(wasNear, () => startStreaming(element, frame.content || "", frame.seq || 0));
  updateComposer();
}

export function onDelta(frame) {
  const stream = state.streaming.get(frame.message);
  const action = deltaAction(stream, frame.seq);
  if (action === "ignore") return;
  if (action === "resync") {
    stream.seq = Infinity; // nothing applies until the snapshot
    subscribe();
    return;
  }
  const wasNear = nearBottom();
  keepBottom(wasNear, () => stream.node.appendData(frame.delta || ""));
  stream.text += frame.delta || "";
  stream.seq = frame.seq;
  scheduleRender(stream);
}

export function onDone(frame) {
  const element = messageElement(frame.message);
  forgetStream(frame.message);
  state.offBranch.delete(frame.message);
  if (element) {
    const wasNear = nearBottom();
    keepBottom(wasNear, () => {
      const body = $('[data-slot="content"]', element);
      body.className = "message-content markdown";
      // The one innerHTML: the server's sanitised rendering of the finished answer.
      body.innerHTML = frame.html || "";
      setSource(element, frame.content || "");
      element.dataset.status = frame.status;
      element.removeAttribute("aria-busy");
      setError(element, frame.status, frame.error);
      setMeta(element, frame);
      enhanceAnswers(element);
    });
    announceEnd(element, frame);
  }
  updateComposer();
  if (state.branchChanged && !state.streaming.size) {
    state.branchChanged = false;
    refreshSiblings();
  }
  flushOutbox();
}

export async function onIdle() {
  // Nothing runs: answers this page still shows as streaming ended while we were away.
  const stale = $$('.message[data-status="streaming"]', page.list);
  state.streaming.clear();
  state.offBranch.clear();
  updateComposer();
  // Waiting messages go below the conversation's real end: after a request whose outcome
  // the page missed, that is what the server has, not what the page shows.
  const behind = state.resync && state.outbox.size;
  state.resync = false;
  if (stale.length || behind) await reloadTail();
  state.syncing = null;
  flushOutbox();
}

// --- Server-rendered refreshes ---

async function reloadTail() {
  const id = page.chat.dataset.conversation;
  if (!id) return;
  try {
    const nodes = await fetchFragment(conversationUrl(id));
    page.list.replaceChildren(...nodes);
    enhanceAnswers(page.list);
    observeOlder();
    scrollToBottom();
    updateComposer();
  } catch (error) {
    /* The page keeps what it has; a reload shows the saved answer. */
  }
}

async function refreshSiblings() {
  const id = page.chat.dataset.conversation;
  if (!id) return;
  try {
    const nodes = await fetchFragment(conversationUrl(id));
    for (const node of nodes) {
      if (!node.classList || !node.classList.contains("message")) continue;
      const element = document.getElementById(node.id);
      if (!element) continue;
      const footer = $(".message-footer", element);
      const fresh = $(".siblings", node);
      const current = $(".siblings", footer);
      if (current && fresh) current.replaceWith(fresh);
      else if (current) current.remove();
      else if (fresh) footer.prepend(fresh);
    }
  } catch (error) {
    /* Arrows appear on the next page load. */
  }
}

// Older messages load when their link scrolls into view, keeping what the reader looks at in place.
let olderLoading = false;
let olderObserver = null;

function observeOlder() {
  const link = $("[data-older]", page.list);
  if (link) olderObserver.observe(link);
}

async function loadOlder(link) {
  if (olderLoading) return;
  olderLoading = true;
  olderObserver.unobserve(link);
  const scroller = page.scroller;
  try {
    const nodes = await fetchFragment(link.href);
    const before = scroller.scrollHeight;
    const top = scroller.scrollTop;
    link.closest("li").replaceWith(...nodes);
    enhanceAnswers(page.list);
    scroller.scrollTop = top + (scroller.scrollHeight - before);
    observeOlder();
  } catch (error) {
    olderObserver.observe(link);
  } finally {
    olderLoading = false;
  }
}

// --- Message actions ---

function openEditor(element) {
  if ($(".message-edit", element)) return;
  const bubble = $(".message-bubble", element);
  const editor = document.createElement("form");
  editor.className = "message-edit";
  const area = document.createElement("textarea");
  area.value = contentOf(element);
  area.setAttribute("aria-label", "Edit your message");
  const actions = document.createElement("div");
  actions.className = "message-edit-actions";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "button small";
  cancel.textContent = "Cancel";
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.className = "button small primary";
  submit.textContent = "Send";
  actions.append(cancel, submit);
  editor.append(area, actions);
  bubble.hidden = true;
  bubble.after(editor);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
  const close = () => {
    editor.remove();
    bubble.hidden = false;
  };
  cancel.addEventListener("click", close);
  editor.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = area.value;
    if (!content.trim() || state.streaming.size) return;
    if (!(await saveSettings())) return;
    const message = element.dataset.id;
    enqueue({ content: "", frame: () => ({ type: "chat.edit", message, content, request_id: requestId() }) });
    close();
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      editor.requestSubmit();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    }
  });
}

// A new answer in place of `element`'s, from the model the picker shows (saved first: the
// server answers with the conversation's saved model).
async function regenerate(element) {
  if (state.streaming.size) return;
  showComposerError("");
  if (!(await saveSettings())) return;
  enqueue({
    content: "",
    frame: () => ({ type: "chat.regenerate", message: element.dataset.id, request_id: requestId() }),
  });
}

// "Try another model" on a failed answer: the model picker opens, and picking a model retries
// the answer with it. Leaving the picker without a change leaves things as they were.
let retryWithPick = null;

function modelPicker() {
  return $("select[name=target]", page.composer);
}

function hasOtherModels() {
  const picker = modelPicker();
  return Boolean(picker) && !picker.disabled && picker.options.length > 1;
}

function chooseModelFor(element) {
  const picker = modelPicker();
  if (!hasOtherModels()) return;
  retryWithPick = element;
  picker.closest(".model-picker").classList.add("is-choosing");
  picker.focus();
  try {
    picker.showPicker();
  } catch (error) {
    /* No showPicker for selects here: the focused picker (highlighted) is the hint. */
  }
}

function endChoosing() {
  retryWithPick = null;
  const picker = modelPicker();
  if (picker) picker.closest(".model-picker").classList.remove("is-choosing");
}

function setUpModelChoice() {
  const picker = modelPicker();
  if (!picker) return;
  // After the composer's own listener, which marks the settings as changed.
  picker.addEventListener("change", () => {
    const element = retryWithPick;
    endChoosing();
    if (element && element.isConnected) regenerate(element);
  });
  picker.addEventListener("blur", endChoosing);
  showTryAnother(page.list);
}

// "Try another model" only where there is another model to try.
function showTryAnother(scope) {
  const others = hasOtherModels();
  for (const button of $$('[data-action="try-another"]', scope)) button.hidden = !others;
}

async function onAction(event) {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  const element = button.closest(".message");
  switch (button.dataset.action) {
    case "copy":
      await copyText(contentOf(element));
      flashCopied(button);
      break;
    case "copy-code": {
      const code = $("code", button.closest("pre"));
      await copyText(code ? code.textContent : "");
      flashCopied(button);
      break;
    }
    case "regenerate":
      await regenerate(element);
      break;
    case "try-another":
      chooseModelFor(element);
      break;
    case "edit":
      openEditor(element);
      break;
    default:
      break;
  }
}

// --- Start ---

// Wires the conversation's listeners and brings what the server rendered to life. True if the
// page was opened at a message (#m-…), which is then in view.
export function setUpMessages() {
  const { list, scroller } = page;
  const scrollBottomButton = document.getElementById("scroll-bottom");
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  scroller.addEventListener(
    "scroll",
    () => {
      scrollBottomButton.hidden = nearBottom() || !list.children.length;
    },
    { passive: true },
  );
  scrollBottomButton.addEventListener("click", () => {
    scroller.scrollTo({ top: scroller.scrollHeight, behavior: reducedMotion.matches ? "auto" : "smooth" });
  });
  olderObserver = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) loadOlder(entry.target);
      }
    },
    { root: scroller, rootMargin: "300px 0px 0px 0px" },
  );
  list.addEventListener("click", onAction);
  setUpModelChoice();

  enhanceAnswers(list);
  for (const element of $$('.message[data-status="streaming"]', list)) {
    // Rendered mid-stream: the text so far comes with the snapshot after subscribing.
    state.streaming.set(element.dataset.id, { seq: Infinity, node: null });
  }
  const target = location.hash.startsWith("#m-") && document.getElementById(location.hash.slice(1));
  if (target) target.scrollIntoView({ block: "center" });
  else scrollToBottom();
  observeOlder();
  return Boolean(target);
}
