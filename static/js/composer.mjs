/* The composer: the message box (Enter sends, Shift+Enter a new line), the send and stop
 * buttons, the model picker and the settings popover, saved on the conversation as they change,
 * and the composer's part in refusals (unsent text comes back into the box). */

import { attachmentsProblem, giveBackAttachments, takeAttachments } from "./attachments.mjs";
import { postForm } from "./http.mjs";
import { lastMessage, page, showComposerError, state } from "./page.mjs";
import { announceOutbox, enqueue, stopAll } from "./socket.mjs";
import { sendOptions, splitTarget } from "./options.mjs";
import { $, closeMenus, refusal, requestId } from "./ui.mjs";

const SETTINGS = ["target", "temperature", "max_tokens", "system"];

let sendButton = null;
let stopButton = null;
let fields = null;

export function updateComposer() {
  const busy = state.streaming.size > 0;
  sendButton.hidden = busy;
  stopButton.hidden = !busy;
  sendButton.disabled = !page.textarea.value.trim();
  const last = lastMessage();
  $("input[name=parent]", page.composer).value = last ? last.dataset.id : "";
}

// The settings as options of a chat.send; null (and the field pointed out) if one is invalid.
function readOptions() {
  const composer = page.composer;
  const temperature = $("input[name=temperature]", composer);
  const maxTokens = $("input[name=max_tokens]", composer);
  for (const input of [temperature, maxTokens]) {
    if (!input.checkValidity()) {
      $("#settings").open = true;
      input.reportValidity();
      return null;
    }
  }
  const system = $("textarea[name=system]", composer).value;
  return sendOptions({ temperature: temperature.value, maxTokens: maxTokens.value, system });
}

function send() {
  const textarea = page.textarea;
  const content = textarea.value;
  if (!content.trim() || state.streaming.size || fields.disabled) return;
  const options = readOptions();
  if (!options) return;
  const problem = attachmentsProblem();
  if (problem) {
    showComposerError(problem);
    return;
  }
  const attachments = takeAttachments();
  const targetSelect = $("select[name=target]", page.composer);
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
        conversation: page.chat.dataset.conversation || null,
        parent: last ? last.dataset.id : null,
        content,
        provider,
        model,
        options,
        ...(attachments.length ? { attachments } : {}),
        request_id: requestId(),
      };
    },
  });
  updateComposer();
}

// Puts unsent texts back into the composer, before whatever is being typed there: the
// messages waiting in the outbox followed the failed one, and are not sent without it.
export function giveBack(texts) {
  const textarea = page.textarea;
  const waiting = state.outbox.drain();
  const all = [...texts, ...waiting, textarea.value].filter((text) => text && text.trim());
  textarea.value = all.join("\n\n");
  announceOutbox(); // their pending bubbles go
}

// An `error` frame: a refused request's text comes back; the reason is shown.
export function onError(frame) {
  if (frame.request_id && frame.request_id === state.syncing) {
    // The conversation could not be subscribed to (deleted meanwhile, say).
    state.syncing = null;
    giveBack([]);
  } else {
    const content = state.outbox.refused(frame.request_id);
    if (content !== null) {
      giveBack([content]);
      giveBackAttachments();
    }
  }
  showComposerError(frame.detail || "Something went wrong.");
  updateComposer();
}

// --- Settings: saved on the conversation as they change ---

let settingsTimer = null;
// A change not saved yet: a retry, regenerate or edit saves it first, since the server answers
// those with the conversation's saved model (the picker must not show one and run another).
let settingsDirty = false;

// True when saved (or nothing to save, or no conversation yet); false when the server refused.
export async function saveSettings() {
  clearTimeout(settingsTimer);
  const chat = page.chat;
  const id = chat.dataset.conversation;
  if (!id || !settingsDirty) return true; // a new chat sends them with its first message
  settingsDirty = false;
  const data = new FormData();
  for (const name of SETTINGS) {
    const field = page.composer.elements.namedItem(name);
    if (field) data.append(name, field.value);
  }
  let response;
  try {
    response = await postForm(chat.dataset.settingsUrl, data);
  } catch (error) {
    settingsDirty = true; // offline: saved with the next change or request
    return true;
  }
  const problem = response.ok ? "" : await refusal(response);
  const settingsStatus = document.getElementById("settings-status");
  if (settingsStatus) {
    settingsStatus.textContent = problem || "Saved";
    setTimeout(() => (settingsStatus.textContent = ""), 2500);
  }
  if (problem) showComposerError("Settings not saved: " + problem);
  return !problem;
}

export function setUpComposer() {
  const { composer, textarea } = page;
  sendButton = document.getElementById("send-button");
  stopButton = document.getElementById("stop-button");
  fields = $(".composer-fields", composer);

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

  for (const name of SETTINGS) {
    const field = composer.elements.namedItem(name);
    if (!field) continue;
    field.addEventListener("change", () => {
      clearTimeout(settingsTimer);
      if (field.checkValidity && !field.checkValidity()) return;
      settingsDirty = true;
      settingsTimer = setTimeout(saveSettings, 300);
    });
  }
}

// Whether the message box may take the focus when the page opens.
export function composerEnabled() {
  return !fields.disabled;
}
