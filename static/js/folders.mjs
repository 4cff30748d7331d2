/* Drag and drop in the sidebar: a conversation dropped on a folder moves into it; dropped
 * anywhere else in the list, it leaves its folder. The same move as the "Folder" select of the
 * item's menu (which keyboards and pages without this script use), posted to the same view. */

import { postForm } from "./http.mjs";
import { PLACEHOLDER, page } from "./page.mjs";
import { refreshSidebar } from "./sidebar.mjs";
import { $$, refusal, showFlashError } from "./ui.mjs";

let dragged = null;

function dropTarget(node) {
  return node instanceof Element ? node.closest("[data-drop-folder]") : null;
}

function clearTargets() {
  for (const element of $$(".is-drop-target")) element.classList.remove("is-drop-target");
}

async function move(item, folderId, target) {
  const url = page.app.dataset.moveUrl.replace(PLACEHOLDER, item.dataset.id);
  const data = new FormData();
  data.append("folder", folderId);
  let response;
  try {
    response = await postForm(url, data);
  } catch (error) {
    showFlashError("Not moved: the server could not be reached.");
    return;
  }
  if (!response.ok) {
    showFlashError("Not moved: " + (await refusal(response)));
    return;
  }
  // The folder it went into shows it (refreshSidebar keeps open folders open).
  const details = target.querySelector(":scope > .folder-details");
  if (details) details.open = true;
  await refreshSidebar();
}

// Items carry no draggable attribute (fifty of them would weigh on every page): the drag starts
// on the item's link, which browsers let drag anyway, and is taken here for its item.
export function setUpFolders() {
  const list = document.getElementById("conversation-list");
  if (!list || !page.app.dataset.moveUrl) return;
  list.addEventListener("dragstart", (event) => {
    const item = event.target instanceof Element && event.target.closest(".conversation-item");
    if (!item) return;
    dragged = item;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", $$("a", item)[0].href);
    item.classList.add("is-dragging");
  });
  list.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("is-dragging");
    dragged = null;
    clearTargets();
  });
  list.addEventListener("dragover", (event) => {
    const target = dragged && dropTarget(event.target);
    if (!target) return;
    event.preventDefault(); // this element takes the drop
    event.dataTransfer.dropEffect = "move";
    if (!target.classList.contains("is-drop-target")) {
      clearTargets();
      target.classList.add("is-drop-target");
    }
  });
  list.addEventListener("dragleave", (event) => {
    if (event.target === list && !list.contains(event.relatedTarget)) clearTargets();
  });
  list.addEventListener("drop", (event) => {
    const target = dragged && dropTarget(event.target);
    if (!target) return;
    event.preventDefault();
    const item = dragged;
    clearTargets();
    const folderId = target.dataset.dropFolder;
    // A pinned conversation stays pinned (and shown there); only its folder changes.
    if ((item.dataset.folder || "") !== folderId) move(item, folderId, target);
  });
}
