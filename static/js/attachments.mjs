/* Attachments in the composer: the Attach button (the form's own file input), files dropped on
 * the composer or pasted into the message box. Each file is uploaded at once to /attachments/
 * with XMLHttpRequest, whose upload events give a real progress bar for a large file (fetch has
 * none), and becomes a chip with its name, size and (images) thumbnail; the send then names the
 * uploaded ids in its chat.send frame, so the socket only ever carries small frames. Without
 * JavaScript the same file input posts the files with the form. */

import { page } from "./page.mjs";
import { $ } from "./ui.mjs";

// The documented estimate (README): about four characters a token.
export function tokenEstimate(chars) {
  return Math.ceil(chars / 4);
}

export function formatSize(bytes) {
  if (bytes >= 1024 * 1024) return (bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, "") + " MB";
  if (bytes >= 1024) return Math.round(bytes / 1024) + " KB";
  return bytes + " bytes";
}

// Why `file` cannot join `chosen` (files already in the composer), or "" when it can.
export function refusalOf(file, chosen, limits) {
  if (chosen.length >= limits.count) return `At most ${limits.count} files can go with one message.`;
  if (file.size > limits.file) return `${file.name} is larger than ${formatSize(limits.file)}.`;
  const total = chosen.reduce((sum, item) => sum + item.size, 0) + file.size;
  if (total > limits.message) return `The files of one message may total ${formatSize(limits.message)}.`;
  return "";
}

// Chips in the composer: {id (once uploaded), name, size, kind, tokens, url, node, request}.
let chosen = [];
// The files of the send on its way, given back to the composer if the server refuses it.
let inFlight = [];
let limits = null;
let chipList = null;
let estimate = null;

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function updateEstimate() {
  const files = chosen.filter((item) => item.id);
  if (!chosen.length) {
    estimate.textContent = "";
    return;
  }
  const tokens = files.reduce((sum, item) => sum + item.tokens, 0) + tokenEstimate(page.textarea.value.length);
  const images = files.filter((item) => item.kind === "image").length;
  estimate.textContent = `≈ ${tokens.toLocaleString()} tokens` + (images ? ` + ${images} image${images > 1 ? "s" : ""}` : "");
}

function renderChips() {
  chipList.replaceChildren(...chosen.map((item) => item.node));
  chipList.hidden = !chosen.length;
  updateEstimate();
}

function chipFor(item) {
  const node = document.createElement("li");
  node.className = "attachment-chip";
  node.dataset.state = "uploading";
  const name = document.createElement("span");
  name.className = "attachment-name";
  name.textContent = item.name;
  const size = document.createElement("span");
  size.className = "attachment-size";
  size.textContent = formatSize(item.size);
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = 0;
  progress.setAttribute("aria-label", `Uploading ${item.name}`);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "icon-button small";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Remove ${item.name}`);
  remove.addEventListener("click", () => removeItem(item));
  node.append(name, size, progress, remove);
  item.node = node;
  item.progress = progress;
  return node;
}

function markUploaded(item, data) {
  Object.assign(item, { id: data.id, kind: data.kind, tokens: data.tokens, url: data.url });
  item.node.dataset.state = "ready";
  item.node.dataset.id = data.id;
  item.progress.remove();
  if (data.kind === "image") {
    const thumb = document.createElement("img");
    thumb.src = data.url;
    thumb.alt = "";
    item.node.prepend(thumb);
  }
  updateEstimate();
}

function markFailed(item, detail) {
  item.failed = true;
  item.node.dataset.state = "error";
  item.progress.remove();
  const reason = document.createElement("span");
  reason.className = "attachment-error";
  reason.setAttribute("role", "alert");
  reason.textContent = detail;
  item.node.insertBefore(reason, item.node.lastElementChild);
}

function upload(item, file) {
  const request = new XMLHttpRequest();
  item.request = request;
  request.open("POST", page.composer.dataset.uploadUrl);
  request.setRequestHeader("X-CSRFToken", csrfToken());
  request.setRequestHeader("Accept", "application/json");
  request.responseType = "json";
  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) item.progress.value = Math.round((event.loaded / event.total) * 100);
  });
  request.addEventListener("load", () => {
    item.request = null;
    const data = request.response || {};
    if (request.status === 201 && data.id) markUploaded(item, data);
    else {
      // The site's one error shape, {"error": {"code", "message"}} (413 may come from the server
      // itself, before the view, as plain text).
      const message = data.error && typeof data.error.message === "string" ? data.error.message : "";
      markFailed(item, message || (request.status === 413 ? "The file is too large." : "The upload failed."));
    }
  });
  request.addEventListener("error", () => {
    item.request = null;
    markFailed(item, "The upload failed: no connection.");
  });
  const form = new FormData();
  form.append("file", file);
  request.send(form);
}

function removeItem(item) {
  if (item.request) item.request.abort();
  chosen = chosen.filter((other) => other !== item);
  if (item.id) {
    // Best effort: an upload never sent is deleted by the server after a day anyway.
    fetch(`${item.url}remove/`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    }).catch(() => {});
  }
  renderChips();
  page.textarea.focus();
}

export function addFiles(files) {
  for (const file of files) {
    const problem = refusalOf(file, chosen.filter((item) => !item.failed), limits);
    const item = { name: file.name || "pasted file", size: file.size, tokens: 0 };
    chosen.push(item);
    chipFor(item);
    if (problem) markFailed(item, problem);
    else upload(item, file);
  }
  renderChips();
}

// "" when the composer's files may be sent, else why not.
export function attachmentsProblem() {
  if (chosen.some((item) => item.request)) return "Wait for the files to finish uploading.";
  if (chosen.some((item) => item.failed)) return "Remove the files that could not be attached first.";
  return "";
}

// The ids for a chat.send; the chips leave the composer (see giveBackAttachments).
export function takeAttachments() {
  inFlight = chosen;
  chosen = [];
  renderChips();
  return inFlight.map((item) => item.id);
}

// The server refused the send: its files come back to the composer, still unsent there.
export function giveBackAttachments() {
  if (!inFlight.length) return;
  chosen = [...inFlight, ...chosen];
  inFlight = [];
  renderChips();
}

// The question arrived: its files are sent for good.
export function attachmentsSent() {
  inFlight = [];
}

// A message's files (from a message.created frame), shown like the server renders them.
export function showAttachments(element, files) {
  const list = $('[data-slot="attachments"]', element);
  if (!list || !files || !files.length) return;
  list.replaceChildren(
    ...files.map((file) => {
      const item = document.createElement("li");
      item.className = `attachment attachment--${file.kind}`;
      const link = document.createElement("a");
      link.href = file.url;
      if (file.kind === "image") {
        link.target = "_blank";
        link.rel = "noopener";
        const image = document.createElement("img");
        image.className = "attachment-thumb";
        image.src = file.url;
        image.alt = file.name;
        image.width = image.height = 96;
        link.append(image);
      } else {
        link.className = "attachment-file";
        link.download = "";
        const name = document.createElement("span");
        name.className = "attachment-name";
        name.textContent = file.name;
        const size = document.createElement("span");
        size.className = "attachment-size";
        size.textContent = formatSize(file.size);
        link.append(name, " ", size);
      }
      item.append(link);
      return item;
    }),
  );
  list.hidden = false;
}

function hasFiles(event) {
  return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
}

export function setUpAttachments() {
  const composer = page.composer;
  const input = $("input[name=files]", composer);
  chipList = document.getElementById("attachment-chips");
  estimate = document.getElementById("token-estimate");
  if (!input || !chipList) return;
  limits = {
    file: Number(composer.dataset.maxFileBytes),
    message: Number(composer.dataset.maxMessageBytes),
    count: Number(composer.dataset.maxFiles),
  };
  input.addEventListener("change", () => {
    addFiles(Array.from(input.files));
    input.value = ""; // uploaded already: the form must not post them again
  });
  composer.addEventListener("dragover", (event) => {
    if (!hasFiles(event) || input.disabled) return;
    event.preventDefault();
    composer.dataset.dragging = "";
  });
  composer.addEventListener("dragleave", (event) => {
    if (!composer.contains(event.relatedTarget)) delete composer.dataset.dragging;
  });
  composer.addEventListener("drop", (event) => {
    delete composer.dataset.dragging;
    if (!hasFiles(event) || input.disabled) return;
    event.preventDefault();
    addFiles(Array.from(event.dataTransfer.files));
  });
  page.textarea.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    const files = Array.from((data && data.files) || []);
    // Copied text may come with a picture of itself (office programs): the text wins.
    if (!files.length || input.disabled || Array.from(data.types).includes("text/plain")) return;
    event.preventDefault();
    addFiles(files);
  });
  page.textarea.addEventListener("input", updateEstimate);
}
