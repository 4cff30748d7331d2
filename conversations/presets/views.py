"""The prompt presets pages: list, create, edit, delete (plain forms), and the JSON list the
composer's `/` picker loads. Thin: validate, call one selector or service, render."""

from django.contrib import messages as flash
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from conversations.presets import selectors, services
from conversations.presets.forms import PresetForm
from conversations.presets.models import PromptPreset
from conversations.selectors import conversation_sidebar_page
from providers.selectors import provider_targets_for_picker


def _page(request, template: str, context: dict, *, status: int = 200):
    context.setdefault("sidebar", conversation_sidebar_page(user=request.user))
    return render(request, template, context, status=status)


def _preset_or_404(request, preset_id: int) -> PromptPreset:
    try:
        return selectors.preset_for_edit(user=request.user, preset_id=preset_id)
    except PromptPreset.DoesNotExist:
        raise Http404("No such preset.") from None


@require_GET
def preset_list(request):
    return _page(
        request, "presets/list.html", {"presets": selectors.preset_list_for_user(user=request.user)}
    )


@require_GET
def preset_picker(request):
    return JsonResponse({"presets": selectors.preset_picker_items(user=request.user)})


def _form_page(request, form: PresetForm, preset: PromptPreset | None):
    return _page(
        request,
        "presets/form.html",
        {"form": form, "preset": preset},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def preset_create(request):
    form = PresetForm(
        request.POST or None, targets=provider_targets_for_picker(), user=request.user
    )
    if request.method == "POST" and form.is_valid():
        try:
            preset = services.preset_create(owner=request.user, **form.preset_fields())
        except services.PresetError as exc:
            form.add_error(None, str(exc))
        else:
            flash.success(request, f"Saved “{preset.title}”.")
            return redirect("preset_list")
    return _form_page(request, form, None)


@require_http_methods(["GET", "POST"])
def preset_edit(request, preset_id: int):
    preset = _preset_or_404(request, preset_id)
    initial = {
        "title": preset.title,
        "text": preset.text,
        "system_prompt": preset.system_prompt,
        "target": preset.target,
        "temperature": preset.temperature,
        "published": preset.published,
    }
    form = PresetForm(
        request.POST or None,
        initial=initial,
        targets=provider_targets_for_picker(),
        user=request.user,
        current_target=preset.target,
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.preset_update(preset=preset, editor=request.user, **form.preset_fields())
        except services.PresetError as exc:
            form.add_error(None, str(exc))
        else:
            flash.success(request, f"Saved “{preset.title}”.")
            return redirect("preset_list")
    return _form_page(request, form, preset)


@require_http_methods(["GET", "POST"])
def preset_delete(request, preset_id: int):
    preset = _preset_or_404(request, preset_id)
    if request.method == "POST":
        services.preset_delete(preset=preset, editor=request.user)
        flash.success(request, f"Deleted “{preset.title}”.")
        return redirect("preset_list")
    return _page(request, "presets/delete.html", {"preset": preset})
