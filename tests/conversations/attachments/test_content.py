"""attachments.content: kinds told by bytes, text and PDF extraction, provider content."""

import pytest

from conversations.attachments.content import file_detect, message_content, token_estimate
from conversations.attachments.errors import AttachmentError
from tests.conversations.attachments.conftest import GIF, JPEG, PNG, WEBP, pdf_with_text


def detect(name: str, data: bytes, declared: str = "", limit: int = 1000):
    return file_detect(name=name, declared_type=declared, data=data, max_text_chars=limit)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_images_are_told_by_their_bytes_whatever_their_name(data, expected):
    found = detect("upload.bin", data, declared="application/octet-stream")
    assert (found.kind, found.content_type, found.text) == ("image", expected, "")


@pytest.mark.parametrize(
    ("name", "declared"), [("photo.png", ""), ("photo", "image/png"), ("a.webp", "image/webp")]
)
def test_a_file_that_only_claims_to_be_an_image_is_refused(name, declared):
    with pytest.raises(AttachmentError) as caught:
        detect(
            name, b"<svg xmlns='http://www.w3.org/2000/svg'><script>x()</script></svg>", declared
        )
    assert caught.value.code == "bad_image"
    assert "is not a PNG, JPEG, WebP or GIF image" in caught.value.detail


@pytest.mark.parametrize(
    "name", ["notes.txt", "README.md", "main.py", "table.csv", "data.json", "page.svg"]
)
def test_text_like_files_are_text_served_as_plain_text(name):
    found = detect(name, "naïve,text\n1,2\n".encode())
    assert (found.kind, found.content_type) == ("text", "text/plain; charset=utf-8")
    assert found.text == "naïve,text\n1,2\n"


def test_binary_files_are_refused_with_the_reason():
    with pytest.raises(AttachmentError) as caught:
        detect("program.exe", b"MZ\x90\x00\x03\x00\x00\x00\xff\xfe")
    assert caught.value.code == "unsupported"
    with pytest.raises(AttachmentError) as caught:
        detect("zeros.txt", b"abc\x00def")
    assert "binary" in caught.value.detail


def test_empty_files_are_refused():
    with pytest.raises(AttachmentError) as caught:
        detect("empty.txt", b"")
    assert caught.value.detail == "empty.txt is empty."


def test_pdf_text_is_extracted_with_pypdf():
    found = detect("paper.pdf", pdf_with_text("Hello from a PDF"))
    assert (found.kind, found.content_type, found.text) == (
        "pdf", "application/pdf", "Hello from a PDF"
    )  # fmt: skip


def test_damaged_or_fake_pdfs_are_refused():
    with pytest.raises(AttachmentError) as caught:
        detect("broken.pdf", b"%PDF-1.7\nthis is not a PDF body")
    assert caught.value.code == "bad_pdf"
    with pytest.raises(AttachmentError) as caught:
        detect("fake.pdf", b"just text")
    assert caught.value.detail == "fake.pdf is not a PDF file."


def test_text_beyond_the_character_limit_is_refused():
    with pytest.raises(AttachmentError) as caught:
        detect("long.txt", b"x" * 1001, limit=1000)
    assert caught.value.code == "too_large"
    assert caught.value.detail == "long.txt holds more than 1000 characters of text."
    with pytest.raises(AttachmentError):
        detect("long.pdf", pdf_with_text("y" * 60), limit=50)


def test_token_estimate_is_four_characters_a_token_rounded_up():
    assert [token_estimate(""), token_estimate("abcd"), token_estimate("abcde")] == [0, 1, 2]


class File:
    def __init__(self, name, kind, text="", id="1"):
        self.name, self.kind, self.text, self.id = name, kind, text, id


def test_files_go_before_the_question_and_images_become_content_parts():
    files = [File('a "b".md', "text", "# Notes"), File("p.png", "image", id="x")]
    assert message_content(text="Summarise", attachments=files[:1]) == (
        '<file name="a &quot;b&quot;.md">\n# Notes\n</file>\n\nSummarise'
    )
    assert message_content(text="Look", attachments=files) == [
        {"type": "text", "text": '<file name="a &quot;b&quot;.md">\n# Notes\n</file>\n\nLook'},
        {"type": "image_url", "image_url": {"url": "attachment:x"}},
    ]
