/* The sidebar: the conversation list (paged as it scrolls, refreshed when a conversation is
 * created or renamed), its item menus, rename in place, delete with a dialog, and hiding it
 * (a class on phones, a remembered cookie on wider screens). */

import { fetchFragment, postForm } from "./http.mjs";
import { PLACEHOLDER, page } from "./page.mjs";
import { $, $$, closeMenus, refusal, showFlashError } from "./ui.mjs";

let sidebarList = null;
let sidebarNav = null;
let sidebarObserver = null;
let sidebarLoading = false;

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

export function refreshSidebar() {
  if (!sidebarList) return Promise.resolve();
  if (sidebarRefresh) {
    sidebarRefreshAgain = true;
    return sidebarRefresh;
  }
  sidebarRefresh = (async () => {
    do {
      sidebarRefreshAgain = false;
      try {
        const nodes = await fetchFragment(page.app.dataset.sidebarUrl || "/conversations/");
        // Folders the user had opened stay open.
        const open = new Set($$(".folder-details[open]", sidebarList).map((d) => d.closest(".folder").dataset.folder));
        sidebarList.replaceChildren(...nodes);
        for (const folder of $$(".folder", sidebarList)) {
          if (open.has(folder.dataset.folder)) $(".folder-details", folder).open = true;
        }
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
  const current = page.chat ? page.chat.dataset.conversation : "";
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
  const pinned = item.dataset.pinned === "1";
  $("input[name=pinned]", panel).value = pinned ? "0" : "1";
  $('[data-slot="pin"]', panel).lastChild.data = pinned ? "Unpin" : "Pin to the top";
  const folder = $('[data-slot="folder"]', panel);
  if (folder) folder.value = item.dataset.folder || "";
  $('[data-action="delete"]', panel).dataset.title = $(".conversation-link", item).textContent;
  details.append(panel);
}

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
  page.app.classList.toggle("sidebar-collapsed", collapsed);
  document.cookie = collapsed
    ? "sidebar=collapsed; path=/; max-age=31536000; SameSite=Lax"
    : "sidebar=; path=/; max-age=0; SameSite=Lax";
}

export function toggleSidebar() {
  if (isPhone()) {
    page.app.classList.toggle("sidebar-open");
    if (location.hash === "#sidebar") history.replaceState(null, "", location.pathname + location.search);
  } else {
    setSidebarCollapsed(!page.app.classList.contains("sidebar-collapsed"));
  }
}

export function closeSidebar() {
  page.app.classList.remove("sidebar-open");
}

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

// A conversation's title, wherever the page shows it (sidebar, heading, tab, delete dialog).
export function applyTitle(id, title) {
  setSidebarTitle(id, title);
  const chat = page.chat;
  if (chat && chat.dataset.conversation === id) {
    const heading = document.getElementById("conversation-title");
    heading.textContent = title || "New chat";
    document.title = (title || "New chat") + " · Chat";
    for (const link of $$('[data-action="delete"]', chat)) link.dataset.title = title;
  }
}

function onClick(event) {
  const action = event.target.closest('[data-action="rename"], [data-action="rename-current"]');
  if (action) {
    event.preventDefault();
    closeMenus(null);
    const url = action.getAttribute("href");
    if (action.dataset.action === "rename") {
      const item = action.closest(".conversation-item");
      renameInPlace($(".conversation-link", item), url, (title) => applyTitle(item.dataset.id, title));
    } else {
      const id = page.chat.dataset.conversation;
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
}

export function setUpSidebar() {
  sidebarList = document.getElementById("conversation-list");
  sidebarNav = $(".conversation-nav");
  sidebarObserver = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) loadMoreConversations(entry.target);
      }
    },
    { root: sidebarNav, rootMargin: "200px" },
  );

  document.addEventListener("click", (event) => {
    const summary = event.target.closest(".item-menu > summary");
    if (summary) fillItemMenu(summary.parentElement);
  });

  // The menu button and the scrim are plain links (#sidebar, #) so the sidebar opens without
  // JavaScript; with it, they toggle a class and leave the URL alone.
  document.addEventListener("click", (event) => {
    const opener = event.target.closest(".menu-button");
    const closer = event.target.closest(".sidebar-close, .scrim");
    if (opener || closer) {
      event.preventDefault();
      if (opener && !isPhone()) setSidebarCollapsed(false);
      else if (opener) page.app.classList.add("sidebar-open");
      else page.app.classList.remove("sidebar-open");
    }
  });

  document.addEventListener("click", onClick);
  observeSidebarMore();
  markCurrentConversation();
}
