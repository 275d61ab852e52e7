"""Playwright fixtures for tests in a real browser: Debian's Chromium against ``live_server``.

Reuse them in any browser test (mark it ``@pytest.mark.browser``; the live server needs
``@pytest.mark.django_db(transaction=True)``):

- ``browser``: one headless Chromium for the session (``/usr/bin/chromium``, or ``TRIAGE_CHROMIUM``).
- ``new_page()``: a fresh page (own cookies) whose relative URLs go to the live server.
- ``agent_page`` / ``admin_page``: a page logged in through the login form as ``alice`` (agents) or
  ``ada`` (admins), the role fixtures of ``tests/conftest.py``.
- ``log_in(page, username, password)``: log a page in through the form.
- ``screenshot(page, name)``: save a PNG under ``tests/screenshots/<module>/<test>/`` (git-ignored) and
  return its path; a failing test also saves ``FAILED.png`` of each page it opened.

JavaScript errors on a page, and anything the Content-Security-Policy refused, fail the test that opened it
(``page.js_errors`` lists them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test's thread; Django refuses ORM calls from a thread
# with a running loop unless told that this is deliberate. The ORM calls here are plain test set-up.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

BASE_DIR = Path(__file__).resolve().parents[2]
SCREENSHOTS = BASE_DIR / "tests" / "screenshots"
CHROMIUM = os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: the machine is small and shared. Assertions on the page wait up to this long.
DEFAULT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_dir(request) -> Path:
    module = Path(request.node.fspath).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return SCREENSHOTS / module / name


@pytest.fixture
def screenshot(request) -> Callable:
    """``screenshot(page, "ticket-routed")`` -> Path of the saved full-page PNG."""
    counter = {"n": 0}

    def take(page, name: str) -> Path:
        counter["n"] += 1
        folder = _test_dir(request)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{counter['n']:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    # Screenshots of an earlier run of this test would mix with this run's.
    folder = _test_dir(request)
    if folder.exists():
        for old in folder.glob("*.png"):
            old.unlink()
    return take


@pytest.fixture
def new_page(request, browser, live_server) -> Iterator[Callable]:
    """``new_page()`` -> a page in its own browser context, based at the live server."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1360, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = context.new_page()
        page.js_errors = []
        page.on("pageerror", lambda error: page.js_errors.append(str(error)))
        # The browser refuses what the Content-Security-Policy forbids and only says so on the console.
        page.on(
            "console",
            lambda message: (
                page.js_errors.append(message.text)
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        contexts.append((context, page))
        return page

    yield make

    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    for number, (context, page) in enumerate(contexts, start=1):
        if failed and not page.is_closed():
            folder = _test_dir(request)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(folder / f"FAILED-page{number}.png"), full_page=True)
            except Exception:  # a failure screenshot must never hide the real failure
                pass
        context.close()
    errors = [error for _, page in contexts for error in page.js_errors]
    if errors and not failed:
        pytest.fail(f"JavaScript errors on the page: {errors}")


def log_in(page, username: str, password: str) -> None:
    """Log ``page`` in through the login form and wait for the queue."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/(\?.*)?$"))


@pytest.fixture
def agent_page(new_page, transactional_db, agent_alice):
    """A page logged in as alice (group ``agents``)."""
    page = new_page()
    log_in(page, agent_alice.username, "pw-" + agent_alice.username)
    return page


@pytest.fixture
def admin_page(new_page, transactional_db, admin_ada):
    """A page logged in as ada (group ``admins``)."""
    page = new_page()
    log_in(page, admin_ada.username, "pw-" + admin_ada.username)
    return page
