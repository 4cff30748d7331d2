"""The page's frame in a real browser: jumps to a message never move the shell, the phone
sidebar, and the weight of the pages."""

import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from conversations.transfer import conversations_export_all
from tests.conversations import page_factories as make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def assert_shell_in_place(page) -> None:
    """The top bar at the top, the composer at the bottom, and #main not scrolled (it has
    overflow: hidden, so once scrolled no user can scroll it back)."""
    main = page.evaluate(
        """() => {
            const main = document.getElementById('main');
            return {top: main.scrollTop, scroll: main.scrollHeight, client: main.clientHeight};
        }"""
    )
    assert main["top"] == 0, main
    assert main["scroll"] == main["client"], main
    viewport = page.viewport_size
    topbar = page.locator(".topbar").bounding_box()
    composer = page.locator(".composer-wrap").bounding_box()
    assert topbar["y"] == 0
    assert viewport["height"] - 2 <= composer["y"] + composer["height"] <= viewport["height"]


def _long_chat_with_branch(owner):
    chat = make.conversation(owner, "Long chat")
    rows = make.chain(chat, [f"line {index} " + "text " * 30 for index in range(40)])
    # A second version of the question in the middle, the one shown (the first is older).
    question = rows[20]
    other = make.message(chat, "another version", parent=rows[19])
    return chat, rows, question, other


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_search_hit_jump_leaves_the_top_bar_and_composer_in_place(open_page, user, viewport):
    _chat, rows, _question, _other = _long_chat_with_branch(user)
    target = rows[10]
    target.content = "We saw a quokka on Rottnest Island."
    target.save(update_fields=["content"])
    page = open_page(user, viewport=viewport)
    page.goto("/history/?q=quokka")
    page.locator(".hit-link").click()
    expect(page).to_have_url(re.compile(rf"#m-{target.id}$"))
    expect(page.locator(f"#m-{target.id}")).to_be_in_viewport()
    assert_shell_in_place(page)


def test_a_branch_switch_leaves_the_top_bar_and_composer_in_place(open_page, user):
    chat, _rows, question, other = _long_chat_with_branch(user)
    page = open_page(user, viewport=DESKTOP)
    page.goto(f"/c/{chat.id}/")
    position = page.locator(f"#m-{question.id} .siblings-position")
    expect(position).to_have_text("1/2")
    page.locator(f"#m-{question.id}").get_by_role("button", name="Next version").click()
    expect(page).to_have_url(re.compile(rf"#m-{other.id}$"))
    expect(page.locator(f"#m-{other.id}")).to_be_in_viewport()
    assert_shell_in_place(page)


def test_imported_conversations_sort_by_their_own_last_activity(open_page, user, tmp_path):
    now = timezone.now()
    for title, days in (("Ten days ago", 10), ("Three days ago", 3)):
        chat = make.conversation(user, title)
        for row in make.chain(chat, ["Question", "Answer"]):
            Message.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=days))
    export = tmp_path / "all.json"
    export.write_text("".join(conversations_export_all(user=user)))
    Conversation.objects.filter(owner=user).delete()
    page = open_page(user)
    page.goto("/import/")

    page.get_by_label("File").set_input_files(export)
    page.get_by_role("button", name="Import").click()

    page.goto("/")
    sidebar = page.locator("#conversation-list")
    expect(sidebar.locator(".conversation-group h2")).to_have_text(
        ["Previous 7 days", "Previous 30 days"]
    )
    expect(sidebar.locator(".conversation-link")).to_have_text(["Three days ago", "Ten days ago"])


def _focus_walk(page, steps: int) -> list[bool]:
    """Tab `steps` times; for each stop, whether the focus is inside the sidebar."""
    inside = []
    for _ in range(steps):
        page.keyboard.press("Tab")
        inside.append(page.evaluate("() => Boolean(document.activeElement.closest('#sidebar'))"))
    return inside


def _left_edge_colours(page) -> set:
    # The message list is padded by 14 px on a phone: nothing of the page paints here.
    shot = page.screenshot(clip={"x": 0, "y": 200, "width": 12, "height": 200})
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    return {colour for _count, colour in image.getcolors(maxcolors=image.width * image.height)}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_sidebar_closed_is_out_of_the_tab_order_and_paints_nothing(open_page, user, scheme):
    chat = make.conversation(user, "Phone chat")
    make.chain(chat, ["Question", "Answer"])
    page = open_page(user, viewport=PHONE, color_scheme=scheme)
    page.goto(f"/c/{chat.id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    assert not any(_focus_walk(page, 12))
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(part) for part in re.findall(r"\d+", background)[:3])
    assert _left_edge_colours(page) == {(red, green, blue)}

    page.get_by_role("link", name="Show conversations").click()
    expect(page.locator("#sidebar")).to_be_in_viewport()
    page.locator("#sidebar .conversation-link").first.focus()
    assert page.evaluate("() => document.activeElement.matches('#sidebar .conversation-link')")
    page.get_by_role("link", name="Hide conversations").click()
    # Once it has slid out (visibility: hidden is what Playwright calls hidden).
    expect(page.locator("#sidebar")).to_be_hidden()
    page.locator("#id_content").focus()
    assert not any(_focus_walk(page, 12))
