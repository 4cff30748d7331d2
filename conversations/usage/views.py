"""The user's own usage page. Thin: reads the period, calls one selector, renders."""

from datetime import timedelta

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from conversations.selectors import conversation_sidebar_page
from conversations.usage.forms import DEFAULT_DAYS, PeriodForm
from conversations.usage.selectors import usage_for_user


@require_GET
def usage_page(request):
    form = PeriodForm(request.GET)
    days = form.cleaned_data["days"] if form.is_valid() else DEFAULT_DAYS
    totals = usage_for_user(user=request.user, since=timezone.now() - timedelta(days=days))
    context = {
        "form": form,
        "days": days,
        "totals": totals,
        "sidebar": conversation_sidebar_page(user=request.user),
    }
    return render(request, "usage/usage.html", context, status=400 if form.errors else 200)
