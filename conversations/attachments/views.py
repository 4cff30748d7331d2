"""Upload, removal and download of attachments. Thin: checks, one service or selector call.

Uploading happens before sending (POST /attachments/ returns the file's id, which the chat.send
frame then names) rather than inside the send: the browser shows real upload progress for a large
file (XMLHttpRequest's upload events), the token estimate is known before the user presses Send,
and the WebSocket carries only small JSON frames (Daphne's frame limit stays as it is).
"""

import uuid
from urllib.parse import quote

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from conversations.attachments.selectors import attachment_data, attachment_get_for_user
from conversations.attachments.services import attachment_create, attachment_delete_unsent
from conversations.errors import ChatError

# Served inline (for thumbnails): the image types whose bytes were checked at upload. Never SVG
# or HTML, which a browser would run as a document of this site.
INLINE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}


def _json_error(*, status: int, code: str, message: str) -> JsonResponse:
    # The site's one error shape for the script (see conversations.views._json_error).
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
def attachment_upload(request):
    upload = request.FILES.get("file")
    if upload is None:
        return _json_error(status=400, code="invalid", message="Choose a file to attach.")
    try:
        row = attachment_create(user=request.user, upload=upload)
    except ChatError as exc:
        status = 413 if exc.code == "too_large" else 400
        return _json_error(status=status, code=exc.code, message=exc.detail)
    return JsonResponse(attachment_data(row), status=201)


@require_POST
def attachment_remove(request, attachment_id: uuid.UUID):
    if not attachment_delete_unsent(user=request.user, attachment_id=attachment_id):
        raise Http404("No such unsent file.")
    return JsonResponse({"deleted": str(attachment_id)})


@require_GET
def attachment_download(request, attachment_id: uuid.UUID):
    row = attachment_get_for_user(user=request.user, attachment_id=attachment_id)
    if row is None:
        raise Http404("No such file.")
    try:
        handle = default_storage.open(row.file.name, "rb")
    except OSError:
        raise Http404("The file is missing.") from None
    inline = row.content_type in INLINE_TYPES
    response = FileResponse(handle, content_type=row.content_type)
    response["Content-Disposition"] = _disposition(row.name, inline=inline)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _disposition(name: str, *, inline: bool) -> str:
    """RFC 6266: an ASCII `filename` for every client and the real name in `filename*`."""
    ascii_name = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_"
                         for ch in name) or "file"  # fmt: skip
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
