/* The keyboard shortcuts, on every page of the app (the shortcuts dialog lists them). */

import { isStreaming, page } from "./page.mjs";
import { closeSidebar, toggleSidebar } from "./sidebar.mjs";
import { $, closeMenus } from "./ui.mjs";

function typingInField(target) {
  return target.closest("input, textarea, select, [contenteditable=true]");
}

// `stopAll`: stops the answers being written (the chat page's; null elsewhere).
export function setUpShortcuts({ stopAll }) {
  const textarea = page.textarea;
  document.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      event.preventDefault();
      location.href = page.app.dataset.chatUrl;
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
    } else if (event.key === "Escape" && stopAll && isStreaming() && !$("dialog[open]")) {
      event.preventDefault();
      stopAll();
    } else if (event.key === "Escape") {
      closeSidebar();
      closeMenus(null);
    }
  });
}
