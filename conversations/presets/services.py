"""Writes of prompt presets. Every function checks who may write: a user changes only their own
presets, and only staff publish one or change a published one."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from conversations.presets.models import PromptPreset

# A library, not a dump: bounds the page and the picker's download.
PRESETS_PER_USER = 200


class PresetError(Exception):
    """A write the user may not make; the text is shown to them."""


def _check_may_write(*, user: AbstractBaseUser, published: bool) -> None:
    if published and not user.is_staff:
        raise PresetError("Only administrators can publish presets or change published ones.")


def preset_create(
    *,
    owner: AbstractBaseUser,
    title: str,
    text: str,
    system_prompt: str = "",
    target: str = "",
    temperature: float | None = None,
    published: bool = False,
) -> PromptPreset:
    _check_may_write(user=owner, published=published)
    with transaction.atomic():
        # Locks the owner's row: two creates at once cannot both pass the count.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        if PromptPreset.objects.filter(owner=owner).count() >= PRESETS_PER_USER:
            raise PresetError(f"You already have {PRESETS_PER_USER} presets; delete one first.")
        return PromptPreset.objects.create(
            owner=owner,
            title=title,
            text=text,
            system_prompt=system_prompt,
            target=target,
            temperature=temperature,
            published=published,
        )


def preset_update(
    *,
    preset: PromptPreset,
    editor: AbstractBaseUser,
    title: str,
    text: str,
    system_prompt: str = "",
    target: str = "",
    temperature: float | None = None,
    published: bool = False,
) -> PromptPreset:
    if preset.owner_id != editor.pk:
        raise PresetError("This preset is not yours.")
    _check_may_write(user=editor, published=preset.published or published)
    preset.title = title
    preset.text = text
    preset.system_prompt = system_prompt
    preset.target = target
    preset.temperature = temperature
    preset.published = published
    preset.save()
    return preset


def preset_delete(*, preset: PromptPreset, editor: AbstractBaseUser) -> None:
    if preset.owner_id != editor.pk:
        raise PresetError("This preset is not yours.")
    _check_may_write(user=editor, published=preset.published)
    preset.delete()
