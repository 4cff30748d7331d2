"""Browser tests: Debian's Chromium, driven by Playwright's Python API, against a live server.

The server is the real thing: `manage.py serve` (Daphne) in a subprocess, on a free port, using
the test database (SQLite file or PostgreSQL) and the test run's settings, with providers
pointing at the fake upstream. Tests write their rows through the ORM and commit them
(transactional tests), so the server sees them.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from providers.models import ProviderConfig
from tests.conversations import page_factories as make
from tests.live_server import LiveServer, session_cookie

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RESULTS_DIR = Path(settings.BASE_DIR) / "test-results"
# Playwright's default waits are 30 s; a stuck page should fail sooner than that.
STEP_TIMEOUT_MS = 10_000
# `expect(...)` has a default of its own (5 s), which a busy CI machine's streamed answer can
# outlast: the same bound as every other step.
expect.set_options(timeout=STEP_TIMEOUT_MS)
PASSWORD = "correct horse battery staple"


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread
# for as long as it is open, and the async tests that run after this folder need the thread to
# themselves.
@pytest.fixture(scope="package")
def chat_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """The server every browser test shares (started after the test database exists, stopped
    before it is dropped)."""
    if not shutil.which("chromium"):
        pytest.skip("needs Chromium")
    server = LiveServer(tmp_path_factory.mktemp("server") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def playwright_browser(chat_server):
    # After the server (hence after the test database is set up, which Django refuses to do
    # beside Playwright's event loop) and closed before it.
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, so Django's guard against ORM
    # calls from async code would trip on every query a test makes between two page actions
    # (and on the database flush after each test). Those queries run while the loop is idle,
    # which is what the guard cannot tell.
    guard = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=BROWSER_ARGS
            )
            yield browser
            browser.close()
    finally:
        if guard is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = guard


@pytest.fixture
def provider(fake_upstream, transactional_db) -> ProviderConfig:
    return make.provider_config(api_base=fake_upstream.url + "/v1", is_default=True, timeout=10)


@pytest.fixture
def user(django_user_model, transactional_db):
    return django_user_model.objects.create_user(username="ada", password=PASSWORD)


@pytest.fixture
def dialogs() -> list[str]:
    """Every alert/confirm/prompt a page opened (the tests expect none)."""
    return []


def _new_context(browser, server, *, color_scheme="light", viewport=None):
    context = browser.new_context(
        base_url=server.url,
        color_scheme=color_scheme,
        viewport=viewport or {"width": 1280, "height": 800},
        accept_downloads=True,
    )
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


@pytest.fixture
def open_page(playwright_browser, chat_server, dialogs):
    """`open_page(user=None, color_scheme="light", viewport=None)`: a page in a fresh browser
    context, signed in as `user` (a session made here, as after a real sign-in).

    Every page is watched: an uncaught script error or a Content-Security-Policy violation fails
    the test that caused it."""
    contexts = []
    problems: list[str] = []

    def open_(user=None, *, color_scheme="light", viewport=None, server=None):
        server = server or chat_server
        context = _new_context(playwright_browser, server, color_scheme=color_scheme,
                               viewport=viewport)  # fmt: skip
        contexts.append(context)
        if user is not None:
            name, _, value = session_cookie(user).partition("=")
            context.add_cookies([{"name": name, "value": value, "url": server.url}])
        page = context.new_page()

        def on_dialog(dialog):
            dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message):
            if message.type == "error" and "Content Security Policy" in message.text:
                problems.append(message.text)

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("console", on_console)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert problems == []


@pytest.fixture(scope="session")
def results_dir() -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    return RESULTS_DIR
