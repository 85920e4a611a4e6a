"""Logins over HTTP: throttled failures, sessions ended on the server, pre-login CSRF,
sign-up that tells nobody who has an account, normalised names, and the admin key's
length."""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import PASSWORD, Factory
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.portal.pages import csrf_of, log_in, visitor
from tests.servers import (
    REDIS_URL,
    ServerThread,
    drop_redis_prefix,
    free_port,
    postgres_database,
    redis_or_skip,
    running,
    unique_redis_prefix,
    wait_ready,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/auth/login", json={"username": username, "password": password})


def _add_user(admin: httpx.Client, username: str) -> httpx.Response:
    body = {"username": username, "email": f"{username}@example.org", "password": PASSWORD}
    return admin.post("/admin/users", json=body)


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[str]:
    """A server of its own (its limits must not touch the shared platform's logins)."""
    settings = make_settings(tmp_path, login_max_failures=3, login_max_failures_per_address=6)
    with running(create_app(settings)) as server:
        yield server.url


def test_failed_logins_answer_429_per_account_then_per_address(throttled: str) -> None:
    with httpx.Client(base_url=throttled, headers=ADMIN, timeout=60) as admin:
        assert _add_user(admin, "victim").status_code == 201
        assert _add_user(admin, "bystander").status_code == 201
    with httpx.Client(base_url=throttled, timeout=60) as client:
        for _ in range(3):
            assert _login(client, "victim", "wrong-password").status_code == 401
        locked = _login(client, "victim", PASSWORD)  # even the right password, for a while
        assert locked.status_code == 429, locked.text
        assert locked.json()["code"] == "too_many_logins"
        assert 0 < int(locked.headers["Retry-After"]) <= 900
        # The account's name in another spelling is the same account.
        assert _login(client, "VICTIM", PASSWORD).status_code == 429
        # Other accounts still log in from here, and a right password is no failure.
        assert _login(client, "bystander", PASSWORD).status_code == 200
        # Names that do not exist count the same (the answer must not tell them apart).
        for _ in range(3):
            assert _login(client, f"nobody{secrets.token_hex(3)}", "x-wrong").status_code == 401
        # Six failures from this address: every account is refused from it now.
        refused = _login(client, "bystander", PASSWORD)
        assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_the_portal_login_is_throttled_too(throttled: str) -> None:
    with httpx.Client(base_url=throttled, headers=ADMIN, timeout=60) as admin:
        assert _add_user(admin, "pagevictim").status_code == 201
    with visitor(throttled) as client:
        for _ in range(3):
            assert log_in(client, "pagevictim", "wrong-password").status_code == 401
        page = log_in(client, "pagevictim", PASSWORD)
        assert page.status_code == 429 and "Too many failed logins" in page.text
        assert int(page.headers["Retry-After"]) > 0


def test_failures_are_counted_across_replicas_with_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two replicas (one database, one Redis): failures on one lock the account on both."""
    redis_or_skip()
    prefix = unique_redis_prefix()
    with postgres_database() as database_url:
        servers = [
            ServerThread(
                create_app(
                    make_settings(
                        tmp_path_factory.mktemp(f"replica{n}"),
                        database_url,
                        redis_url=REDIS_URL,
                        redis_prefix=prefix,
                        login_max_failures=4,
                        session_secret="shared-" + "s" * 40,
                    )
                )
            )
            for n in range(2)
        ]
        for server in servers:
            server.start()
        try:
            first, second = (httpx.Client(base_url=s.url, timeout=60) for s in servers)
            with httpx.Client(base_url=servers[0].url, headers=ADMIN, timeout=60) as admin:
                assert _add_user(admin, "shared").status_code == 201
            # Four failures in parallel over both replicas, then one more anywhere is 429.
            with ThreadPoolExecutor(4) as pool:
                statuses = list(
                    pool.map(
                        lambda n: _login((first, second)[n % 2], "shared", "nope-nope").status_code,
                        range(4),
                    )
                )
            assert statuses == [401] * 4
            assert _login(second, "shared", PASSWORD).status_code == 429
            assert _login(first, "shared", PASSWORD).status_code == 429
            first.close()
            second.close()
        finally:
            for server in servers:
                server.stop()
            drop_redis_prefix(prefix)


def _rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


# 200 argon2 hashes, two at a time: seconds on an idle machine, minutes on a loaded one.
@pytest.mark.timeout(900)
def test_200_wrong_passwords_do_not_take_the_servers_memory(tmp_path: Path) -> None:
    """Each argon2 hash holds 64 MiB while it runs: only a few may run at once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    env.update(
        OPENMAAS_ADMIN_KEY=ADMIN_KEY,
        OPENMAAS_LOG_LEVEL="warning",
        OPENMAAS_LOGIN_MAX_FAILURES="1000",
        OPENMAAS_LOGIN_MAX_FAILURES_PER_ADDRESS="1000",
    )
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo"]
    command += ["--port", str(port), "--data-dir", str(tmp_path)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url)
        with (
            httpx.Client(base_url=url, timeout=120) as client,
            httpx.Client(base_url=url, headers=ADMIN, timeout=60) as admin,
        ):
            assert _add_user(admin, "target").status_code == 201
            for _ in range(3):  # warm up: the first hashes set up the pool and arenas
                assert _login(client, "target", "wrong-password").status_code == 401
            before = _rss_kib(server.pid)
            with ThreadPoolExecutor(50) as pool:
                statuses = list(
                    pool.map(
                        lambda _: _login(client, "target", "wrong-pass").status_code, range(200)
                    )
                )
            assert set(statuses) == {401}
            after = _rss_kib(server.pid)
        # Two hashes of 64 MiB at a time, with slack; 40 at once held about 2.5 GiB.
        peak_growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
        assert peak_growth_mib < 400, (before, after)
        assert (after["VmRSS"] - before["VmRSS"]) / 1024 < 200, (before, after)
    finally:
        server.terminate()
        server.communicate(timeout=60)


def test_logout_ends_the_session_on_the_server(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    cookie = developer.client.cookies.get("openmaas_session")
    assert cookie
    with httpx.Client(base_url=platform.url, timeout=60) as thief:
        thief.cookies.set("openmaas_session", cookie)
        assert thief.get("/me").status_code == 200
        assert developer.client.post("/auth/logout").status_code == 204
        assert thief.get("/me").status_code == 401  # the copied cookie stopped working
    again = make.login(developer.username)  # a new login works at once
    assert again.get("/me").status_code == 200


def test_portal_logout_ends_the_session_on_the_server(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    with visitor(platform.url) as browser, visitor(platform.url) as thief:
        assert log_in(browser, developer.username, PASSWORD).status_code == 303
        thief.cookies.set("openmaas_session", browser.cookies["openmaas_session"])
        assert thief.get("/portal").status_code == 200
        token = csrf_of(browser.get("/portal"))
        forged = browser.post("/portal/logout", data={"csrf_token": "\u00e9t\u00e9"})
        assert forged.status_code == 403, forged.text
        assert browser.post("/portal/logout", data={"csrf_token": token}).status_code == 303
        assert thief.get("/portal").status_code == 303  # sent to the login page


@pytest.mark.parametrize("page", ["/portal/login", "/portal/signup"])
def test_the_login_and_signup_forms_carry_a_csrf_token(platform: Platform, page: str) -> None:
    with visitor(platform.url) as client:
        form = client.get(page)
        token = csrf_of(form)
        assert client.cookies.get("openmaas_form") == token
        fields = {"username": "nobody-here", "password": "wrong-password"}
        # Another site's form has neither the cookie (SameSite=Strict) nor the token.
        with visitor(platform.url) as forger:
            forged = forger.post(page, data={**fields, "csrf_token": token})
            assert forged.status_code == 403 and "CSRF" in forged.text
        missing = client.post(page, data=fields)
        assert missing.status_code == 403
        for wrong_token in ("x" * 32, "\u00e9t\u00e9"):
            wrong = client.post(page, data={**fields, "csrf_token": wrong_token})
            assert wrong.status_code == 403, wrong.text
        answered = client.post(page, data={**fields, "csrf_token": token})
        assert answered.status_code != 403, answered.text


def _signup(client: httpx.Client, username: str, email: str) -> httpx.Response:
    body = {"username": username, "email": email, "password": PASSWORD}
    return client.post("/auth/signup", json=body)


def test_signup_does_not_tell_who_has_an_account(platform: Platform) -> None:
    taken = f"taken{secrets.token_hex(3)}"
    first = _signup(platform.anonymous, taken, f"{taken}@example.org")
    answers = {
        "new": first,
        "taken name": _signup(platform.anonymous, taken, f"other{taken}@example.org"),
        "taken e-mail": _signup(platform.anonymous, f"x{taken}", f"{taken}@example.org"),
        "look-alike": _signup(platform.anonymous, taken.upper(), f"y{taken}@example.org"),
    }
    shapes = {name: (r.status_code, r.json()) for name, r in answers.items()}
    assert len({repr(shape) for shape in shapes.values()}) == 1, shapes
    assert first.status_code == 202
    # Only the first made an account; the others cannot log in.
    assert _login(platform.anonymous, taken, PASSWORD).status_code == 200
    assert _login(platform.anonymous, f"x{taken}", PASSWORD).status_code == 401

    def timed(make_name: object) -> float:
        durations = []
        for _ in range(5):
            name = make_name() if callable(make_name) else str(make_name)
            started = time.perf_counter()
            _signup(platform.anonymous, name, f"{name}@example.org")
            durations.append(time.perf_counter() - started)
        return statistics.median(durations)

    fresh = timed(lambda: f"fresh{secrets.token_hex(4)}")
    refused = timed(taken)
    # The same steps either way; a loaded machine gets slack, a skipped hash would not.
    assert refused > fresh / 3 and refused < fresh * 3, (fresh, refused)


def test_usernames_are_normalised_and_look_alikes_refused(platform: Platform) -> None:
    base = f"carol{secrets.token_hex(2)}"
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in base.upper())
    created = _signup(platform.anonymous, wide, f"{base}@example.org")  # full-width capitals
    assert created.status_code == 202, created.text
    users = platform.admin.get("/admin/users", params={"limit": 1000}).json()["users"]
    assert base.upper() in {u["username"] for u in users}  # stored as the ASCII it looks like
    for spelling in (base, base.upper(), wide):
        assert _login(platform.anonymous, spelling, PASSWORD).status_code == 200, spelling
    for look_alike in (
        base.replace("o", "0"),
        base.replace("l", "1"),
        base + "_",
        base[:-1].upper() + base[-1],
    ):
        refused = _add_user(platform.admin, look_alike)
        assert refused.status_code == 409, (look_alike, refused.text)
        assert refused.json()["code"] == "user_exists"
    # Names that only look different are fine.
    assert _add_user(platform.admin, f"{base}x").status_code == 201


@pytest.mark.parametrize("entry", ["openmaas serve", "uvicorn factory"])
def test_a_short_admin_key_is_refused_at_start(entry: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    env.update(OPENMAAS_ADMIN_KEY="short-admin-key", OPENMAAS_DATA_DIR=str(tmp_path))
    if entry == "openmaas serve":
        command = [sys.executable, "-m", "openmaas.cli", "serve", "--port", str(free_port())]
    else:
        command = [sys.executable, "-m", "uvicorn", "--factory"]
        command += ["openmaas.app:create_app_from_environment", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "OPENMAAS_ADMIN_KEY" in line]
    assert len(lines) == 1 and "at least 32 characters" in lines[0], output
    assert "short-admin-key" not in output
