"""Login throttling, on top of django-axes (configured in settings, "Accounts").

Axes counts failed sign-ins per client address and, separately, per username, and locks either
out after LOGIN_FAILURE_LIMIT failures. What is ours: the lock-out grows exponentially with every
further failure (axes has one fixed cool-off), the page says so in words, and sign-ins that come
from no web request (the shell, management commands) are not throttled.
"""

from datetime import timedelta
from math import ceil

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses sign-ins of a locked-out address or username; authenticates nobody itself."""

    def authenticate(self, request: HttpRequest | None, *args, **kwargs):
        if request is None:
            # No client to throttle (the shell, a command): leave it to the next backend.
            return None
        return super().authenticate(request, *args, **kwargs)


def _failures_on_record(request: HttpRequest) -> int:
    """Failed sign-ins still on record for this client's address or the username it tries,
    whichever is more."""
    address = getattr(request, "axes_ip_address", None)
    username = get_client_username(request)
    counts = [0]
    for lookup in ({"ip_address": address}, {"username": username}):
        if next(iter(lookup.values())):
            total = AccessAttempt.objects.filter(**lookup).aggregate(n=Sum("failures_since_start"))
            counts.append(total["n"] or 0)
    return max(counts)


def login_cool_off(request: HttpRequest | None) -> timedelta:
    """How long a lock-out lasts (AXES_COOLOFF_TIME): LOGIN_COOLOFF_SECONDS at the limit, then
    twice as long for every further failure, up to LOGIN_MAX_COOLOFF_SECONDS. Failures are
    forgotten once a whole cool-off passes without one."""
    base = settings.LOGIN_COOLOFF_SECONDS
    extra = 0
    if request is not None:
        extra = max(0, _failures_on_record(request) - settings.LOGIN_FAILURE_LIMIT)
    seconds = base * 2 ** min(extra, 32)
    return timedelta(seconds=min(seconds, settings.LOGIN_MAX_COOLOFF_SECONDS))


def _wait_in_words(delta: timedelta) -> str:
    minutes = ceil(delta.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = ceil(minutes / 60)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def login_locked_out(request: HttpRequest, response=None, credentials=None) -> HttpResponse:
    """The sign-in page again (AXES_LOCKOUT_CALLABLE), saying why and for how long, with 429."""
    wait = _wait_in_words(login_cool_off(request))
    form = AuthenticationForm(request, initial={"username": get_client_username(request)})
    context = {
        "form": form,
        "locked_out": f"Too many failed sign-ins. Wait {wait}, then try again.",
        "next": request.POST.get("next", ""),
    }
    return render(request, "registration/login.html", context, status=429)
