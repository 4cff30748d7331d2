/* The chat's script, an ES module: the live stream over /ws/chat/ (see docs/protocol.md) and the
 * conveniences on top of pages that work without it. Its modules in js/: stream_state.mjs (the
 * rules of the stream and the outbox, tested without a browser), http.mjs, math.mjs, ui.mjs.
 *
 * Safety rule: text from a model is only ever put into the page as text (textContent, text
 * nodes). The single exception is the `html` of a `message.done` frame, which the server has
 * rendered and sanitised; it is the only thing assigned to innerHTML. Server-rendered fragments
 * (older messages, sidebar pages, the rendering of an answer so far) are parsed with DOMParser,
 * whose documents run no scripts.
 *
 * While an answer streams, its text so far is rendered by the server (POST render/, the same
 * Markdown code and sanitiser as the finished answer) at most every RENDER_INTERVAL_MS, one
 * request in flight per answer; the text that came after the last rendering is shown as plain
 * text below it until the next one. So no Markdown parser runs here, the CSP stays as strict,
 * and the finished answer's HTML from `message.done` remains the record.
 */
import { fetchFragment, parseFragment, postForm } from "./js/http.mjs";
import { typesetMath as typesetWithKatex } from "./js/math.mjs";
import {
  closeMenus,
  copyText,
  flashCopied,
  refusal,
  requestId,
  setUpMenusDialogsAndFlash,
  showFlashError,
} from "./js/ui.mjs";
import {
  deltaAction,
  outboxMaySend,
  outboxNotice as outboxNoticeText,
  renderDelay,
  renderInterval,
} from "./js/stream_state.mjs";

(function () {
  "use strict";

  const root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  const app = document.getElementById("app");
  if (!app) return;

  const PLACEHOLDER = "00000000-0000-0000-0000-000000000000";
  // Often enough to look live, rarely enough that a 20 kB answer (about 45 ms to render on the
  // server) costs a small share of one core per streaming answer.
  const RENDER_INTERVAL_MS = 300;
  const chat = document.getElementById("chat");
  // Set up below on the chat page only.
  let chatState = null;
  const $ = (selector, scope) => (scope || document).querySelector(selector);
  const $$ = (selector, scope) => Array.from((scope || document).querySelectorAll(selector));

  // --- Small utilities ---------------------------------------------------------------------------

  function conversationUrl(id) {
    return app.dataset.conversationUrl.replace(PLACEHOLDER, id);
  }

  setUpMenusDialogsAndFlash();

  // --- Sidebar ---------------------------------------------------------------------------------

  const sidebarList = document.getElementById("conversation-list");
  const sidebarNav = $(".conversation-nav");
  let sidebarLoading = false;

  const sidebarObserver = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) loadMoreConversations(entry.target);
      }
    },
    { root: sidebarNav, rootMargin: "200px" },
  );

  function observeSidebarMore() {
    const more = sidebarList && $("[data-more]", sidebarList);
    if (more && sidebarNav) sidebarObserver.observe(more);
  }

  function lastGroup() {
    const groups = $$(".conversation-group", sidebarList);
    return groups.length ? groups[groups.length - 1].dataset.group : null;
  }

  async function loadMoreConversations(link) {
    if (sidebarLoading) return;
    sidebarLoading = true;
    sidebarObserver.unobserve(link);
    try {
      const nodes = await fetchFragment(link.href);
      const group = lastGroup();
      link.closest("li").remove();
      for (const node of nodes) {
        // A page that continues the previous page's day group does not repeat its heading.
        if (node.classList.contains("conversation-group") && node.dataset.group === group) continue;
        sidebarList.append(node);
      }
      markCurrentConversation();
      observeSidebarMore();
    } catch (error) {
      sidebarObserver.observe(link);
    } finally {
      sidebarLoading = false;
    }
  }

  // One refresh at a time; a refresh asked for meanwhile runs once more after it, since the
  // one in flight may have been read before the change that asked (a title set at once when a
  // first answer fails fast would otherwise be overwritten by "New chat").
  let sidebarRefresh = null;
  let sidebarRefreshAgain = false;

  function refreshSidebar() {
    if (!sidebarList) return Promise.resolve();
    if (sidebarRefresh) {
      sidebarRefreshAgain = true;
      return sidebarRefresh;
    }
    sidebarRefresh = (async () => {
      do {
        sidebarRefreshAgain = false;
        try {
          const nodes = await fetchFragment(app.dataset.sidebarUrl || "/conversations/");
          sidebarList.replaceChildren(...nodes);
          markCurrentConversation();
          observeSidebarMore();
        } catch (error) {
          /* The sidebar catches up on the next page load. */
        }
      } while (sidebarRefreshAgain);
      sidebarRefresh = null;
    })();
    return sidebarRefresh;
  }

  function markCurrentConversation() {
    const current = chat ? chat.dataset.conversation : "";
    for (const item of $$(".conversation-item", sidebarList)) {
      const isCurrent = Boolean(current) && item.dataset.id === current;
      item.classList.toggle("is-current", isCurrent);
      const link = $(".conversation-link", item);
      if (isCurrent) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  // A sidebar item's menu is made when it is first opened, from the one template in the page.
  function fillItemMenu(details) {
    const template = document.getElementById("tpl-item-menu");
    if (!template || $(".menu-panel", details)) return;
    const item = details.closest(".conversation-item");
    const panel = template.content.firstElementChild.cloneNode(true);
    for (const element of $$("[href], [action]", panel)) {
      for (const name of ["href", "action"]) {
        const value = element.getAttribute(name);
        if (value) element.setAttribute(name, value.replace(PLACEHOLDER, item.dataset.id));
      }
    }
    const archived = item.dataset.archived === "1";
    $("input[name=archived]", panel).value = archived ? "0" : "1";
    $('[data-slot="archive"]', panel).lastChild.data = archived ? "Unarchive" : "Archive";
    $('[data-action="delete"]', panel).dataset.title = $(".conversation-link", item).textContent;
    details.append(panel);
  }

  document.addEventListener("click", (event) => {
    const summary = event.target.closest(".item-menu > summary");
    if (summary) fillItemMenu(summary.parentElement);
  });

  function setSidebarTitle(id, title) {
    const item = sidebarList && $(`.conversation-item[data-id="${CSS.escape(id)}"]`, sidebarList);
    if (item) $(".conversation-link", item).textContent = title || "New chat";
    if (sidebarRefresh) refreshSidebar();
  }

  function isPhone() {
    return window.matchMedia("(max-width: 800px)").matches;
  }

  // Remembered in a cookie, so the server renders the next page the same way (no flash).
  function setSidebarCollapsed(collapsed) {
    app.classList.toggle("sidebar-collapsed", collapsed);
    document.cookie = collapsed
      ? "sidebar=collapsed; path=/; max-age=31536000; SameSite=Lax"
      : "sidebar=; path=/; max-age=0; SameSite=Lax";
  }

  function toggleSidebar() {
    if (isPhone()) {
      app.classList.toggle("sidebar-open");
      if (location.hash === "#sidebar") history.replaceState(null, "", location.pathname + location.search);
    } else {
      setSidebarCollapsed(!app.classList.contains("sidebar-collapsed"));
    }
  }

  // The menu button and the scrim are plain links (#sidebar, #) so the sidebar opens without
  // JavaScript; with it, they toggle a class and leave the URL alone.
  document.addEventListener("click", (event) => {
    const opener = event.target.closest(".menu-button");
    const closer = event.target.closest(".sidebar-close, .scrim");
    if (opener || closer) {
      event.preventDefault();
      if (opener && !isPhone()) setSidebarCollapsed(false);
      else if (opener) app.classList.add("sidebar-open");
      else app.classList.remove("sidebar-open");
    }
  });

  // Rename in place: the title becomes an input; Enter or leaving it saves, Escape cancels.
  function renameInPlace(textElement, url, onRenamed) {
    if (textElement.hidden) return;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.maxLength = 200;
    input.value = textElement.textContent.trim();
    input.setAttribute("aria-label", "New title");
    textElement.hidden = true;
    textElement.after(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      const title = input.value.trim();
      input.remove();
      textElement.hidden = false;
      if (!save || !title || title === textElement.textContent.trim()) return;
      const data = new FormData();
      data.append("title", title);
      let response;
      try {
        response = await postForm(url, data);
      } catch (error) {
        showFlashError("Not renamed: the server could not be reached.");
        return;
      }
      if (response.ok) {
        const body = await response.json();
        onRenamed(body.title);
      } else {
        showFlashError("Not renamed: " + (await refusal(response)));
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  function applyTitle(id, title) {
    setSidebarTitle(id, title);
    if (chat && chat.dataset.conversation === id) {
      const heading = document.getElementById("conversation-title");
      heading.textContent = title || "New chat";
      document.title = (title || "New chat") + " · Chat";
      for (const link of $$('[data-action="delete"]', chat)) link.dataset.title = title;
    }
  }

  document.addEventListener("click", (event) => {
    const action = event.target.closest('[data-action="rename"], [data-action="rename-current"]');
    if (action) {
      event.preventDefault();
      closeMenus(null);
      const url = action.getAttribute("href");
      if (action.dataset.action === "rename") {
        const item = action.closest(".conversation-item");
        renameInPlace($(".conversation-link", item), url, (title) => applyTitle(item.dataset.id, title));
      } else {
        const id = chat.dataset.conversation;
        renameInPlace(document.getElementById("conversation-title"), url, (title) => applyTitle(id, title));
      }
      return;
    }
    const remove = event.target.closest('[data-action="delete"]');
    if (remove) {
      event.preventDefault();
      closeMenus(null);
      const dialog = document.getElementById("delete-dialog");
      $('[data-slot="title"]', dialog).textContent = remove.dataset.title || "New chat";
      const form = $('[data-slot="form"]', dialog);
      form.action = remove.getAttribute("href");
      let next = $("input[name=next]", form);
      if (!next) {
        next = document.createElement("input");
        next.type = "hidden";
        next.name = "next";
        form.append(next);
      }
      dialog.showModal();
    }
  });

  // --- Keyboard shortcuts ----------------------------------------------------------------------

  const composer = chat && document.getElementById("composer");
  const textarea = composer && $("textarea[name=content]", composer);

  function typingInField(target) {
    return target.closest("input, textarea, select, [contenteditable=true]");
  }

  document.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      event.preventDefault();
      location.href = app.dataset.chatUrl;
    } else if (mod && event.shiftKey && key === "s") {
      event.preventDefault();
      toggleSidebar();
    } else if (mod && (key === "/" || event.code === "Slash")) {
      event.preventDefault();
      document.getElementById("shortcuts-dialog").showModal();
    } else if (event.key === "Escape" && event.shiftKey && textarea) {
      event.preventDefault();
      textarea.focus();
    } else if (event.key === "/" && !mod && textarea && !typingInField(event.target)) {
      event.preventDefault();
      textarea.focus();
    } else if (event.key === "Escape" && chatState && chatState.streaming.size && !$("dialog[open]")) {
      event.preventDefault();
      stopAll();
    } else if (event.key === "Escape") {
      app.classList.remove("sidebar-open");
      closeMenus(null);
    }
  });

  observeSidebarMore();
  markCurrentConversation();

  if (!chat) return;

  // --- The chat page ---------------------------------------------------------------------------

  const list = document.getElementById("message-list");
  const scroller = document.getElementById("messages");
  const sendButton = document.getElementById("send-button");
  const stopButton = document.getElementById("stop-button");
  const connection = document.getElementById("connection");
  const composerError = document.getElementById("composer-error");
  const targetSelect = $("select[name=target]", composer);
  const fields = $(".composer-fields", composer);
  const scrollBottomButton = document.getElementById("scroll-bottom");
  const answerStatus = document.getElementById("answer-status");
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

  chatState = {
    socket: null,
    attempts: 0,
    retryTimer: null,
    signedOut: false,
    // assistant message id -> { seq, node }: answers being written, with the last seq applied.
    streaming: new Map(),
    // Requests that start an answer (send, edit, regenerate), oldest first, each waiting for
    // the answer before it: { content, frame() }. See enqueue().
    outbox: [],
    // request_id of the outbox request sent last, until its answer has started.
    sending: null,
    // request_id of the chat.subscribe that brings a fresh socket in step; the outbox waits
    // for its reply, so a queued message goes below what the conversation now ends with.
    syncing: null,
    // The socket closed while a request was on its way: the page may not show its outcome.
    resync: false,
    // Answers the user stopped while disconnected; the stops go out on reconnecting.
    stops: new Set(),
    // Answers being written on a branch this page does not show (their frames are ignored).
    offBranch: new Set(),
    // request_id of our chat.send that has no conversation yet, and the text it carried.
    awaitingNew: null,
    lastRequest: null,
    // Set when a regenerate/edit replaced part of the branch: the sibling arrows need refreshing.
    branchChanged: false,
  };

  // --- Scrolling ---

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 96;
  }

  function scrollToBottom() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function keepBottom(wasNear, change) {
    change();
    if (wasNear) scrollToBottom();
  }

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

  // --- Connection state ---

  function setConnection(state, text, link) {
    connection.dataset.state = state;
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

  function connect() {
    clearTimeout(chatState.retryTimer);
    if (chatState.socket || chatState.signedOut) return;
    setConnection(chatState.attempts ? "retrying" : "connecting", chatState.attempts ? "Reconnecting…" : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + app.dataset.wsPath);
    chatState.socket = socket;
    socket.addEventListener("open", () => {
      chatState.attempts = 0;
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
      if (chatState.socket !== socket) return;
      chatState.socket = null;
      chatState.syncing = null;
      if (chatState.sending) {
        chatState.sending = null;
        chatState.resync = true;
      }
      announceOutbox();
      if (event.code === 4401) {
        chatState.signedOut = true;
        setConnection("closed", "Signed out.", { href: "/accounts/login/?next=" + encodeURIComponent(location.pathname), text: "Sign in" });
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so a restarted server is not hit by every tab at once.
    const delay = Math.min(15000, 500 * 2 ** chatState.attempts) * (0.75 + Math.random() * 0.5);
    chatState.attempts += 1;
    setConnection("retrying", navigator.onLine === false ? "Offline. Waiting for the network…" : "Reconnecting…");
    chatState.retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener("online", () => {
    if (!chatState.socket) {
      chatState.attempts = 0;
      connect();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !chatState.socket) connect();
  });

  function isOpen() {
    return Boolean(chatState.socket) && chatState.socket.readyState === WebSocket.OPEN;
  }

  // Sends a frame if the socket is open; false if it is not (the caller decides what waits).
  function transmit(frame) {
    if (!isOpen()) return false;
    chatState.socket.send(JSON.stringify(frame));
    return true;
  }

  // A request that starts an answer goes through the outbox, whether the socket is open or not:
  // one at a time, each once the answer before it has ended, and built only then, so that two
  // messages typed while offline become a question, its answer, then the next question (not
  // two branches of one parent, nor two new conversations).
  function enqueue(item) {
    chatState.outbox.push(item);
    flushOutbox();
    announceOutbox();
  }

  function flushOutbox() {
    const { outbox, sending, syncing, streaming } = chatState;
    const waiting = outbox.length;
    if (!outboxMaySend({ waiting, open: isOpen(), sending, syncing, streaming: streaming.size })) return;
    const item = chatState.outbox.shift();
    const frame = item.frame();
    chatState.sending = frame.request_id;
    chatState.lastRequest = { id: frame.request_id, content: item.content };
    if (frame.type === "chat.send" && !frame.conversation) chatState.awaitingNew = frame.request_id;
    transmit(frame);
    announceOutbox();
  }

  let outboxNotice = "";

  function announceOutbox() {
    const notice = outboxNoticeText(chatState.outbox.length, isOpen());
    // Only our own notice is replaced: an error shown meanwhile stays.
    const shown = $('[data-slot="text"]', composerError).textContent;
    if (notice) showComposerError(notice);
    else if (outboxNotice && shown === outboxNotice) showComposerError("");
    outboxNotice = notice;
  }

  function subscribe() {
    const id = chat.dataset.conversation;
    if (!id) return;
    const frame = { type: "chat.subscribe", conversation: id, request_id: requestId() };
    // An answer shown as streaming may have ended while we were away: naming it gets its
    // message.done even when nothing runs any more.
    const streaming = $('.message[data-status="streaming"]', list);
    if (streaming) frame.message = streaming.dataset.id;
    if (transmit(frame)) chatState.syncing = frame.request_id;
  }

  function onOpen() {
    for (const id of chatState.stops) transmit({ type: "chat.stop", message: id });
    chatState.stops.clear();
    // A fresh socket knows nothing of what we saw: the snapshot (or idle) resets each answer.
    if (chat.dataset.conversation) subscribe();
    else flushOutbox();
    announceOutbox();
  }

  // --- Messages in the DOM ---

  function messageElement(id) {
    return id ? document.getElementById("m-" + id) : null;
  }

  function lastMessage() {
    const messages = $$(".message", list);
    return messages.length ? messages[messages.length - 1] : null;
  }

  function contentOf(element) {
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
    // The name may be cut short by an ellipsis: the tooltip has it whole.
    const usage = info.usage;
    const tokens = usage && usage.prompt_tokens != null
      ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens || 0} answer tokens`
      : "";
    const title = [name, tokens].filter(Boolean).join(" · ");
    if (title) meta.title = title;
    else meta.removeAttribute("title");
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
    typesetWithKatex(scope, { js: app.dataset.katexJs, css: app.dataset.katexCss });
  }

  function enhanceAnswers(scope) {
    addCodeCopyButtons(scope);
    typesetMath(scope);
  }

  function addCodeCopyButtons(scope) {
    const icon = $('#tpl-assistant').content.querySelector('[data-action="copy"] svg');
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

  function updateComposer() {
    const busy = chatState.streaming.size > 0;
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    sendButton.disabled = !textarea.value.trim();
    const last = lastMessage();
    $("input[name=parent]", composer).value = last ? last.dataset.id : "";
  }

  function showComposerError(text) {
    $('[data-slot="text"]', composerError).textContent = text;
    composerError.hidden = !text;
  }

  // --- Frames from the server ---

  function ours(frame) {
    const id = frame.conversation || (frame.message && frame.message.conversation);
    return Boolean(id) && id === chat.dataset.conversation;
  }

  function handleFrame(frame) {
    const started = frame.type === "message.created" && frame.message && frame.message.role === "assistant";
    if (started && frame.request_id && frame.request_id === chatState.sending) {
      // Our request's answer exists: the outbox now waits for it to end.
      chatState.sending = null;
    }
    switch (frame.type) {
      case "conversation.created":
        return onConversationCreated(frame);
      case "conversation.updated":
        return onConversationUpdated(frame);
      case "message.created":
        return ours(frame) && onMessageCreated(frame.message);
      case "message.snapshot":
        return ours(frame) && onSnapshot(frame);
      case "message.delta":
        return ours(frame) && onDelta(frame);
      case "message.done":
        return ours(frame) && onDone(frame);
      case "conversation.idle":
        return ours(frame) && onIdle();
      case "error":
        return onError(frame);
      default:
        return undefined;
    }
  }

  function onConversationCreated(frame) {
    const conversation = frame.conversation || {};
    if (!conversation.id) return;
    const mine =
      chatState.awaitingNew &&
      !chat.dataset.conversation &&
      (!frame.request_id || frame.request_id === chatState.awaitingNew);
    if (mine) {
      chatState.awaitingNew = null;
      adoptConversation(conversation);
    }
    refreshSidebar();
  }

  function adoptConversation(conversation) {
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
    composer.action = chat.dataset.sendUrl;
    document.getElementById("conversation-menu").hidden = false;
    history.replaceState(null, "", conversationUrl(id));
    applyTitle(id, conversation.title || "");
  }

  function onConversationUpdated(frame) {
    const conversation = frame.conversation || {};
    if (conversation.id && "title" in conversation) applyTitle(conversation.id, conversation.title);
  }

  function onMessageCreated(message) {
    if (messageElement(message.id)) return;
    const wasNear = nearBottom() || message.role === "user";
    const parent = messageElement(message.parent);
    if (message.parent && !parent) {
      // On a branch this page does not show (or below the page, on a page opened further up).
      chatState.offBranch.add(message.id);
      return;
    }
    // A new message below `parent` replaces whatever this page showed below it: that was
    // another branch (a regenerate or an edit makes a sibling).
    let stale = parent ? parent.nextElementSibling : list.firstElementChild;
    while (stale) {
      const next = stale.nextElementSibling;
      if (stale.classList.contains("message")) {
        chatState.branchChanged = true;
        chatState.streaming.delete(stale.dataset.id);
        stale.remove();
      }
      stale = next;
    }
    hideEmptyState();
    keepBottom(wasNear, () => list.append(buildMessage(message)));
    if (message.role === "assistant" && message.status === "streaming") {
      startStreaming(messageElement(message.id), "", 0);
    }
    updateComposer();
  }

  // What a screen reader says of an answer: that it is being written, then the answer itself
  // (read once, when it ends, rather than token by token; aria-busy holds the log meanwhile).
  const ANNOUNCE_CHARS = 600;

  function announce(text) {
    answerStatus.textContent = text;
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
    if (!chatState.streaming.size) announce("The assistant is answering…");
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
    chatState.streaming.set(stream.id, stream);
    if (content) scheduleRender(stream);
  }

  function forgetStream(id) {
    const stream = chatState.streaming.get(id);
    if (stream) clearTimeout(stream.timer);
    chatState.streaming.delete(id);
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
      const response = await postForm(app.dataset.renderUrl, data);
      if (response.ok) html = (await response.json()).html;
    } catch (error) {
      // Offline or refused: the plain text stays, the next delta asks again.
    }
    stream.asking = false;
    if (chatState.streaming.get(stream.id) !== stream) return; // finished or restarted meanwhile
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

  function onSnapshot(frame) {
    let element = messageElement(frame.message);
    const wasNear = nearBottom();
    chatState.syncing = null;
    if (!element && (chatState.offBranch.has(frame.message) || chat.dataset.tail === "0")) {
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
      list.append(element);
    }
    keepBottom(wasNear, () => startStreaming(element, frame.content || "", frame.seq || 0));
    updateComposer();
  }

  function onDelta(frame) {
    const stream = chatState.streaming.get(frame.message);
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

  function onDone(frame) {
    const element = messageElement(frame.message);
    forgetStream(frame.message);
    chatState.offBranch.delete(frame.message);
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
    if (chatState.branchChanged && !chatState.streaming.size) {
      chatState.branchChanged = false;
      refreshSiblings();
    }
    flushOutbox();
  }

  async function onIdle() {
    // Nothing runs: answers this page still shows as streaming ended while we were away.
    const stale = $$('.message[data-status="streaming"]', list);
    chatState.streaming.clear();
    chatState.offBranch.clear();
    updateComposer();
    // Waiting messages go below the conversation's real end: after a request whose outcome
    // the page missed, that is what the server has, not what the page shows.
    const behind = chatState.resync && chatState.outbox.length;
    chatState.resync = false;
    if (stale.length || behind) await reloadTail();
    chatState.syncing = null;
    flushOutbox();
  }

  // Puts unsent texts back into the composer, before whatever is being typed there: the
  // messages waiting in the outbox followed the failed one, and are not sent without it.
  function giveBack(texts) {
    const waiting = chatState.outbox.splice(0).map((item) => item.content);
    const all = [...texts, ...waiting, textarea.value].filter((text) => text && text.trim());
    textarea.value = all.join("\n\n");
  }

  function onError(frame) {
    const request = chatState.lastRequest;
    if (frame.request_id && frame.request_id === chatState.syncing) {
      // The conversation could not be subscribed to (deleted meanwhile, say).
      chatState.syncing = null;
      giveBack([]);
    } else if (request && frame.request_id && frame.request_id === request.id) {
      chatState.lastRequest = null;
      if (chatState.sending === frame.request_id) chatState.sending = null;
      if (chatState.awaitingNew === frame.request_id) chatState.awaitingNew = null;
      giveBack([request.content]);
    }
    showComposerError(frame.detail || "Something went wrong.");
    updateComposer();
  }

  // --- Server-rendered refreshes ---

  async function reloadTail() {
    const id = chat.dataset.conversation;
    if (!id) return;
    try {
      const nodes = await fetchFragment(conversationUrl(id));
      list.replaceChildren(...nodes);
      enhanceAnswers(list);
      observeOlder();
      scrollToBottom();
      updateComposer();
    } catch (error) {
      /* The page keeps what it has; a reload shows the saved answer. */
    }
  }

  async function refreshSiblings() {
    const id = chat.dataset.conversation;
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
  const olderObserver = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) loadOlder(entry.target);
      }
    },
    { root: scroller, rootMargin: "300px 0px 0px 0px" },
  );

  function observeOlder() {
    const link = $("[data-older]", list);
    if (link) olderObserver.observe(link);
  }

  async function loadOlder(link) {
    if (olderLoading) return;
    olderLoading = true;
    olderObserver.unobserve(link);
    try {
      const nodes = await fetchFragment(link.href);
      const before = scroller.scrollHeight;
      const top = scroller.scrollTop;
      link.closest("li").replaceWith(...nodes);
      enhanceAnswers(list);
      scroller.scrollTop = top + (scroller.scrollHeight - before);
      observeOlder();
    } catch (error) {
      olderObserver.observe(link);
    } finally {
      olderLoading = false;
    }
  }

  // --- Sending ---

  function splitTarget(value) {
    if (!value) return [null, null];
    const at = value.indexOf(":");
    const provider = at < 0 ? value : value.slice(0, at);
    const model = at < 0 ? "" : value.slice(at + 1);
    return [provider || null, model || null];
  }

  function readOptions() {
    const options = {};
    const temperature = $("input[name=temperature]", composer);
    const maxTokens = $("input[name=max_tokens]", composer);
    for (const input of [temperature, maxTokens]) {
      if (!input.checkValidity()) {
        $("#settings").open = true;
        input.reportValidity();
        return null;
      }
    }
    if (temperature.value !== "") options.temperature = Number(temperature.value);
    if (maxTokens.value !== "") options.max_tokens = Number.parseInt(maxTokens.value, 10);
    options.system = $("textarea[name=system]", composer).value;
    return options;
  }

  function send() {
    const content = textarea.value;
    if (!content.trim() || chatState.streaming.size || fields.disabled) return;
    const options = readOptions();
    if (!options) return;
    const [provider, model] = splitTarget(targetSelect ? targetSelect.value : "");
    showComposerError("");
    textarea.value = "";
    closeMenus(null);
    enqueue({
      content,
      // Built when it goes out: by then the conversation may exist and have grown.
      frame: () => {
        const last = lastMessage();
        return {
          type: "chat.send",
          conversation: chat.dataset.conversation || null,
          parent: last ? last.dataset.id : null,
          content,
          provider,
          model,
          options,
          request_id: requestId(),
        };
      },
    });
    updateComposer();
  }

  function stopAll() {
    for (const id of chatState.streaming.keys()) {
      // Stopped while offline: said again on reconnecting (a stop of an ended answer is a no-op).
      if (!transmit({ type: "chat.stop", message: id })) chatState.stops.add(id);
    }
  }

  composer.addEventListener("submit", (event) => {
    // Only the "Save settings" button of the no-JavaScript page posts this form for real.
    if (event.submitter && event.submitter.hasAttribute("formaction")) return;
    event.preventDefault();
    send();
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  textarea.addEventListener("input", updateComposer);
  stopButton.addEventListener("click", stopAll);

  if (!CSS.supports("field-sizing", "content")) {
    // Browsers without CSS auto-sizing: grow the box with its text.
    const grow = () => {
      textarea.style.height = "auto";
      textarea.style.height = textarea.scrollHeight + "px";
    };
    textarea.addEventListener("input", grow);
  }

  // --- Settings: saved on the conversation as they change ---

  let settingsTimer = null;
  // A change not saved yet: a retry, regenerate or edit saves it first, since the server answers
  // those with the conversation's saved model (the picker must not show one and run another).
  let settingsDirty = false;
  const settingsStatus = document.getElementById("settings-status");

  // True when saved (or nothing to save, or no conversation yet); false when the server refused.
  async function saveSettings() {
    clearTimeout(settingsTimer);
    const id = chat.dataset.conversation;
    if (!id || !settingsDirty) return true; // a new chat sends them with its first message
    settingsDirty = false;
    const data = new FormData();
    for (const name of ["target", "temperature", "max_tokens", "system"]) {
      const field = composer.elements.namedItem(name);
      if (field) data.append(name, field.value);
    }
    let response;
    try {
      response = await postForm(chat.dataset.settingsUrl, data);
    } catch (error) {
      settingsDirty = true; // offline: saved with the next change or request
      return true;
    }
    const problem = response.ok ? "" : await response.text();
    if (settingsStatus) {
      settingsStatus.textContent = problem || "Saved";
      setTimeout(() => (settingsStatus.textContent = ""), 2500);
    }
    if (problem) showComposerError("Settings not saved: " + problem);
    return !problem;
  }

  for (const name of ["target", "temperature", "max_tokens", "system"]) {
    const field = composer.elements.namedItem(name);
    if (!field) continue;
    field.addEventListener("change", () => {
      clearTimeout(settingsTimer);
      if (field.checkValidity && !field.checkValidity()) return;
      settingsDirty = true;
      settingsTimer = setTimeout(saveSettings, 300);
    });
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
      if (!content.trim() || chatState.streaming.size) return;
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

  list.addEventListener("click", async (event) => {
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
        if (chatState.streaming.size) return;
        showComposerError("");
        if (!(await saveSettings())) return;
        enqueue({
          content: "",
          frame: () => ({ type: "chat.regenerate", message: element.dataset.id, request_id: requestId() }),
        });
        break;
      case "edit":
        openEditor(element);
        break;
      default:
        break;
    }
  });

  // --- Start ---

  enhanceAnswers(list);
  for (const element of $$('.message[data-status="streaming"]', list)) {
    // Rendered mid-stream: the text so far comes with the snapshot after subscribing.
    chatState.streaming.set(element.dataset.id, { seq: Infinity, node: null });
  }
  const target = location.hash.startsWith("#m-") && document.getElementById(location.hash.slice(1));
  if (target) target.scrollIntoView({ block: "center" });
  else scrollToBottom();
  observeOlder();
  updateComposer();
  // Not on touch screens, where focusing would pop up the keyboard over the conversation.
  if (!fields.disabled && !target && window.matchMedia("(hover: hover)").matches) textarea.focus();
  connect();
})();
