"""The web console in a real browser: Debian's Chromium driven by Playwright (its own browser downloads are
never used: ``executable_path``). Skipped with a reason when Chromium is absent outside CI; in CI (.ci/run
installs it) its absence fails. Every request the browser makes is watched: none may leave 127.0.0.1.
Screenshots go to tmp/artefacts/console/ (not committed)."""
from __future__ import annotations

import os
import re
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.e2e.helpers import keyledger
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = ROOT / "tmp" / "artefacts" / "console"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"


def _chromium_or_skip() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        present = False
    else:
        present = CHROMIUM.exists()
    if not present:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: .ci/run installs chromium and the dev dependencies")
        pytest.skip("the console browser tests need Debian's chromium (/usr/bin/chromium) and the playwright "
                    "package: apt-get install chromium; pip install -e '.[dev]'")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    factory = ServerFactory("sqlite", tmp_path)
    try:
        yield factory.start("console")
    finally:
        factory.close()


@pytest.fixture
def browser_page(server: Server) -> Iterator[tuple[Any, list[str]]]:
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800})

        def guard(route: Any) -> None:
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host == "127.0.0.1":
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        try:
            yield page, outside
        finally:
            context.close()
            browser.close()


def _sign_in(page: Any, server: Server, secret: str = ADMIN_SECRET) -> None:
    page.goto(server.endpoint + "/console")
    page.fill("#access_key_id", ADMIN_KEY_ID)
    page.fill("#secret", secret)
    page.click("#signin")


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def test_console_walkthrough(server: Server, browser_page: tuple[Any, list[str]]) -> None:
    page, outside = browser_page
    kms = server.client()
    key_id = kms.create_key(Description="payments", Tags=[{"TagKey": "team", "TagValue": "payments"}])["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=key_id)
    for _ in range(3):
        kms.encrypt(KeyId="alias/app", Plaintext=b"secret")
    time.sleep(0.05)  # an instant strictly between two events, not on one
    while_enabled = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    time.sleep(0.05)
    kms.disable_key(KeyId=key_id)

    _sign_in(page, server)
    page.wait_for_selector("#keys")
    assert key_id in page.inner_text("#keys") and "alias/app" in page.inner_text("#keys")
    assert ROOT_ARN in page.inner_text("#who")
    _shot(page, "01-keys")
    page.select_option("#filter-state", "Enabled")
    page.click("button[type=submit] >> text=Filter")
    assert key_id not in page.inner_text("#keys")  # disabled now
    page.goto(server.endpoint + "/console/keys")

    page.click(f"a:text('{key_id}')")
    page.wait_for_selector("#key-state")
    assert page.inner_text("#key-state") == "Disabled"
    assert "DisableKey" in page.inner_text("#timeline")
    _shot(page, "02-key-now")
    page.fill("#at", while_enabled)
    page.click("#show-at")
    page.wait_for_selector("#as-of")
    assert page.inner_text("#key-state") == "Enabled"
    assert "As it was at" in page.inner_text("#as-of")
    _shot(page, "03-key-before-disable")

    page.click("text=Who could use it")
    page.select_option("#operation", "Decrypt")
    page.fill("#access-at", while_enabled)
    page.click("#access-show")
    page.wait_for_selector("#access")
    rows = page.inner_text("#access")
    assert ROOT_ARN in rows and "yes" in rows
    _shot(page, "04-access-at")

    page.click("nav >> text=Audit log")
    page.fill("#audit-event", "Encrypt")
    page.click("#audit-filter")
    page.wait_for_selector("#records")
    events = page.locator("#records td.event").all_inner_texts()
    assert events == ["Encrypt"] * 3
    _shot(page, "05-audit-filtered")
    page.click(f"#records a:text('{key_id}')")  # each record links to its key
    page.wait_for_selector("#key-state")

    page.click("nav >> text=Usage")
    page.wait_for_selector("svg.chart")
    assert "USD" in page.inner_text("#estimate-total")
    _shot(page, "05b-usage")
    page.click("nav >> text=Integrity")
    page.click("#verify")
    assert "OK" in page.inner_text("#verified")
    _shot(page, "05c-integrity")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(server.endpoint + f"/console/keys/{key_id}")
    _shot(page, "06-key-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.click("#signout")
    page.wait_for_selector("#signed-out")
    page.goto(server.endpoint + "/console/keys")
    assert "/console/signin" in page.url
    _shot(page, "07-signed-out")
    assert outside == [], f"requests left 127.0.0.1: {outside}"
    cookies = page.context.cookies()
    assert not any(ADMIN_SECRET in c["value"] for c in cookies)


def test_wrong_secret_is_refused_in_the_browser(server: Server, browser_page: tuple[Any, list[str]]) -> None:
    page, outside = browser_page
    _sign_in(page, server, secret="not-the-secret-0123456789")
    page.wait_for_selector("#problem")
    assert "not valid" in page.inner_text("#problem")
    assert "/console/signin" in page.url or page.locator("#secret").count() == 1
    _shot(page, "08-wrong-secret")
    assert outside == []


# -- refusals without a browser: the HTTP a hostile page or an old cookie would send ---------------------------

def _signin_csrf(client: httpx.Client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/console/signin").text).group(1)


def _signed_in(server: Server) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.endpoint)
    csrf = _signin_csrf(client)
    answer = client.post("/console/signin", data={"csrf": csrf, "access_key_id": ADMIN_KEY_ID,
                                                  "secret": ADMIN_SECRET, "region": "us-east-1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/keys"
    cookie = answer.headers.get_list("set-cookie")[0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN_SECRET not in cookie
    page = client.get("/console/keys")
    return client, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_missing_csrf_token_is_refused(server: Server) -> None:
    client = httpx.Client(base_url=server.endpoint)
    _signin_csrf(client)  # the cookie half is set; the form half is left out
    refused = client.post("/console/signin", data={"access_key_id": ADMIN_KEY_ID, "secret": ADMIN_SECRET})
    assert refused.status_code == 400 and "CSRF" in refused.text
    assert not any(c.startswith("keyledger_console=") and len(c) > 40 for c in refused.headers.get_list("set-cookie"))
    signed_in, csrf = _signed_in(server)
    for data in ({}, {"csrf": "forged"}, {"csrf": csrf[:-2] + "xx"}):
        answer = signed_in.post("/console/signout", data=data)
        assert answer.status_code == 400 and "CSRF" in answer.text
    assert signed_in.get("/console/keys").status_code == 200  # still signed in: nothing was done


def test_expired_and_forged_sessions_are_refused(server: Server) -> None:
    client, _ = _signed_in(server)
    assert client.get("/console/keys").status_code == 200
    token = client.cookies.get("keyledger_console")
    forged = httpx.Client(base_url=server.endpoint, cookies={"keyledger_console": token[:-4] + "AAAA"})
    assert "not valid" in urllib.parse.unquote_plus(forged.get("/console/keys").headers["location"])
    keyledger(server, "clock", "advance", "--seconds", "3600")  # past the session's 15 minutes
    deadline = time.monotonic() + 30
    while (answer := client.get("/console/keys")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # the server re-reads the clock offset about once a second
    assert answer.status_code == 303
    assert "expired" in urllib.parse.unquote_plus(answer.headers["location"])


def test_every_console_page_is_audited_and_authorized(server: Server) -> None:
    client, _ = _signed_in(server)
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    assert client.get(f"/console/keys/{key_id}").status_code == 200
    # /v1 needs SigV4: a console session cookie is not a credential there.
    assert client.get("/v1/keys").status_code in (400, 403)
    lines = keyledger(server, "audit", "export", "--format", "jsonl", "--key", key_id).splitlines()
    assert any('"eventName": "ConsoleGetKey"' in line and ROOT_ARN in line for line in lines)
    # A principal without IAM permission sees the console refuse, as /v1 would.
    keyledger(server, "principals", "create", f"arn:aws:iam::{ACCOUNT_ID}:user/nobody")
    import json

    created = keyledger(server, "access-keys", "create", "--principal", f"arn:aws:iam::{ACCOUNT_ID}:user/nobody",
                        "--json")
    access_key = json.loads(created)["AccessKey"]
    other = httpx.Client(base_url=server.endpoint)
    csrf = _signin_csrf(other)
    other.post("/console/signin", data={"csrf": csrf, "access_key_id": access_key["AccessKeyId"],
                                        "secret": access_key["SecretAccessKey"], "region": "us-east-1"})
    refused = other.get(f"/console/keys/{key_id}")
    assert refused.status_code == 400 and "AccessDeniedException" in refused.text


def test_docs_work_offline_with_the_sigv4_scheme(server: Server, browser_page: tuple[Any, list[str]]) -> None:
    page, outside = browser_page
    page.goto(server.endpoint + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "keyledger" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/v1/keys/{key}", exact=True).first.wait_for()
    assert page.locator(".authorize").count() >= 1  # the security scheme is there to fill in
    _shot(page, "09-docs")
    assert outside == [], f"/docs made requests off the machine: {outside}"
    schema = httpx.get(server.endpoint + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["sigv4"]["name"] == "Authorization"
    v1 = [op for path, ops in schema["paths"].items() if path.startswith("/v1") for op in ops.values()]
    assert v1 and all(op["security"] == [{"sigv4": []}] for op in v1)
    assert not any(path.startswith("/console") for path in schema["paths"])
