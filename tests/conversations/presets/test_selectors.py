"""Reads of presets: one's own and the published ones, never another user's private ones."""

import pytest

from conversations.presets.models import PromptPreset
from conversations.presets.selectors import (
    preset_for_edit,
    preset_list_for_user,
    preset_picker_items,
)

pytestmark = pytest.mark.django_db


def _preset(owner, title, **fields):
    return PromptPreset.objects.create(owner=owner, title=title, text=f"{title} text", **fields)


def test_a_user_sees_their_own_and_published_presets_only(ada, grace, root):
    _preset(ada, "Ada's")
    _preset(grace, "Grace's private")
    _preset(root, "Root's private")
    _preset(root, "For everyone", published=True)

    assert [p.title for p in preset_list_for_user(user=ada)] == ["Ada's", "For everyone"]
    assert [p.title for p in preset_list_for_user(user=grace)] == [
        "For everyone",
        "Grace's private",
    ]


def test_the_picker_gets_the_settings_of_each_preset(ada):
    preset = _preset(
        ada, "Translate", system_prompt="You translate.", target="fake:m", temperature=0.2
    )

    assert preset_picker_items(user=ada) == [
        {
            "id": preset.pk,
            "title": "Translate",
            "text": "Translate text",
            "system": "You translate.",
            "target": "fake:m",
            "temperature": 0.2,
            "published": False,
        }
    ]


def test_only_the_owner_edits_and_a_published_preset_only_if_staff(ada, grace, root):
    mine = _preset(ada, "Mine")
    published_by_ada = _preset(ada, "Was published", published=True)
    published_by_root = _preset(root, "Root's", published=True)

    assert preset_for_edit(user=ada, preset_id=mine.pk) == mine
    assert preset_for_edit(user=root, preset_id=published_by_root.pk) == published_by_root
    for user, preset in [(grace, mine), (ada, published_by_ada), (ada, published_by_root)]:
        with pytest.raises(PromptPreset.DoesNotExist):
            preset_for_edit(user=user, preset_id=preset.pk)
