import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command


def run() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_first_run_creates_admin_with_printed_password_stored_only_as_hash():
    output = run()
    password = re.search(r"password: (\S+)", output).group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert password not in admin.password
    assert authenticate(username="admin", password=password) == admin


@pytest.mark.django_db
def test_later_runs_print_nothing_and_keep_the_password():
    password = re.search(r"password: (\S+)", run()).group(1)
    assert run() == ""
    assert get_user_model().objects.count() == 1
    assert authenticate(username="admin", password=password) is not None
