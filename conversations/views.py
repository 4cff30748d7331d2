"""The chat pages. Thin: each view validates input, calls one selector or service, renders.

Every page works without JavaScript (links and form posts); static/chat.js adds the live stream
and the conveniences on top of the same markup.
"""

import json
import logging
import uuid
from typing import Any
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations import selectors, services
from conversations.api.selectors import api_key_list_for_user
from conversations.api.services import api_key_create, api_key_revoke
from conversations.attachments.selectors import attachment_map_for_messages
from conversations.attachments.services import attachments_create_many, attachments_discard_unsent
from conversations.errors import ChatError
from conversations.forms import (
    ApiKeyForm,
    ComposerForm,
    ConversationSettingsForm,
    FolderForm,
    ImportForm,
    RenameForm,
    SearchForm,
    SidebarPageForm,
    default_target_value,
    target_value,
)
from conversations.generation import generation_run_to_completion
from conversations.models import Conversation, Message, UserSettings
from conversations.protocol import PLACEHOLDER_ID
from conversations.rendering import messages_html_for_view, render_markdown
from conversations.search import SearchFilters, search_for_user
from conversations.transfer import (
    TransferError,
    conversation_export_json,
    conversation_export_markdown,
    conversations_export_all,
    conversations_import,
)
from conversations.usage.models import ModelPrice
from conversations.usage.selectors import answer_usage, model_prices, usage_for_conversation
from providers.errors import ProviderError
from providers.models import ProviderConfig
from providers.selectors import provider_target_get, provider_targets_for_picker

logger = logging.getLogger(__name__)

# Statuses whose text is final: rendered as Markdown. A streaming answer is shown as plain text
# until its `message.done` arrives (or the page is reloaded after it ended).
FINAL_STATUSES = {
    Message.Status.COMPLETE,
    Message.Status.STOPPED,
    Message.Status.ERROR,
    Message.Status.INTERRUPTED,
}


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _conversation_or_404(request, conversation_id: uuid.UUID) -> Conversation:
    try:
        return selectors.conversation_for_page(user=request.user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


def _message_views(
    page: selectors.BranchPage, prices: dict[str, ModelPrice] | None = None
) -> list[dict[str, Any]]:
    final = [item.message for item in page.items if _shown_as_markdown(item.message)]
    html_by_id, rendered = messages_html_for_view(final)
    if rendered:
        services.message_html_store(messages=rendered)
    if prices is None:
        prices = model_prices() if final else {}
    attached = attachment_map_for_messages(
        message_ids=[item.message.pk for item in page.items if item.message.role == "user"]
    )
    return [
        {
            "message": item.message,
            "siblings": item.siblings,
            "html": html_by_id.get(item.message.pk),
            "usage": answer_usage(message=item.message, prices=prices),
            "attachments": attached.get(item.message.pk, []),
        }
        for item in page.items
    ]


def _shown_as_markdown(message: Message) -> bool:
    return message.role == Message.Role.ASSISTANT and message.status in FINAL_STATUSES


def _page(request, template: str, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    """A full page of the app: the sidebar's first page of conversations comes with it."""
    context.setdefault("sidebar", selectors.conversation_sidebar_page(user=request.user))
    return render(request, template, context, status=status)


def _settings_initial(conversation: Conversation | None, targets: list[dict]) -> dict[str, Any]:
    if conversation is None:
        return {"target": default_target_value(targets)}
    name = conversation.target_name
    options = conversation.options or {}
    return {
        "target": target_value(name=name, model=conversation.model)
        if name
        else default_target_value(targets),
        "temperature": options.get("temperature"),
        "max_tokens": options.get("max_tokens"),
        "system": conversation.system_prompt,
    }


def _chat_page(request, *, conversation: Conversation | None, page=None, form=None, status=200):
    targets = provider_targets_for_picker()
    if form is None:
        form = ComposerForm(targets=targets, initial=_settings_initial(conversation, targets))
    page = page or selectors.BranchPage(items=[], has_older=False, is_tail=True)
    # The prices also go to the script, which shows the cost of answers that end live.
    prices = model_prices()
    items = _message_views(page, prices)
    context = {
        "conversation": conversation,
        "sidebar": selectors.conversation_sidebar_page(user=request.user),
        "items": items,
        "page": page,
        "form": form,
        "has_providers": bool(targets),
        "last_message": items[-1]["message"] if items else None,
        "placeholder_id": PLACEHOLDER_ID,
        "attachment_limits": {
            "file": settings.ATTACHMENT_MAX_FILE_BYTES,
            "message": settings.ATTACHMENT_MAX_MESSAGE_BYTES,
            "count": settings.ATTACHMENT_MAX_FILES,
        },
        # Blank messages that the script clones for messages arriving over the socket, so their
        # markup comes from the same template as the server-rendered ones.
        "template_user": _template_item(Message.Role.USER),
        "template_assistant": _template_item(Message.Role.ASSISTANT),
        "conversation_usage": usage_for_conversation(conversation=conversation, prices=prices)
        if conversation
        else None,
        # Per 1M tokens, as decimal strings: the script rounds a live answer's cost like this.
        "prices_json": json.dumps(
            {
                price.model: [str(price.input_per_million), str(price.output_per_million)]
                for price in prices.values()
            }
        ),
    }
    return render(request, "conversations/chat.html", context, status=status)


def _template_item(role: str) -> dict[str, Any]:
    status = Message.Status.STREAMING if role == Message.Role.ASSISTANT else Message.Status.COMPLETE
    return {
        "message": Message(id=PLACEHOLDER_ID, role=role, status=status),
        "siblings": selectors.SiblingPosition(index=1, count=1, previous_id=None, next_id=None),
        "html": None,
        "usage": None,
    }


@require_GET
def chat_new(request):
    return _chat_page(request, conversation=None)


@require_GET
def conversation_detail(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    before = _uuid(request.GET.get("before"))
    around = _uuid(request.GET.get("m"))
    page = selectors.message_branch_page(conversation=conversation, before=before, around=around)
    if request.GET.get("fragment") == "1":
        # The script's "older messages" request: just the page of messages.
        return render(
            request,
            "conversations/_messages.html",
            {"conversation": conversation, "items": _message_views(page), "page": page},
        )
    if not page.items and (before or around):
        # A link to a message of another conversation (or a deleted one), or to above the
        # first message: the conversation as it is now, not an empty page that looks new.
        page = selectors.message_branch_page(conversation=conversation)
    return _chat_page(request, conversation=conversation, page=page)


@require_GET
def conversation_list(request):
    archived = request.GET.get("archived") == "1"
    form = SidebarPageForm(request.GET)
    # A cursor that is not one of ours (edited by hand, or cut short) shows the first page.
    cursor = form.cleaned_data["cursor"] if form.is_valid() else None
    folder = None
    if "folder" in request.GET:
        folder_id = _uuid(request.GET["folder"])
        folder = (
            selectors.folder_get_for_user(user=request.user, folder_id=folder_id)
            if folder_id
            else None
        )
        if folder is None:
            raise Http404("No such folder.")
    sidebar = selectors.conversation_sidebar_page(
        user=request.user, archived=archived, cursor=cursor, folder=folder
    )
    context = {
        "listing": sidebar,
        "archived": archived,
        "folder": folder,
        "cursor": cursor or "",
        "conversation": None,
    }
    if request.GET.get("fragment") == "1":
        return render(request, "conversations/_sidebar_items.html", {**context, "sidebar": sidebar})
    return _page(request, "conversations/list.html", context)


def _wants_json(request) -> bool:
    """The script's fetch() calls ask for JSON and get a status instead of a page."""
    return request.headers.get("Accept") == "application/json"


def _json_error(*, status: int, code: str, message: str) -> JsonResponse:
    """The one error shape of the views the script calls, `{"error": {"code", "message"}}`, like
    the socket's `error` frame: `message` is one sentence the script shows as it is."""
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _form_error_message(form) -> str:
    """A form's first error, as one sentence."""
    return next(str(error) for errors in form.errors.values() for error in errors)


def _refused(request, *, code: str, message: str, fallback_url: str):
    """A refused post: the JSON error for the script; for a plain form, the page it came from
    with the sentence in a flash message."""
    if _wants_json(request):
        return _json_error(status=400, code=code, message=message)
    flash.error(request, message)
    return redirect(_next_or(request, fallback_url))


def _next_or(request, fallback: str) -> str:
    """Where a form asked to return to (its page), if that is on this site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


@require_POST
async def conversation_send(request, conversation_id: uuid.UUID | None = None):
    """The no-JavaScript way to chat: a normal form post that returns when the answer is
    complete (the script sends over the WebSocket instead and never posts here)."""
    user = await request.auser()
    conversation = None
    if conversation_id is not None:
        conversation = await sync_to_async(_conversation_or_404)(request, conversation_id)
    targets = await sync_to_async(provider_targets_for_picker)()
    form = ComposerForm(request.POST, targets=targets)
    if not form.is_valid():
        return await sync_to_async(_render_send_error)(request, conversation, form)
    attached: list = []
    try:
        # The form's files are stored first, as the script's uploads are, then sent by id.
        attached = await sync_to_async(attachments_create_many)(
            user=user, uploads=request.FILES.getlist("files")
        )
        exchange = await generation_run_to_completion(
            user=user,
            request=form.chat_send(
                conversation_id=conversation_id, attachments=tuple(row.id for row in attached)
            ),
        )
    except ChatError as exc:
        await sync_to_async(attachments_discard_unsent)(user=user, attachments=attached)
        form.add_error(None, exc.detail)
        return await sync_to_async(_render_send_error)(request, conversation, form)
    url = reverse("conversation", kwargs={"conversation_id": exchange.conversation.id})
    return redirect(f"{url}#m-{exchange.assistant_message.id}")


def _render_send_error(request, conversation, form):
    page = selectors.message_branch_page(conversation=conversation) if conversation else None
    return _chat_page(request, conversation=conversation, page=page, form=form, status=400)


@require_POST
def conversation_settings(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    back = reverse("conversation", kwargs={"conversation_id": conversation.id})
    form = ConversationSettingsForm(request.POST, targets=provider_targets_for_picker())
    if not form.is_valid():
        return _refused(
            request, code="invalid", message=_form_error_message(form), fallback_url=back
        )
    target = form.cleaned_data["target"]
    chosen = None
    if target:
        try:
            chosen = provider_target_get(name=target[0])
        except ProviderError as exc:
            return _refused(request, code=exc.code, message=exc.message, fallback_url=back)
    is_config = isinstance(chosen, ProviderConfig)
    services.conversation_update_settings(
        conversation=conversation,
        provider_config=chosen if is_config else None,
        fallback_chain=None if is_config else chosen,
        model=target[1] if target else "",
        system_prompt=form.cleaned_data["system"],
        temperature=form.cleaned_data["temperature"],
        max_tokens=form.cleaned_data["max_tokens"],
    )
    if _wants_json(request):
        return HttpResponse(status=204)
    flash.success(request, "Settings saved.")
    return redirect("conversation", conversation_id=conversation.id)


@require_http_methods(["GET", "POST"])
def conversation_rename(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    form = RenameForm(request.POST or None, initial={"title": conversation.title})
    if request.method == "POST" and form.is_valid():
        services.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
        if _wants_json(request):
            return JsonResponse({"title": conversation.title})
        return redirect("conversation", conversation_id=conversation.id)
    if request.method == "POST" and _wants_json(request):
        return _json_error(status=400, code="invalid", message=_form_error_message(form))
    return _page(
        request,
        "conversations/rename.html",
        {"conversation": conversation, "form": form},
        status=400 if form.errors else 200,
    )


@require_POST
def conversation_archive(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    archived = request.POST.get("archived", "1") == "1"
    services.conversation_set_archived(conversation=conversation, archived=archived)
    page = reverse("conversation", kwargs={"conversation_id": conversation.id})
    if archived:
        flash.success(request, f"Archived “{conversation.title or 'New chat'}”.")
        back = _next_or(request, reverse("chat"))
        # Archiving the open conversation leaves it: a fresh chat takes its place.
        return redirect(reverse("chat") if back.startswith(page) else back)
    flash.success(request, f"“{conversation.title or 'New chat'}” is back in the sidebar.")
    return redirect(page)


@require_http_methods(["GET", "POST"])
def conversation_delete(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    if request.method == "POST":
        title = conversation.title or "New chat"
        page = reverse("conversation", kwargs={"conversation_id": conversation.id})
        services.conversation_delete(conversation=conversation)
        flash.success(request, f"Deleted “{title}”.")
        back = _next_or(request, reverse("chat"))
        return redirect(reverse("chat") if back.startswith(page) else back)
    return _page(request, "conversations/delete.html", {"conversation": conversation})


@require_POST
def conversation_switch(request, conversation_id: uuid.UUID):
    """A sibling arrow: show the branch through another version of a message."""
    conversation = _conversation_or_404(request, conversation_id)
    message_id = _uuid(request.POST.get("message"))
    message = (
        Message.objects.filter(id=message_id, conversation=conversation).first()
        if message_id
        else None
    )
    if message is None:
        raise Http404("No such message in this conversation.")
    try:
        services.conversation_switch_branch(conversation=conversation, message=message)
    except ChatError:
        raise Http404("No such message in this conversation.") from None
    url = reverse("conversation", kwargs={"conversation_id": conversation.id})
    return redirect(f"{url}#m-{message.id}")


def _content_disposition(conversation: Conversation, extension: str) -> str:
    """An attachment named after the title: an ASCII `filename` for every client, and the
    title's own letters in `filename*` (RFC 6266) when it has others."""
    suffix = f"-{str(conversation.id)[:8]}.{extension}"
    ascii_name = (slugify(conversation.title)[:60] or "conversation") + suffix
    header = f'attachment; filename="{ascii_name}"'
    unicode_stem = slugify(conversation.title, allow_unicode=True)[:60]
    if unicode_stem and not unicode_stem.isascii():
        header += f"; filename*=UTF-8''{quote(unicode_stem + suffix, safe='')}"
    return header


@require_GET
def conversation_export(request, conversation_id: uuid.UUID, fmt: str):
    conversation = _conversation_or_404(request, conversation_id)
    if fmt == "json":
        body = conversation_export_json(conversation=conversation)
        content_type = "application/json; charset=utf-8"
    else:
        branch = selectors.message_branch(conversation=conversation)
        body = conversation_export_markdown(conversation=conversation, branch=branch)
        content_type = "text/markdown; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = _content_disposition(
        conversation, "md" if fmt == "markdown" else fmt
    )
    return response


@require_GET
async def export_all(request):
    """All of the user's conversations as one JSON file, streamed batch by batch."""
    user = await request.auser()
    pieces = conversations_export_all(user=user)
    next_piece = sync_to_async(next)

    async def stream():
        while (piece := await next_piece(pieces, None)) is not None:
            yield piece.encode()

    response = StreamingHttpResponse(stream(), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="conversations.json"'
    return response


@require_http_methods(["GET", "POST"])
def conversation_import(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = conversations_import(user=request.user, raw=form.cleaned_data["file"].read())
        except TransferError as exc:
            form.add_error("file", str(exc))
        else:
            count = len(created)
            flash.success(request, f"Imported {count} conversation{'s' if count != 1 else ''}.")
            if count == 1:
                return redirect("conversation", conversation_id=created[0].id)
            return redirect("chat")
    return _page(
        request, "conversations/import.html", {"form": form}, status=400 if form.errors else 200
    )


def _next_search_page(request, cursor: str | None) -> str | None:
    """The link to the page after this one: the same search, starting at `cursor`."""
    if cursor is None:
        return None
    query = request.GET.copy()
    query["after"] = cursor
    return f"{request.path}?{query.urlencode()}"


def _first_search_page(request) -> str:
    """The link to the same search's first page (its newest hits)."""
    query = request.GET.copy()
    query.pop("after", None)
    return f"{request.path}?{query.urlencode()}"


@require_POST
def render_preview(request):
    """The sanitised HTML of an answer's text so far, for the script to show while it streams.

    Why here and not in the browser: the finished answer is rendered by `render_markdown`, and
    rendering the partial text with the very same code means that what streams in looks like
    what stays, and that hostile Markdown mid-stream passes the same sanitiser as the record
    (no second Markdown parser shipped to, and trusted in, the browser). The script asks at most
    once per interval per answer with one request in flight, and this sync view runs in a worker
    thread, off the event loop; a 20 kB answer costs about 45 ms to render."""
    content = request.POST.get("content", "")
    return JsonResponse({"html": render_markdown(content)})


@require_GET
def history(request):
    form = SearchForm(request.GET or None)
    page = None
    if form.is_valid() and form.cleaned_data["q"].strip():
        data = form.cleaned_data
        try:
            page = search_for_user(
                user=request.user,
                query=data["q"],
                filters=SearchFilters(
                    provider=data["provider"],
                    model=data["model"],
                    since=data["since"],
                    until=data["until"],
                ),
                cursor=data["after"] or None,
            )
        except ValueError:
            form.add_error("after", "That page of results does not exist; search again.")
    targets = provider_targets_for_picker()
    return _page(
        request,
        "conversations/history.html",
        {
            "form": form,
            "hits": page.hits if page else [],
            "searched": page is not None,
            "next_page": _next_search_page(request, page.next_cursor) if page else None,
            "first_page": page is not None and not form.cleaned_data["after"],
            "first_page_link": _first_search_page(request),
            "provider_names": [target["name"] for target in targets],
            "model_names": sorted({model for target in targets for model in target["models"]}),
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def api_keys(request):
    """The user's API keys: create one (shown once, on the page that answers the post), list,
    revoke."""
    form = ApiKeyForm(request.POST or None)
    new_key = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            new_key = api_key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                store_conversations=form.cleaned_data["store_conversations"],
            ).key
            form = ApiKeyForm()
        else:
            status = 400
    context = {
        "form": form,
        "new_key": new_key,
        "keys": api_key_list_for_user(user=request.user),
        "api_base": request.build_absolute_uri("/v1"),
    }
    response = _page(request, "conversations/api_keys.html", context, status=status)
    # The one page that shows a key: no cache of any kind may keep it.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def api_key_revoke_view(request, key_id: int):
    key = api_key_list_for_user(user=request.user).filter(pk=key_id).first()
    if key is None:
        raise Http404("No such key.")
    api_key_revoke(api_key=key)
    flash.success(request, f"Revoked the key “{key.name}”.")
    return redirect("api_keys")


# --- Share links ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def conversation_share(request, conversation_id: uuid.UUID):
    """The conversation's links: a form that makes a new one, and those made before."""
    conversation = _conversation_or_404(request, conversation_id)
    if request.method == "POST":
        services.share_create(conversation=conversation)
        flash.success(request, "Link created. Anyone signed in who has it can read this copy.")
        return redirect("conversation_share", conversation_id=conversation.id)
    shares = selectors.share_list_for_conversation(conversation=conversation)
    return _page(
        request,
        "conversations/share.html",
        {
            "conversation": conversation,
            "shares": _share_links(request, shares),
            "public_shares": settings.CHAT_PUBLIC_SHARES,
        },
    )


def _share_links(request, shares) -> list[dict[str, Any]]:
    return [
        {
            "share": share,
            "url": request.build_absolute_uri(reverse("shared", kwargs={"token": share.token})),
        }
        for share in shares
    ]


@require_POST
def share_revoke(request, share_id: int):
    if not services.share_revoke(user=request.user, share_id=share_id):
        raise Http404("No such link.")
    flash.success(request, "Link revoked: it no longer opens.")
    return redirect(_next_or(request, reverse("account")))


@login_not_required
@require_GET
def shared(request, token: str):
    """A shared copy: its stored messages and HTML, nothing of its owner's account."""
    if not settings.CHAT_PUBLIC_SHARES and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    share = selectors.share_get_by_token(token=token)
    if share is None:
        raise Http404("No such link.")
    response = render(request, "conversations/shared.html", {"share": share})
    # Shared pages are for the people given the link, not for search engines.
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_GET
def account(request):
    shares = selectors.share_list_for_user(user=request.user)
    return _page(
        request,
        "conversations/account.html",
        {
            "conversation": None,
            "shares": _share_links(request, shares),
            "themes": UserSettings.Theme.choices,
        },
    )


@require_POST
def account_theme(request):
    try:
        services.user_theme_set(user=request.user, theme=request.POST.get("theme", ""))
    except ChatError as exc:
        flash.error(request, exc.detail)
    else:
        flash.success(request, "Theme saved.")
    return redirect(_next_or(request, reverse("account")))


# --- Pins and folders ----------------------------------------------------------------------------


@require_POST
def conversation_pin(request, conversation_id: uuid.UUID):
    conversation = _conversation_or_404(request, conversation_id)
    back = _next_or(request, reverse("conversation", kwargs={"conversation_id": conversation.id}))
    pinned = request.POST.get("pinned", "1") == "1"
    try:
        services.conversation_set_pinned(conversation=conversation, pinned=pinned)
    except ChatError as exc:
        return _refused(request, code=exc.code, message=exc.detail, fallback_url=back)
    if _wants_json(request):
        return HttpResponse(status=204)
    return redirect(back)


@require_POST
def conversation_move(request, conversation_id: uuid.UUID):
    """Into a folder (`folder` = its id) or out of any (`folder` empty)."""
    conversation = _conversation_or_404(request, conversation_id)
    back = _next_or(request, reverse("conversation", kwargs={"conversation_id": conversation.id}))
    folder = None
    if request.POST.get("folder"):
        folder_id = _uuid(request.POST["folder"])
        folder = (
            selectors.folder_get_for_user(user=request.user, folder_id=folder_id)
            if folder_id
            else None
        )
        if folder is None:
            raise Http404("No such folder.")
    services.conversation_move(conversation=conversation, folder=folder)
    if _wants_json(request):
        return HttpResponse(status=204)
    title = conversation.title or "New chat"
    flash.success(
        request, f"Moved “{title}” to “{folder.name}”." if folder else f"“{title}” is in no folder."
    )
    return redirect(back)


def _folder_or_404(request, folder_id: uuid.UUID):
    folder = selectors.folder_get_for_user(user=request.user, folder_id=folder_id)
    if folder is None:
        raise Http404("No such folder.")
    return folder


def _folder_form_page(request, form, *, heading: str, submit: str):
    return _page(
        request,
        "conversations/folder.html",
        {"form": form, "heading": heading, "submit": submit, "conversation": None},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def folder_create(request):
    form = FolderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            folder = services.folder_create(user=request.user, name=form.cleaned_data["name"])
        except ChatError as exc:
            form.add_error("name", exc.detail)
        else:
            flash.success(request, f"Folder “{folder.name}” created.")
            return redirect(_next_or(request, reverse("chat")))
    return _folder_form_page(request, form, heading="New folder", submit="Create folder")


@require_http_methods(["GET", "POST"])
def folder_rename(request, folder_id: uuid.UUID):
    folder = _folder_or_404(request, folder_id)
    form = FolderForm(request.POST or None, initial={"name": folder.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.folder_rename(folder=folder, name=form.cleaned_data["name"])
        except ChatError as exc:
            form.add_error("name", exc.detail)
        else:
            return redirect(_next_or(request, reverse("chat")))
    return _folder_form_page(request, form, heading="Rename folder", submit="Save")


@require_POST
def folder_delete(request, folder_id: uuid.UUID):
    folder = _folder_or_404(request, folder_id)
    services.folder_delete(folder=folder)
    flash.success(request, f"Deleted the folder “{folder.name}”; its conversations are kept.")
    return redirect(_next_or(request, reverse("chat")))
