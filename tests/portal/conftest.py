"""What the portal tests share: the browser."""

from tests.portal.browser import browser  # noqa: F401 (a fixture for every test here)
