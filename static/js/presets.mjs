/* The composer's prompt presets: typing `/` at the start of the message box opens a list of the
 * user's presets (and the published ones), filtered by what follows the slash. Arrows move,
 * Enter (or a click) chooses, Esc closes. Choosing puts the preset's text in the box and its
 * settings (model, temperature, system prompt) in the settings popover, whose change events
 * save them on the conversation the way a change by hand does (composer.mjs).
 *
 * The list is an ARIA listbox that the message box controls (aria-controls, and
 * aria-activedescendant for the highlighted option), so the focus never leaves the box. */

import { page } from "./page.mjs";

// Presets whose title (or, after those, text) contains every word of the query, any case.
export function matchPresets(presets, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const has = (text) => words.every((word) => text.toLowerCase().includes(word));
  const byTitle = presets.filter((preset) => has(preset.title));
  const byText = presets.filter((preset) => !has(preset.title) && has(preset.text));
  return [...byTitle, ...byText];
}

// The query when the box asks for the list ("/" then a filter on one line), else null.
export function presetQuery(value) {
  if (!value.startsWith("/") || value.includes("\n")) return null;
  return value.slice(1);
}

const picker = {
  presets: null, // loaded on the first `/`
  loading: null,
  list: null,
  status: null,
  shown: [],
  active: -1,
};

function isOpen() {
  return picker.list !== null && !picker.list.hidden;
}

async function load() {
  if (picker.presets) return picker.presets;
  if (!picker.loading) {
    picker.loading = fetch(page.chat.dataset.presetsUrl, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then((response) => {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then((data) => (picker.presets = data.presets))
      .finally(() => (picker.loading = null));
  }
  return picker.loading;
}

function announce(text) {
  picker.status.textContent = text;
}

function option(preset, index) {
  const item = document.createElement("li");
  item.className = "preset-option";
  item.id = "preset-option-" + index;
  item.setAttribute("role", "option");
  item.setAttribute("aria-selected", "false");
  const title = document.createElement("span");
  title.className = "preset-option-title";
  title.textContent = preset.title + (preset.published ? " (published)" : "");
  const text = document.createElement("span");
  text.className = "preset-option-text";
  text.textContent = preset.text;
  item.append(title, text);
  // mousedown, not click: the box keeps the focus (and the list stays open until chosen).
  item.addEventListener("mousedown", (event) => {
    event.preventDefault();
    choose(preset);
  });
  return item;
}

function note(text) {
  const item = document.createElement("li");
  item.className = "preset-empty";
  item.setAttribute("role", "presentation");
  item.textContent = text;
  return item;
}

function highlight(index) {
  const options = picker.list.querySelectorAll('[role="option"]');
  picker.active = options.length ? (index + options.length) % options.length : -1;
  options.forEach((item, position) => {
    item.setAttribute("aria-selected", String(position === picker.active));
  });
  const active = options[picker.active];
  if (active) {
    page.textarea.setAttribute("aria-activedescendant", active.id);
    active.scrollIntoView({ block: "nearest" });
  } else {
    page.textarea.removeAttribute("aria-activedescendant");
  }
}

async function show(query) {
  const textarea = page.textarea;
  picker.list.hidden = false;
  textarea.setAttribute("aria-controls", picker.list.id);
  if (!picker.presets) {
    picker.list.replaceChildren(note("Loading presets…"));
    try {
      await load();
    } catch (error) {
      picker.list.replaceChildren(note("The presets could not be loaded."));
      return;
    }
    // The box may have changed while they loaded.
    const now = presetQuery(textarea.value);
    if (now === null || !isOpen()) return close();
    query = now;
  }
  picker.shown = matchPresets(picker.presets, query);
  if (!picker.shown.length) {
    const manage = picker.presets.length ? "No preset matches." : "No presets yet: add some on the Prompt presets page.";
    picker.list.replaceChildren(note(manage));
    highlight(-1);
    announce(manage);
    return;
  }
  picker.list.replaceChildren(...picker.shown.map(option));
  highlight(0);
  const count = picker.shown.length;
  announce(`${count} preset${count === 1 ? "" : "s"}; arrows to choose, Enter to use, Escape to close.`);
}

function close() {
  if (!picker.list) return;
  picker.list.hidden = true;
  picker.list.replaceChildren();
  picker.shown = [];
  picker.active = -1;
  page.textarea.removeAttribute("aria-activedescendant");
  page.textarea.removeAttribute("aria-controls");
}

function setField(name, value) {
  const field = page.composer.elements.namedItem(name);
  if (!field || field.value === value) return;
  if (field.tagName === "SELECT" && !Array.from(field.options).some((item) => item.value === value)) {
    return; // a model no longer offered: the chat keeps its own
  }
  field.value = value;
  field.dispatchEvent(new Event("change", { bubbles: true }));
}

function choose(preset) {
  close();
  const textarea = page.textarea;
  textarea.value = preset.text;
  if (preset.target) setField("target", preset.target);
  if (preset.temperature !== null && preset.temperature !== undefined) {
    setField("temperature", String(preset.temperature));
  }
  if (preset.system) setField("system", preset.system);
  // Updates the send button and the box's height; the text no longer asks for the list.
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
  textarea.focus();
  textarea.setSelectionRange(textarea.value.length, textarea.value.length);
  announce(`Preset “${preset.title}” is in the message box.`);
}

function onKeydown(event) {
  if (event.target !== page.textarea || !isOpen() || event.isComposing) return;
  let handled = true;
  if (event.key === "ArrowDown") highlight(picker.active + 1);
  else if (event.key === "ArrowUp") highlight(picker.active - 1);
  else if (event.key === "Escape") close();
  else if (event.key === "Enter" && !event.shiftKey && picker.active >= 0) {
    choose(picker.shown[picker.active]);
  } else handled = false;
  if (handled) {
    // Before the composer's own keys (Enter sends) and the page's (Esc stops an answer).
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}

export function setUpPresets() {
  const box = page.composer.querySelector(".composer-box");
  if (!box || !page.chat.dataset.presetsUrl) return;
  const list = document.createElement("ul");
  list.id = "preset-picker";
  list.className = "preset-picker";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Prompt presets");
  list.hidden = true;
  const status = document.createElement("span");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  box.append(list, status);
  picker.list = list;
  picker.status = status;
  const textarea = page.textarea;
  textarea.setAttribute("aria-autocomplete", "list");
  // Capture on the form: runs before the box's own keydown listener (composer.mjs).
  page.composer.addEventListener("keydown", onKeydown, true);
  textarea.addEventListener("input", () => {
    const query = presetQuery(textarea.value);
    if (query === null) close();
    else show(query);
  });
  textarea.addEventListener("blur", close);
}
