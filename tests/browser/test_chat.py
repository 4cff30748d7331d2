"""Chatting in a real browser: sign in, stream, stop, regenerate, edit, switch, resume, retry."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.browser.conftest import PASSWORD
from tests.conversations import page_factories as make
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_REPLY = " ".join(f"word{index}" for index in range(60))
# Slow enough that a test can act mid-stream, fast enough to keep the suite short.
SLOW = 0.05


def send(page, text: str) -> None:
    box = page.locator("#id_content")
    box.fill(text)
    box.press("Enter")


def last_answer(page):
    return page.locator(".message--assistant").last


# Run in a page before its own scripts: logs the type of each socket frame once the page's
# handler has run (the log's listener is added after the page's own), so a test can wait until
# a frame has been handled, instead of waiting some time.
FRAME_LOG = """(() => {
    const Native = window.WebSocket;
    window.framesHandled = [];
    window.WebSocket = class extends Native {
        constructor(...args) {
            super(...args);
            queueMicrotask(() => this.addEventListener("message", (event) => {
                window.framesHandled.push(JSON.parse(event.data).type);
            }));
        }
    };
})();"""


def wait_until_handled(page, frame_type: str) -> None:
    page.wait_for_function("(type) => window.framesHandled.includes(type)", arg=frame_type)


def wait_for_text(page, text: str) -> None:
    """Until the answer being written shows `text` (while it is still being written)."""
    page.wait_for_function(
        """(text) => {
            const answer = [...document.querySelectorAll('.message--assistant')].pop();
            return answer && answer.dataset.status === 'streaming'
                && answer.querySelector('[data-slot=content]').textContent.includes(text);
        }""",
        arg=text,
    )


def test_sign_in_and_watch_the_answer_arrive_token_by_token(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(
        reply="Paris is the **capital** of France. " + LONG_REPLY, chunk_delay=0.02
    )
    page = open_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    send(page, "What is the capital of France?")

    answer = last_answer(page)
    wait_for_text(page, "word3")
    # Mid-stream: the Stop button instead of Send.
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#send-button")).to_be_hidden()
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator("[data-slot=content] strong")).to_have_text("capital")
    expect(answer.locator("[data-slot=content]")).to_contain_text("word59")
    expect(page.locator("#send-button")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    expect(page).to_have_title(re.compile(r"^What is the capital of France\?.* · Chat$"))
    expect(page.locator(".conversation-item.is-current")).to_contain_text("What is the capital")
    expect(page.locator(".message--user [data-slot=text]")).to_have_text(
        "What is the capital of France?"
    )


def test_stop_mid_stream_keeps_the_partial_answer(open_page, user, provider, fake_upstream):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")

    send(page, "Count slowly")
    wait_for_text(page, "word3")
    page.click("#stop-button")

    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator(".tag")).to_have_text("Stopped")
    shown = answer.locator("[data-slot=content]").inner_text().strip()
    assert shown.startswith("word0 word1 word2 word3") and "word59" not in shown
    row = Message.objects.get(role="assistant")
    assert row.status == Message.Status.STOPPED and row.content.strip() == shown


def test_regenerate_makes_a_second_version_and_the_arrows_switch_back(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(reply="First answer.")
    page = open_page(user)
    page.goto("/")
    send(page, "Tell me something")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    fake_upstream.behave(reply="Second answer.")
    last_answer(page).get_by_label("Regenerate answer").click()

    expect(page.locator(".message--assistant")).to_have_count(1)
    expect(last_answer(page)).to_contain_text("Second answer.")
    expect(last_answer(page).locator(".siblings-position")).to_have_text("2/2")
    last_answer(page).get_by_label("Previous version").click()
    expect(last_answer(page)).to_contain_text("First answer.")
    expect(last_answer(page).locator(".siblings-position")).to_have_text("1/2")
    last_answer(page).get_by_label("Next version").click()
    expect(last_answer(page)).to_contain_text("Second answer.")


def test_edit_and_resend_makes_a_new_branch(open_page, user, provider, fake_upstream):
    fake_upstream.behave(reply="About cats.")
    page = open_page(user)
    page.goto("/")
    send(page, "Tell me about cats")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    fake_upstream.behave(reply="About dogs.")
    question = page.locator(".message--user").last
    question.hover()
    question.locator("[data-action=edit]").click()
    editor = page.locator(".message-edit textarea")
    expect(editor).to_have_value("Tell me about cats")
    editor.fill("Tell me about dogs")
    editor.press("Enter")

    expect(page.locator(".message--user [data-slot=text]")).to_have_text("Tell me about dogs")
    expect(last_answer(page)).to_contain_text("About dogs.")
    expect(page.locator(".message--user .siblings-position")).to_have_text("2/2")
    assert fake_upstream.requests[-1].json["messages"][-1]["content"] == "Tell me about dogs"
    page.locator(".message--user").get_by_label("Previous version").click()
    expect(page.locator(".message--user [data-slot=text]")).to_have_text("Tell me about cats")
    expect(last_answer(page)).to_contain_text("About cats.")


def test_reload_mid_stream_resumes_the_answer_without_losing_a_word(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")
    send(page, "Count for me")
    wait_for_text(page, "word5")

    page.reload()
    assert Message.objects.get(role="assistant").status == Message.Status.STREAMING

    answer = last_answer(page)
    wait_for_text(page, "word30")  # still arriving live after the reload
    expect(answer).to_have_attribute("data-status", "complete")
    assert answer.locator("[data-slot=content]").inner_text().split() == LONG_REPLY.split()


def test_provider_error_shows_inline_and_retry_answers(open_page, user, provider, fake_upstream):
    fake_upstream.behave(status=429)
    page = open_page(user)
    page.goto("/")
    send(page, "Hello?")

    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "error")
    error = answer.locator(".message-error")
    expect(error).to_be_visible()
    # The user reads the code's fixed sentence, not the upstream's words (those are for admins).
    expect(error).to_contain_text("The provider is rate limiting; try again later.")

    fake_upstream.behave(reply="Back again.")
    error.get_by_role("button", name="Retry").click()
    expect(last_answer(page)).to_contain_text("Back again.")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(last_answer(page).locator(".message-error")).to_be_hidden()


def test_keyboard_enter_sends_shift_enter_breaks_the_line_escape_stops(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=SLOW)
    page = open_page(user)
    page.goto("/")
    page.locator("body").click()
    page.keyboard.press("/")
    expect(page.locator("#id_content")).to_be_focused()
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(page.locator("#id_content")).to_have_value("line one\nline two")
    assert not Message.objects.exists()

    page.keyboard.press("Enter")
    wait_for_text(page, "word2")
    page.keyboard.press("Escape")
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(page.locator(".message--user [data-slot=text]")).to_have_text("line one\nline two")

    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#empty-state")).to_be_visible()


@pytest.fixture
def own_server(chat_server, tmp_path):
    """A server of this test's own, to restart without disturbing the shared one."""
    server = LiveServer(tmp_path / "own-server.log")
    server.start()
    yield server
    server.stop()


def test_reconnects_by_itself_after_a_server_restart(
    open_page, own_server, user, provider, fake_upstream
):
    fake_upstream.behave(reply="Still here.")
    page = open_page(user, server=own_server)
    page.goto("/")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "open")

    own_server.stop()
    expect(connection).to_have_attribute("data-state", "retrying")
    expect(connection).to_contain_text("Reconnecting")
    own_server.start()
    expect(connection).to_have_attribute("data-state", "open", timeout=20_000)

    send(page, "Are you there?")
    expect(last_answer(page)).to_contain_text("Still here.")


def test_messages_typed_while_offline_go_out_in_order_once_reconnected(
    open_page, own_server, user, provider, fake_upstream
):
    fake_upstream.behave(reply="Noted.")
    page = open_page(user, server=own_server)
    page.goto("/")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "open")

    own_server.stop()
    expect(connection).to_have_attribute("data-state", "retrying")
    send(page, "First, typed offline")
    send(page, "Second, typed offline")
    own_server.start()
    expect(connection).to_have_attribute("data-state", "open", timeout=20_000)

    questions = page.locator(".message--user [data-slot=text]")
    expect(questions).to_have_text(["First, typed offline", "Second, typed offline"])
    expect(page.locator(".message--assistant[data-status=complete]")).to_have_count(2)
    # One below the other in one conversation: not two branches, not two chats.
    first, first_answer, second, second_answer = Message.objects.order_by("created_at")
    assert (first.content, second.content) == ("First, typed offline", "Second, typed offline")
    assert first_answer.parent_id == first.id and second.parent_id == first_answer.id
    assert second_answer.parent_id == second.id
    assert Conversation.objects.count() == 1


def test_a_message_typed_offline_shows_at_once_and_can_be_cancelled_before_it_goes_out(
    open_page, own_server, user, provider, fake_upstream
):
    fake_upstream.behave(reply="Noted.")
    page = open_page(user, server=own_server)
    page.goto("/")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "open")

    own_server.stop()
    expect(connection).to_have_attribute("data-state", "retrying")
    send(page, "Never mind this one")
    send(page, "Send this one")

    pending = page.locator(".message--pending")
    expect(pending.locator(".message-text")).to_have_text(["Never mind this one", "Send this one"])
    expect(pending.first).to_contain_text("Not sent yet")
    expect(page.locator("#composer-error")).to_contain_text("2 messages will be sent")
    expect(page.locator("#empty-state")).to_be_hidden()
    pending.first.get_by_role("button", name="Cancel this message").click()
    expect(pending.locator(".message-text")).to_have_text(["Send this one"])
    expect(page.locator("#composer-error")).to_contain_text("Your message will be sent")

    own_server.start()
    expect(connection).to_have_attribute("data-state", "open", timeout=20_000)
    expect(page.locator(".message--assistant[data-status=complete]")).to_have_count(1)
    expect(page.locator(".message--user [data-slot=text]")).to_have_text(["Send this one"])
    expect(pending).to_have_count(0)
    expect(page.locator("#composer-error")).to_be_hidden()
    question, answer = Message.objects.order_by("created_at")
    assert (question.role, question.content) == ("user", "Send this one")
    assert answer.parent_id == question.id and answer.content == "Noted."


def test_a_page_opened_further_up_leaves_the_answer_written_at_the_end_alone(
    open_page, user, provider, fake_upstream
):
    chat = Conversation.objects.create(owner=user, title="Long talk")
    rows = make.chain(chat, [f"message number {index}" for index in range(120)])
    fake_upstream.behave(reply=LONG_REPLY, chunk_delay=SLOW)
    tail = open_page(user)
    tail.goto(f"/c/{chat.id}/")
    send(tail, "One more question")
    wait_for_text(tail, "word3")
    answer = Message.objects.get(status=Message.Status.STREAMING)

    middle = open_page(user)
    middle.add_init_script(FRAME_LOG)
    middle.goto(f"/c/{chat.id}/?m={rows[10].id}")
    wait_until_handled(middle, "message.snapshot")
    expect(last_answer(tail)).to_have_attribute("data-status", "complete")
    wait_until_handled(middle, "message.done")

    # The answer belongs below "One more question", far below this page: not under message 10.
    expect(middle.locator(f"#m-{answer.id}")).to_have_count(0)
    assert middle.locator("#message-list .message").last.get_attribute("id") == f"m-{rows[10].id}"
    expect(middle.get_by_text("Jump to the latest message")).to_be_visible()
