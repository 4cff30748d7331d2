"""Writes of presets: ownership, staff-only publishing, the per-user limit."""

import pytest

from conversations.presets import services
from conversations.presets.models import PromptPreset
from conversations.presets.services import PresetError, preset_create, preset_delete, preset_update

pytestmark = pytest.mark.django_db


def _fields(**overrides):
    return {"title": "Summarise", "text": "Summarise this:", **overrides}


def test_a_user_creates_a_private_preset_with_its_settings(ada):
    preset = preset_create(
        owner=ada, system_prompt="Be brief.", target="fake:fake-model", temperature=0.3, **_fields()
    )

    row = PromptPreset.objects.get(pk=preset.pk)
    assert (row.owner, row.title, row.text, row.system_prompt, row.target, row.temperature) == (
        ada, "Summarise", "Summarise this:", "Be brief.", "fake:fake-model", 0.3
    )  # fmt: skip
    assert row.published is False


def test_a_non_staff_user_cannot_publish(ada):
    with pytest.raises(PresetError, match="Only administrators"):
        preset_create(owner=ada, published=True, **_fields())

    mine = preset_create(owner=ada, **_fields())
    with pytest.raises(PresetError, match="Only administrators"):
        preset_update(preset=mine, editor=ada, published=True, **_fields())
    assert PromptPreset.objects.get(pk=mine.pk).published is False


def test_staff_publish_and_only_staff_change_a_published_preset(root, ada):
    published = preset_create(owner=root, published=True, **_fields())
    # Its owner losing staff rights can no longer change or delete it.
    root.is_staff = False
    root.save()

    with pytest.raises(PresetError):
        preset_update(preset=published, editor=root, **_fields(title="Changed"))
    with pytest.raises(PresetError):
        preset_delete(preset=published, editor=root)
    assert PromptPreset.objects.get(pk=published.pk).title == "Summarise"


def test_nobody_changes_or_deletes_another_users_preset(ada, grace, root):
    theirs = preset_create(owner=grace, **_fields())
    published = preset_create(owner=root, published=True, **_fields())

    for preset, editor in [(theirs, ada), (published, ada), (theirs, root)]:
        with pytest.raises(PresetError, match="not yours"):
            preset_update(preset=preset, editor=editor, **_fields(title="Mine now"))
        with pytest.raises(PresetError, match="not yours"):
            preset_delete(preset=preset, editor=editor)
    assert set(PromptPreset.objects.values_list("title", flat=True)) == {"Summarise"}
    assert PromptPreset.objects.count() == 2


def test_a_user_has_at_most_the_limit_of_presets(ada, grace, monkeypatch):
    monkeypatch.setattr(services, "PRESETS_PER_USER", 2)
    preset_create(owner=ada, **_fields())
    preset_create(owner=ada, **_fields())

    with pytest.raises(PresetError, match="already have 2 presets"):
        preset_create(owner=ada, **_fields())
    # The limit is per user.
    preset_create(owner=grace, **_fields())
    assert PromptPreset.objects.filter(owner=ada).count() == 2
