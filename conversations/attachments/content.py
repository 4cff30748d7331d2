"""What an uploaded file is, what a provider reads of it, and how much of the prompt it takes.

Pure functions over bytes and text: the kind of a file is decided by its bytes (the magic numbers
of the image formats and PDF), never by the name or the Content-Type the browser sent, since both
are the uploader's to choose.
"""

import base64
import io
import math
import os
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from conversations.attachments.errors import AttachmentError

# The image formats providers accept as `image_url` parts, by their signatures (PNG: RFC 2083
# section 12.12; JPEG: the SOI marker and the first marker's 0xFF; GIF: the 87a/89a headers;
# WebP: a RIFF container whose form type is WEBP).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif"}
PDF_SIGNATURE = b"%PDF-"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
PDF_CONTENT_TYPE = "application/pdf"
# The documented estimate of the prompt a text takes: about four characters per token, the rule
# of thumb for English with the common BPE vocabularies. Good enough to warn before sending.
CHARS_PER_TOKEN = 4
# A placeholder for an image in a history built inside a transaction; replaced by the image's
# data URL once the transaction has committed (see attachments.services.history_with_images), so
# no file is read while the database's write lock is held.
IMAGE_PLACEHOLDER = "attachment:"


@dataclass(frozen=True)
class Detected:
    kind: str  # Attachment.Kind's values
    content_type: str
    text: str = ""


def image_type(data: bytes) -> str | None:
    """The image type `data` starts like, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def file_detect(*, name: str, declared_type: str, data: bytes, max_text_chars: int) -> Detected:
    """The kind, served type and provider text of an upload, or AttachmentError saying why it
    cannot be attached."""
    if not data:
        raise AttachmentError("empty", f"{name} is empty.")
    found = image_type(data)
    if found:
        return Detected(kind="image", content_type=found)
    if data.startswith(PDF_SIGNATURE):
        return Detected(
            kind="pdf", content_type=PDF_CONTENT_TYPE, text=pdf_text(name=name, data=data,
            max_chars=max_text_chars),
        )  # fmt: skip
    extension = os.path.splitext(name)[1].lower()
    if extension in IMAGE_EXTENSIONS or declared_type.lower() in IMAGE_TYPES:
        raise AttachmentError(
            "bad_image", f"{name} is not a PNG, JPEG, WebP or GIF image (its bytes say otherwise)."
        )
    if extension == ".pdf" or declared_type.lower() == PDF_CONTENT_TYPE:
        raise AttachmentError("bad_pdf", f"{name} is not a PDF file.")
    return Detected(
        kind="text",
        content_type=TEXT_CONTENT_TYPE,
        text=plain_text(name=name, data=data, max_chars=max_text_chars),
    )


def plain_text(*, name: str, data: bytes, max_chars: int) -> str:
    """The text of a text-like file (plain text, Markdown, source code, CSV, JSON...): UTF-8
    without NUL characters, which is what tells text from other binary files."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentError(
            "unsupported",
            f"{name} is neither UTF-8 text, a PDF nor a PNG, JPEG, WebP or GIF image.",
        ) from None
    if "\x00" in text:
        raise AttachmentError(
            "unsupported", f"{name} looks like a binary file; attach text, PDFs or images."
        )
    return _within(name, text, max_chars)


def pdf_text(*, name: str, data: bytes, max_chars: int) -> str:
    """The text of a PDF's pages (pypdf's extraction), pages separated by a blank line."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentError("bad_pdf", f"{name} is protected by a password.")
        pages = []
        total = 0
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            pages.append(text)
            total += len(text)
            if total > max_chars:
                break
    except AttachmentError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError):
        # pypdf raises many kinds of errors on a damaged file; each means the same to a user.
        raise AttachmentError("bad_pdf", f"{name} could not be read as a PDF.") from None
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise AttachmentError(
            "bad_pdf", f"{name} has no text to read (a scanned PDF holds only pictures)."
        )
    return _within(name, text, max_chars)


def _within(name: str, text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise AttachmentError(
            "too_large", f"{name} holds more than {max_chars} characters of text."
        )
    return text


def token_estimate(text: str) -> int:
    """Tokens `text` takes in a prompt, estimated (CHARS_PER_TOKEN)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _quoted(name: str) -> str:
    return name.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def file_block(*, name: str, text: str) -> str:
    """How a text file or a PDF reaches the provider: inside the user's message, before it,
    delimited so the model can tell the file from the question and from other files."""
    return f'<file name="{_quoted(name)}">\n{text}\n</file>\n\n'


def message_content(
    *, text: str, attachments: list[Any], images: bool = True
) -> str | list[dict[str, Any]]:
    """A user message's content for the provider: a string when it has no image, else
    OpenAI-style content parts (the text, then one `image_url` part per image, as placeholders
    that history_with_images fills). With `images` False (an earlier message of the branch), its
    images are named in the text instead: each send would otherwise read and upload every image
    of the conversation again, and one image early on would bar every model without vision from
    the rest of the conversation."""
    files = "".join(
        file_block(name=item.name, text=item.text) for item in attachments if item.kind != "image"
    )
    pictures = [item for item in attachments if item.kind == "image"]
    if pictures and not images:
        files += "".join(f"[image: {item.name}]\n" for item in pictures)
        pictures = []
    body = files + text
    if not pictures:
        return body
    return [
        {"type": "text", "text": body},
        *(
            {"type": "image_url", "image_url": {"url": f"{IMAGE_PLACEHOLDER}{item.id}"}}
            for item in pictures
        ),
    ]


def data_url(*, content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(message.get("content"), list)
        and any(part.get("type") == "image_url" for part in message["content"])
        for message in messages
    )
