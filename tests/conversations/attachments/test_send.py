"""chat.send with attachments, end to end: socket → database → the fake upstream (a real HTTP
server on loopback), asserting the exact JSON the upstream receives."""

import base64

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations.attachments.models import Attachment
from conversations.attachments.services import attachment_create
from conversations.errors import ChatError
from conversations.models import Message
from conversations.protocol import frame_parse
from providers.models import FallbackChain, FallbackChainMember, ProviderConfig
from tests.conversations.attachments.conftest import PNG, pdf_with_text

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def uploaded(user, name: str, data: bytes) -> str:
    return str(attachment_create(user=user, upload=SimpleUploadedFile(name, data)).id)


async def send(socket, content: str, attachments: list[str], **fields) -> list[dict]:
    await socket.send(
        "chat.send", conversation=None, parent=None, content=content, attachments=attachments,
        request_id="r1", **fields,
    )  # fmt: skip
    frames = []
    while True:
        frame = await socket.receive()
        frames.append(frame)
        if frame["type"] in ("message.done", "error"):
            return frames


async def test_text_pdf_and_image_reach_a_vision_model_as_content_parts(
    open_socket, ada, vision_config, fake_upstream
):
    fake_upstream.behave(reply="A dot.")
    socket = await open_socket(ada)
    ids = [
        await uploaded(ada, "notes.md", b"# Notes\nBuy milk"),
        await uploaded(ada, "paper.pdf", pdf_with_text("Page one text")),
        await uploaded(ada, "dot.png", PNG),
    ]

    frames = await send(socket, "What is in these?", ids)

    assert frames[-1]["type"] == "message.done" and frames[-1]["status"] == "complete"
    image_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert fake_upstream.requests[-1].json["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": '<file name="notes.md">\n# Notes\nBuy milk\n</file>\n\n'
                    '<file name="paper.pdf">\nPage one text\n</file>\n\nWhat is in these?',
                },
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]
    question = next(f["message"] for f in frames if f["type"] == "message.created"
                    and f["message"]["role"] == "user")  # fmt: skip
    assert [a["name"] for a in question["attachments"]] == ["notes.md", "paper.pdf", "dot.png"]
    rows = await database_sync_to_async(list)(Attachment.objects.order_by("created_at"))
    assert {str(row.message_id) for row in rows} == {question["id"]}


async def test_a_follow_up_sends_the_earlier_files_again(
    open_socket, ada, chat_config, fake_upstream
):
    socket = await open_socket(ada)
    frames = await send(socket, "Read this", [await uploaded(ada, "a.txt", b"alpha")])
    conversation = next(f for f in frames if f["type"] == "conversation.created")["conversation"]

    await socket.send("chat.send", conversation=conversation["id"], parent=None, content="And now?")
    await socket.receive_until("message.done")

    messages = fake_upstream.requests[-1].json["messages"]
    assert messages[0] == {
        "role": "user",
        "content": '<file name="a.txt">\nalpha\n</file>\n\nRead this',
    }
    assert messages[-1] == {"role": "user", "content": "And now?"}


async def test_a_model_without_vision_refuses_images_before_anything_is_sent(
    open_socket, ada, chat_config, fake_upstream
):
    socket = await open_socket(ada)
    image = await uploaded(ada, "dot.png", PNG)

    frames = await send(socket, "What is this?", [image])

    assert frames == [
        {
            "type": "error",
            "code": "vision_unsupported",
            "detail": "This model cannot see images. "
            "Choose a model with vision, or remove the image.",
            "request_id": "r1",
        }
    ]
    assert fake_upstream.requests == []
    assert not await Message.objects.aexists()
    # The file stays unsent: the user may pick another model and send it.
    assert (await Attachment.objects.aget(pk=image)).message_id is None


async def test_a_chain_needs_vision_on_every_member(open_socket, ada, vision_config, fake_upstream):
    plain = await ProviderConfig.objects.acreate(
        name="plain", provider_class="OpenAICompatible", api_base=vision_config.api_base,
        default_model="fake-model", timeout=10,
    )  # fmt: skip
    chain = await FallbackChain.objects.acreate(name="both")
    await FallbackChainMember.objects.acreate(chain=chain, config=vision_config, position=0)
    await FallbackChainMember.objects.acreate(chain=chain, config=plain, position=1)
    socket = await open_socket(ada)

    frames = await send(socket, "Look", [await uploaded(ada, "dot.png", PNG)], provider="both")

    assert frames[-1]["code"] == "vision_unsupported"
    assert fake_upstream.requests == []


async def test_files_of_another_user_or_already_sent_are_not_found(
    open_socket, ada, grace, chat_config, fake_upstream
):
    socket = await open_socket(ada)
    theirs = await uploaded(grace, "grace.txt", b"private")
    mine = await uploaded(ada, "mine.txt", b"mine")

    refused = await send(socket, "Take it", [theirs])
    sent = await send(socket, "First", [mine])
    again = await send(socket, "Again", [mine])

    detail = "An attached file was not found, or was already sent."
    assert refused[-1] == {"type": "error", "code": "not_found", "detail": detail,
                           "request_id": "r1"}  # fmt: skip
    assert sent[-1]["type"] == "message.done"
    assert again[-1]["code"] == "not_found"
    assert len(fake_upstream.requests) == 1
    assert (await Attachment.objects.aget(pk=theirs)).message_id is None


async def test_the_per_message_total_is_enforced(
    open_socket, ada, chat_config, fake_upstream, settings
):
    settings.ATTACHMENT_MAX_MESSAGE_BYTES = 9
    socket = await open_socket(ada)
    ids = [await uploaded(ada, "a.txt", b"12345"), await uploaded(ada, "b.txt", b"67890")]

    frames = await send(socket, "Both", ids)

    assert frames[-1]["code"] == "too_large"
    assert frames[-1]["detail"] == "The files of one message may total 9 bytes."
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("abc", "`attachments` must be a list of at most 10 ids."),
        (["not-a-uuid"], "`attachments` must hold ids (UUID strings)."),
        ([1], "`attachments` must hold ids (UUID strings)."),
        (["0" * 8 + "-0000-0000-0000-" + "0" * 12] * 2, "`attachments` names a file twice."),
    ],
)
def test_the_attachments_field_is_validated(value, detail):
    frame = {"type": "chat.send", "content": "hi", "attachments": value}
    with pytest.raises(ChatError) as caught:
        frame_parse(frame)
    assert (caught.value.code, caught.value.detail) == ("invalid", detail)


async def test_an_image_missing_from_storage_ends_the_answer_with_an_error(
    open_socket, ada, vision_config, fake_upstream
):
    from django.core.files.storage import default_storage

    socket = await open_socket(ada)
    image = await uploaded(ada, "dot.png", PNG)
    row = await Attachment.objects.aget(pk=image)
    await database_sync_to_async(default_storage.delete)(row.file.name)

    frames = await send(socket, "What is this?", [image])

    detail = "The file of dot.png is missing."
    assert frames[-1] == {"type": "error", "code": "not_found", "detail": detail,
                          "request_id": "r1"}  # fmt: skip
    assert fake_upstream.requests == []
    answer = await Message.objects.aget(role="assistant")
    assert (answer.status, answer.error_code) == ("error", "not_found")


async def test_earlier_images_are_named_not_sent_again_so_any_model_can_go_on(
    open_socket, ada, vision_config, fake_upstream
):
    """Only the question being answered carries its images: a later send neither reads and
    uploads every image of the conversation again nor is barred from a model without vision."""
    socket = await open_socket(ada)
    frames = await send(socket, "What is this?", [await uploaded(ada, "dot.png", PNG)])
    conversation = next(f for f in frames if f["type"] == "conversation.created")["conversation"]
    vision_config.vision = False
    await database_sync_to_async(vision_config.save)()

    await socket.send("chat.send", conversation=conversation["id"], parent=None, content="Thanks")
    done = (await socket.receive_until("message.done"))[-1]

    assert done["status"] == "complete"
    messages = fake_upstream.requests[-1].json["messages"]
    assert messages[0] == {"role": "user", "content": "[image: dot.png]\nWhat is this?"}
    assert messages[-1] == {"role": "user", "content": "Thanks"}
