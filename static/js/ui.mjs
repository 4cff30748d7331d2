/* Page-wide conveniences that know nothing of the chat: finding elements, the clipboard,
 * request ids, menus (one open at a time), dialogs opened and closed by data attributes, and
 * flash notes. */

export const $ = (selector, scope) => (scope || document).querySelector(selector);
export const $$ = (selector, scope) => Array.from((scope || document).querySelectorAll(selector));

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on a LAN address has no clipboard API: the old selection-based way still works.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

export function flashCopied(button) {
  const label = button.getAttribute("aria-label");
  const last = button.lastChild;
  const text = last && last.nodeType === Node.TEXT_NODE ? last : null;
  const before = text ? text.data : "";
  button.classList.add("is-copied");
  button.setAttribute("aria-label", "Copied");
  if (text) text.data = "Copied";
  setTimeout(() => {
    button.classList.remove("is-copied");
    button.setAttribute("aria-label", label);
    if (text) text.data = before;
  }, 1500);
}

export function requestId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return String(Date.now()) + Math.random().toString(16).slice(2);
}

export function closeMenus(except) {
  for (const menu of document.querySelectorAll("details.menu[open], details.settings[open]")) {
    if (menu !== except && !menu.contains(except)) menu.removeAttribute("open");
  }
}

function fadeFlash(item, delay) {
  setTimeout(() => {
    item.classList.add("is-leaving");
    setTimeout(() => item.remove(), 400);
  }, delay);
}

// A note like the server's flash messages, for what fails in the page's own requests.
export function showFlashError(text) {
  let flash = document.getElementById("flash");
  if (!flash) {
    flash = document.createElement("ul");
    flash.className = "flash";
    flash.id = "flash";
    const topbar = document.querySelector("#main .topbar");
    if (topbar) topbar.after(flash);
    else document.querySelector("#main").prepend(flash);
  }
  const item = document.createElement("li");
  item.className = "flash-item flash-error";
  item.setAttribute("role", "alert");
  item.textContent = text;
  flash.replaceChildren(item);
  fadeFlash(item, 6000);
}

// Why a form the script posted was refused, in words for the user.
// A refused request as one sentence, never the raw body: the server's own sentence from its one
// JSON error shape, {"error": {"code", "message"}}, or a fixed one for anything else.
export async function refusal(response) {
  if (response.status === 404) return "This conversation no longer exists.";
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
  } catch (error) {
    /* Not JSON (a proxy's page, say): the fixed sentence below. */
  }
  return `The server answered ${response.status}. Try again in a moment.`;
}

// The page-wide listeners; called once, before the rest of the script adds its own.
export function setUpMenusDialogsAndFlash() {
  document.addEventListener("click", (event) => {
    const inside = event.target.closest("details.menu, details.settings");
    // Choosing an item (a download, say) is done with the menu: it closes.
    closeMenus(event.target.closest(".menu-item") ? null : inside);
  });

  for (const menu of document.querySelectorAll("details.menu, details.settings")) {
    menu.addEventListener("toggle", () => {
      if (menu.open) closeMenus(menu);
    });
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog) dialog.showModal();
    }
    const closer = event.target.closest("[data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });

  for (const item of document.querySelectorAll(".flash-item")) fadeFlash(item, 4000);

  // Forms that return to "this page" (archive in the sidebar) say which page that is now; a
  // sidebar page loaded by the script would otherwise name the fragment's URL.
  document.addEventListener("submit", (event) => {
    const next = event.target.querySelector("input[name=next]");
    if (next) next.value = location.pathname + location.search;
  });
}
