"""The page at /ui in a real headless Chromium (Debian's ``chromium``, driven by Playwright for
Python; never a browser Playwright downloads) against a real ``fnagent serve``.

One server for the module (the browser tests are slow); the token test starts its own. With
``FNAGENT_UI_SCREENSHOTS=<dir>`` (``make screenshots``: ``docs``) the tests save the README's
screenshots of the views they reach there; otherwise into a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from drivers.docker import INSTANCE_LABEL
from tests.helpers import wait_for
from tests.system.helpers import FN_HELLO, FN_TEST, new_instance_id, require_image
from tests.system.server import Server, make_server

TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for the page's tests: run `make test-tools`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@contextlib.contextmanager
def started(
    tmp_path: Path, docker_api: docker.APIClient, *args: str, token: str | None = None
) -> Iterator[Server]:
    """A ``fnagent serve`` with an instance label of its own; on the way out it must exit 0
    and leave no container."""
    require_image(docker_api, FN_TEST)
    require_image(docker_api, FN_HELLO)
    instance = new_instance_id()  # its own: a server sweeps its label at start
    made = make_server(tmp_path, {"FNAGENT_INSTANCE_ID": instance}, *args, token=token)
    if token:
        made.env["FN_TOKEN"] = token
    made.start()
    try:
        yield made
    finally:
        code = made.stop() if made.process is not None else 0
        left = docker_api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"})
        for container in left:
            docker_api.remove_container(container["Id"], force=True, v=True)
        assert code == 0 and not left, (code, [c["Names"] for c in left])


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, docker_api: docker.APIClient
) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("ui"), docker_api, "--prefork", "2") as made:
        yield made


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("FNAGENT_UI_SCREENSHOTS")
    if not where:
        return tmp_path_factory.mktemp("shots")
    Path(where).mkdir(parents=True, exist_ok=True)
    return Path(where)


def ok(server: Server, method: str, path: str, body: Any = None) -> Any:
    answer = server.request(method, path, body)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()


def make_fn(server: Server, app_name: str, fn_name: str, image: str = FN_TEST) -> dict[str, Any]:
    app = ok(server, "POST", "/v2/apps", {"name": app_name})
    fn: dict[str, Any] = ok(
        server, "POST", "/v2/fns", {"app_id": app["id"], "name": fn_name, "image": image}
    )
    return fn


def open_fn(page: Page, server: Server, app_name: str, fn_name: str) -> None:
    page.goto(server.url + "/ui")
    app = page.locator("#tree li.app", has=page.get_by_role("button", name=app_name, exact=True))
    app.get_by_role("button", name=fn_name, exact=True).click()
    expect(page.locator("#detail h2")).to_contain_text(fn_name)


def test_the_page_shows_what_the_api_made_and_the_api_what_the_page_made(
    server: Server, page: Page, shots: Path
) -> None:
    fn = make_fn(server, "shop", "checkout")
    ok(
        server,
        "POST",
        "/v2/triggers",
        {
            "app_id": fn["app_id"],
            "fn_id": fn["id"],
            "name": "pay",
            "type": "http",
            "source": "/pay",
        },
    )
    page.goto(server.url + "/ui")
    tree = page.locator("#tree")
    expect(tree.get_by_role("button", name="shop", exact=True)).to_be_visible()
    expect(tree.get_by_role("button", name="checkout", exact=True)).to_be_visible()
    expect(tree.get_by_role("button", name="/pay", exact=True)).to_be_visible()

    tree.get_by_role("button", name="shop", exact=True).click()
    new_fn = page.locator("#new-fn")
    new_fn.get_by_label("name", exact=True).fill("refund")
    new_fn.get_by_label("image").fill(FN_TEST)
    # The API's validation message, shown in the form as the API words it.
    new_fn.get_by_label("memory (MB)").fill("999999")
    refused = server.request(
        "POST",
        "/v2/fns",
        {"app_id": fn["app_id"], "name": "refund", "image": FN_TEST, "memory": 999999},
    )
    assert refused.status == 400
    new_fn.get_by_role("button", name="Create fn").click()
    expect(new_fn.get_by_role("alert")).to_have_text(refused.message)

    new_fn.get_by_label("memory (MB)").fill("64")
    new_fn.get_by_label("config (JSON)").fill('{"MODE": "refund"}')
    new_fn.get_by_role("button", name="Create fn").click()
    expect(page.locator("#detail h2")).to_contain_text("refund")
    listed = ok(server, "GET", f"/v2/fns?app_id={fn['app_id']}")["items"]
    made = next(item for item in listed if item["name"] == "refund")
    assert made["memory"] == 64 and made["config"] == {"MODE": "refund"}
    # Until a call lands (or without call records at all) the panel says so, and breaks not.
    expect(page.locator("#fn-calls")).to_have_text("no calls recorded")

    # Edited in the page: a config key removed from the text is removed (Fn merges keys).
    edit = page.locator("#edit-fn")
    edit.get_by_label("memory (MB)").fill("256")
    edit.get_by_label("config (JSON)").fill('{"OTHER": "1"}')
    edit.get_by_role("button", name="Save fn").click()
    wait_for(lambda: ok(server, "GET", f"/v2/fns/{made['id']}")["memory"] == 256, "the fn's update")
    assert ok(server, "GET", f"/v2/fns/{made['id']}")["config"] == {"OTHER": "1"}
    edit = page.locator("#edit-fn")
    # The page rebuilds the form from the server's answer after a save (the config comes
    # back pretty-printed): wait for that before typing into it again.
    expect(edit.get_by_label("config (JSON)")).to_have_value('{\n  "OTHER": "1"\n}')
    expect(edit.get_by_label("memory (MB)")).to_have_value("256")
    edit.get_by_label("timeout (s)", exact=True).fill("99999")
    edit.get_by_role("button", name="Save fn").click()
    expect(edit.get_by_role("alert")).to_contain_text("timeout")

    # Deleted in the page (a second click confirms).
    tree.get_by_role("button", name="/pay", exact=True).click()
    remove = page.get_by_role("button", name="Delete trigger")
    remove.click()
    page.get_by_role("button", name="Really delete trigger?").click()
    expect(tree.get_by_role("button", name="/pay", exact=True)).to_have_count(0)
    assert ok(server, "GET", f"/v2/triggers?app_id={fn['app_id']}")["items"] == []

    page.locator("#tree").get_by_role("button", name="shop", exact=True).click()
    page.screenshot(path=str(shots / "ui-app.png"), full_page=True)


def calls_for_the_charts(server: Server, fn_id: str, seconds: float = 4) -> None:
    """Calls of a few durations, spread over some seconds, as the page watches."""
    deadline = time.monotonic() + seconds
    sleeps = [0, 2, 5, 10, 40]
    while time.monotonic() < deadline:
        for sleep_ms in sleeps:
            server.request("POST", f"/invoke/{fn_id}", {"sleep_ms": sleep_ms})


def test_an_invoke_from_the_page_shows_the_response(
    server: Server, page: Page, shots: Path
) -> None:
    make_fn(server, "greetings", "hello", image=FN_HELLO)
    fn = make_fn(server, "tools", "echo")
    open_fn(page, server, "greetings", "hello")
    traffic = threading.Thread(target=calls_for_the_charts, args=(server, fn["id"]))
    traffic.start()
    page.locator("#invoke-body").fill('{"name": "browser"}')
    page.get_by_role("button", name="Invoke").click()
    result = page.locator("#invoke-result")
    expect(result.locator(".http-status")).to_have_text("200 OK")
    expect(result.locator("pre.body")).to_contain_text("Hello, browser!")
    call_id = result.locator(".call-id").inner_text()
    expect(result.locator("table.headers")).to_contain_text(call_id)  # its Fn-Call-Id header
    expect(page.locator("#fn-containers [data-state=frozen]")).to_have_text("1")
    traffic.join(timeout=60)
    # Percentiles of the last 10 s of calls, as numbers.
    expect(page.locator("#now-latency")).to_have_text(re.compile(r"now [0-9.]+ / [0-9.]+ / "))
    page.screenshot(path=str(shots / "ui-fn.png"), full_page=True)

    # The headers the form sends reach the function, and a function's answer is text.
    open_fn(page, server, "tools", "echo")
    page.locator("#invoke-body").fill('{"echo": "<b id=injected>x</b>"}')
    page.locator("#invoke-headers").fill("Content-Type: application/json\nX-From-Ui: yes")
    page.get_by_role("button", name="Invoke").click()
    expect(result.locator("pre.body")).to_contain_text('"x-from-ui": "yes"')
    expect(page.locator("#injected")).to_have_count(0)


def test_container_states_change_on_the_page_without_a_reload(server: Server, page: Page) -> None:
    fn = make_fn(server, "slow", "sleeper")
    open_fn(page, server, "slow", "sleeper")
    page.evaluate("window.notReloaded = true")
    states = page.locator("#fn-containers")
    expect(states.locator("[data-state=running]")).to_have_text("0")

    answers: list[int] = []
    call = threading.Thread(
        target=lambda: answers.append(
            server.request("POST", f"/invoke/{fn['id']}", {"sleep_ms": 8000}).status
        )
    )
    call.start()
    try:
        expect(states.locator("[data-state=running]")).to_have_text("1")
        expect(states.locator("[data-state=frozen]")).to_have_text("0")
        expect(states.locator("[data-state=frozen]")).to_have_text("1")
        expect(states.locator("[data-state=running]")).to_have_text("0")
    finally:
        call.join(timeout=60)
    assert answers == [200]
    assert page.evaluate("window.notReloaded") is True


def test_an_invoke_from_the_page_lands_in_recent_calls_with_its_log(
    server: Server, page: Page
) -> None:
    make_fn(server, "records", "logger")
    open_fn(page, server, "records", "logger")
    # Output comes through Docker's attached streams, which may trail the answer: the call
    # takes a moment after printing, so its line is in its log.
    page.locator("#invoke-body").fill('{"stderr": "a line for the log", "sleep_ms": 300}')
    page.get_by_role("button", name="Invoke").click()
    call_id = page.locator("#invoke-result .call-id").inner_text()

    row = page.locator(f'#fn-calls tr[data-call="{call_id}"]')
    expect(row.locator(".call-status")).to_have_text("success")
    expect(row.locator(".call-start")).to_have_text("cold")
    expect(page.locator(f'#calls tr[data-call="{call_id}"]')).to_be_visible()
    row.get_by_role("link", name="log").click()
    expect(page.locator("#log-text")).to_contain_text("a line for the log")


def test_with_a_token_the_page_is_a_login_form_until_it_has_the_token(
    tmp_path: Path, docker_api: docker.APIClient, browser: Browser, shots: Path
) -> None:
    token = "ui-test-token"
    with started(tmp_path, docker_api, "--prefork", "0", token=token) as guarded:
        fn = make_fn(guarded, "private", "probe")
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(guarded.url + "/ui")
            login = page.locator("#login")
            expect(login).to_be_visible()
            page.screenshot(path=str(shots / "ui-login.png"), full_page=True)
            expect(page.locator("#app")).to_be_empty()
            assert "private" not in page.content()
            # What the page would run next is not served without the token.
            src = page.locator("script[data-dashboard]").get_attribute("data-dashboard")
            anonymous = guarded.request("GET", str(src), headers={"Authorization": "none"})
            assert anonymous.status == 401

            login.get_by_label("Token").fill("wrong")
            login.get_by_role("button", name="Sign in").click()
            expect(login.get_by_role("alert")).to_have_text("Wrong token.")
            expect(page.locator("#app")).to_be_empty()

            login.get_by_label("Token").fill(token)
            login.get_by_role("button", name="Sign in").click()
            expect(page.locator("#tree").get_by_role("button", name="private")).to_be_visible()
            expect(login).to_be_hidden()
            page.reload()  # the token lasts the browser session
            expect(page.locator("#tree").get_by_role("button", name="probe")).to_be_visible()

            # /invoke needs no token on this server, so the page does not send it: a
            # function sees every header of a call the server does not check.
            page.locator("#tree").get_by_role("button", name="probe").click()
            page.get_by_role("button", name="Invoke").click()
            body = page.locator("#invoke-result pre.body")
            expect(body).to_contain_text('"ok": true')
            assert token not in body.inner_text()
            assert fn["id"] in page.locator("#endpoints").inner_text()
        finally:
            context.close()
