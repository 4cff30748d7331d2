"""Attachments in a real browser: the Attach button, drag and drop onto the composer, the chips
with progress and thumbnail, the send, and the files shown in the message."""

import base64
import struct
import zlib

import pytest
from playwright.sync_api import expect

from conversations.attachments.models import Attachment
from conversations.models import Message
from providers.models import ProviderConfig

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png_pixel() -> bytes:
    """A valid 1 by 1 PNG (signature, IHDR, IDAT, IEND), so the thumbnail really decodes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def drop_files(page, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files on the composer as a desktop drag would: dragover, then drop, carrying a
    DataTransfer of real File objects."""
    data = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, type, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type }));
            }
            return transfer;
        }""",
        [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files],
    )
    page.dispatch_event("#composer", "dragover", {"dataTransfer": data})
    page.dispatch_event("#composer", "drop", {"dataTransfer": data})


def test_attach_with_the_button_then_send_and_see_the_file_in_the_message(
    open_page, user, provider, fake_upstream
):
    fake_upstream.behave(reply="It says hello.")
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    page.set_input_files(
        "#id_files",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello " * 100}],
    )

    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_attribute("data-state", "ready")
    expect(chip).to_contain_text("notes.txt")
    expect(chip).to_contain_text("600 bytes")
    # 600 characters of file and 9 of message: 150 + 3 tokens.
    page.locator("#id_content").fill("Summarise")
    expect(page.locator("#token-estimate")).to_have_text("≈ 153 tokens")
    page.locator("#id_content").press("Enter")

    expect(page.locator(".message--assistant").last).to_have_attribute("data-status", "complete")
    expect(page.locator("#attachment-chips")).to_be_hidden()
    shown = page.locator(".message--user .attachment-file")
    expect(shown).to_contain_text("notes.txt")
    sent = fake_upstream.requests[-1].json["messages"][-1]["content"]
    assert sent == '<file name="notes.txt">\n' + "hello " * 100 + "\n</file>\n\nSummarise"
    row = Attachment.objects.get()
    assert Message.objects.get(pk=row.message_id).content == "Summarise"
    # The page as the server renders it shows the file too.
    page.reload()
    expect(page.locator(".message--user .attachment-file")).to_contain_text("notes.txt")


def test_drop_an_image_on_the_composer_and_the_vision_model_gets_it(
    open_page, user, provider, fake_upstream
):
    ProviderConfig.objects.filter(pk=provider.pk).update(vision=True)
    fake_upstream.behave(reply="A green dot.")
    image = png_pixel()
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    drop_files(page, [("dot.png", "image/png", image)])

    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_attribute("data-state", "ready")
    expect(chip.locator("img")).to_have_js_property("naturalWidth", 1)
    page.locator("#id_content").fill("What is this?")
    page.locator("#id_content").press("Enter")

    expect(page.locator(".message--assistant").last).to_have_attribute("data-status", "complete")
    thumb = page.locator(".message--user img.attachment-thumb")
    expect(thumb).to_have_attribute("alt", "dot.png")
    expect(thumb).to_have_js_property("naturalWidth", 1)
    parts = fake_upstream.requests[-1].json["messages"][-1]["content"]
    assert parts == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url",
         "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}},
    ]  # fmt: skip


def test_a_refused_image_comes_back_to_the_composer_with_the_reason(
    open_page, user, provider, fake_upstream
):
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    drop_files(page, [("dot.png", "image/png", png_pixel())])
    expect(page.locator(".attachment-chip")).to_have_attribute("data-state", "ready")
    page.locator("#id_content").fill("What is this?")
    page.locator("#id_content").press("Enter")

    expect(page.locator("#composer-error")).to_contain_text("This model cannot see images.")
    expect(page.locator("#attachment-chips .attachment-chip")).to_contain_text("dot.png")
    expect(page.locator("#id_content")).to_have_value("What is this?")
    assert fake_upstream.requests == []


def test_a_file_over_the_limit_is_refused_before_uploading(open_page, user, provider):
    page = open_page(user)
    page.goto("/")
    limit = int(page.locator("#composer").get_attribute("data-max-file-bytes"))

    page.set_input_files(
        "#id_files",
        files=[{"name": "huge.txt", "mimeType": "text/plain", "buffer": b"x" * (limit + 1)}],
    )

    chip = page.locator(".attachment-chip")
    expect(chip).to_have_attribute("data-state", "error")
    expect(chip.get_by_role("alert")).to_have_text("huge.txt is larger than 10 MB.")
    assert not Attachment.objects.exists()


def test_paste_a_file_into_the_message_box(open_page, user, provider, fake_upstream):
    page = open_page(user)
    page.goto("/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    page.locator("#id_content").evaluate(
        """(box) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["a,b\\n1,2\\n"], "table.csv", { type: "text/csv" }));
            box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer,
                                                            bubbles: true, cancelable: true }));
        }"""
    )

    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_attribute("data-state", "ready")
    expect(chip).to_contain_text("table.csv")
    expect(page.locator("#id_content")).to_have_value("")
    assert Attachment.objects.get().text == "a,b\n1,2\n"
