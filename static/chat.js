/* The chat's script, an ES module: the live stream over /ws/chat/ (see docs/protocol.md) and the
 * conveniences on top of pages that work without it. This file only wires its modules, in js/:
 *
 *   page.mjs        the elements and the state the modules share
 *   sidebar.mjs     the conversation list: paging, rename, delete, hiding it
 *   folders.mjs     dragging conversations into and out of folders
 *   shortcuts.mjs   the keyboard shortcuts
 *   composer.mjs    the message box, send and stop, the model picker and settings
 *   attachments.mjs files for a message: button, drag and drop, paste, upload progress
 *   socket.mjs      the WebSocket: connect, reconnect, resume, the outbox, frame dispatch
 *   messages.mjs    the conversation: bubbles, answers rendered as they stream, message actions
 *   presets.mjs     the composer's `/` list of prompt presets
 *   usage.mjs       an answer's tokens, time and cost, written when it ends
 *   outbox.mjs, stream_state.mjs, options.mjs   pure rules, tested by Node in tests/js
 *   http.mjs, math.mjs, ui.mjs                  fetches, KaTeX, page-wide conveniences
 */
import { setUpAttachments } from "./js/attachments.mjs";
import { composerEnabled, onError, setUpComposer, updateComposer } from "./js/composer.mjs";
import {
  onConversationCreated,
  onConversationUpdated,
  onDelta,
  onDone,
  onIdle,
  onMessageCreated,
  onSnapshot,
  setUpMessages,
} from "./js/messages.mjs";
import { setUpFolders } from "./js/folders.mjs";
import { page, setUpPage } from "./js/page.mjs";
import { setUpPresets } from "./js/presets.mjs";
import { setUpShortcuts } from "./js/shortcuts.mjs";
import { setUpSidebar } from "./js/sidebar.mjs";
import { connect, setUpSocket, stopAll } from "./js/socket.mjs";
import { setUpMenusDialogsAndFlash } from "./js/ui.mjs";

const root = document.documentElement;
root.classList.remove("no-js");
root.classList.add("js");

if (setUpPage()) {
  setUpMenusDialogsAndFlash();
  setUpSidebar();
  setUpFolders();
  setUpShortcuts({ stopAll: page.chat ? stopAll : null });
  if (page.chat) {
    setUpSocket({
      "conversation.created": onConversationCreated,
      "conversation.updated": onConversationUpdated,
      "message.created": onMessageCreated,
      "message.snapshot": onSnapshot,
      "message.delta": onDelta,
      "message.done": onDone,
      "conversation.idle": onIdle,
      error: onError,
    });
    setUpComposer();
    setUpPresets();
    setUpAttachments();
    const openedAtMessage = setUpMessages();
    updateComposer();
    // Not on touch screens, where focusing would pop up the keyboard over the conversation.
    if (composerEnabled() && !openedAtMessage && window.matchMedia("(hover: hover)").matches) {
      page.textarea.focus();
    }
    connect();
  }
}
