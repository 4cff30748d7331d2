"""Reads of prompt presets: a user sees their own and the published ones, never another user's
private ones."""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from conversations.presets.models import PromptPreset

# The picker and the page list at most this many (a user may own PRESETS_PER_USER of them).
PRESETS_SHOWN = 500


def preset_list_for_user(*, user: AbstractBaseUser) -> QuerySet[PromptPreset]:
    return PromptPreset.objects.filter(Q(owner=user) | Q(published=True)).order_by("title", "id")[
        :PRESETS_SHOWN
    ]


def preset_for_edit(*, user: AbstractBaseUser, preset_id: uuid.UUID | int) -> PromptPreset:
    """The user's own preset, if they may change it: a published one only by staff. Raises
    PromptPreset.DoesNotExist otherwise (a page says 404, not whether it exists)."""
    rows = PromptPreset.objects.filter(pk=preset_id, owner=user)
    if not user.is_staff:
        rows = rows.filter(published=False)
    return rows.get()


def preset_picker_items(*, user: AbstractBaseUser) -> list[dict]:
    """What the composer's `/` list needs, as JSON."""
    return [
        {
            "id": preset.pk,
            "title": preset.title,
            "text": preset.text,
            "system": preset.system_prompt,
            "target": preset.target,
            "temperature": preset.temperature,
            "published": preset.published,
        }
        for preset in preset_list_for_user(user=user)
    ]
