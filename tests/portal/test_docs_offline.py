"""``/docs`` (Swagger UI) and ``/redoc`` render in Chromium with the network off.

Every request that does not go to the test server is refused and recorded: the pages must
render from the platform alone (assets from the installed ``fastapi-offline`` package).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import Platform


@pytest.fixture
def offline_page(browser, platform: Platform):
    """A page that can reach the test server and nothing else."""
    server = urlsplit(platform.url).netloc
    refused: list[str] = []

    def only_the_server(route) -> None:
        if urlsplit(route.request.url).netloc == server:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    context = browser.new_context(base_url=platform.url)
    context.set_default_timeout(20_000)
    context.route("**/*", only_the_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, refused, errors
    context.close()


def test_swagger_ui_renders_offline(offline_page) -> None:
    page, refused, errors = offline_page
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "OpenMaaS" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock-summary-path", has_text="/v1/chat/completions").count() >= 1
    assert not refused, refused
    assert not errors, errors


def test_redoc_renders_offline(offline_page) -> None:
    page, refused, errors = offline_page
    page.goto("/redoc")
    page.wait_for_selector("h1")
    assert "OpenMaaS" in page.inner_text("h1")
    page.get_by_text("/v1/chat/completions").first.wait_for()
    assert not refused, refused
    assert not errors, errors
