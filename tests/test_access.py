"""One access rule for every door (``rag.access``), proved by walking every route the app has.

The walk enumerates FastAPI's routes and, through every mount, Gradio's (and any sub-app mounted
later, such as ``/mcp``): a route added tomorrow is walked tomorrow without touching this file.
It runs under the four configurations: no credentials, key only, login only, both.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from rag import access, server
from tests import test_app_browser
from tests.support.api_server import ServerThread

browser = test_app_browser.browser  # Chromium, for the one browser test here

KEY = "chiave-segreta-di-prova"
USER, PASSWORD = "redazione", "parola-d-ordine"
CONFIGS = {"none": {}, "key": {"key": KEY}, "login": {"user": USER, "password": PASSWORD},
           "both": {"key": KEY, "user": USER, "password": PASSWORD}}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def walk(routes: list, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every HTTP route, through every mount, path parameters filled."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.165 keeps include_router's routers
        if included is not None:
            yield from walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is None:  # a plain ASGI sub-app: its mount point stands for all of it
                yield "GET", prefix + route.path + "/"
            else:
                yield from walk(inner, prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", prefix + _fill(route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield method, prefix + _fill(route.path)


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path) or "/"


def _status(c: httpx.Client, method: str, path: str, headers: dict[str, str]) -> int:
    """401 or 429 when the gate refused the request (its error codes tell it from a route's own
    401); 200 for anything that got past the gate, including a response that streams on."""
    if method == "WEBSOCKET":
        method = "GET"
    try:
        with c.stream(method, path, headers=headers, timeout=3) as r:
            if r.status_code in (401, 429):
                r.read()
                code = (r.json().get("error") or {}).get("code") if "json" in r.headers.get("content-type", "") else ""
                if code in ("invalid_api_key", "too_many_failures"):
                    return r.status_code
            return 200
    except httpx.TimeoutException:
        return 200


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """One server per configuration over one small library."""
    from rag.library import Library
    from tests.conftest import HashEmbedder, make_config

    home = tmp_path_factory.mktemp("access") / "home"
    lib = Library(make_config(home), embedder=HashEmbedder())
    lib.ingest_articles([], [])
    running: dict[str, tuple[ServerThread, access.Policy]] = {}
    for name, creds in CONFIGS.items():
        policy = access.Policy(**creds)
        running[name] = (ServerThread(server.build_app(lib, policy=policy)).__enter__(), policy)
    yield lib, running
    for srv, _ in running.values():
        srv.stop()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_route_follows_the_one_rule(apps, config):
    lib, running = apps
    srv, policy = running[config]
    app = srv.server.config.app
    routes = sorted(set(walk(app.routes)))
    paths = {p for _, p in routes}
    assert {"/api/v1/ask", "/v1/chat/completions", "/gradio_api/upload", "/api/v1/articles/x"} <= paths
    assert any(p.startswith("/gradio_api/") for p in paths) and len(routes) > 40
    good: list[dict[str, str]] = []
    if policy.key:
        good.append({"Authorization": f"Bearer {KEY}"})
    if policy.user:
        good.append({"Authorization": _basic(USER, PASSWORD)})
    wrong = [{"Authorization": "Bearer sbagliata"}, {"Authorization": _basic(USER, "sbagliata")}]
    with httpx.Client(base_url=srv.url) as c:
        for method, path in routes:
            policy.throttle = access.Throttle()
            anonymous = _status(c, method, path, {})
            if not policy.required:
                assert anonymous not in (401, 429), (method, path)
                continue
            if access.is_public(path):
                assert anonymous == 200, (method, path)
            else:
                assert anonymous == 401, (method, path, anonymous)
            for headers in wrong:
                policy.throttle = access.Throttle()
                assert _status(c, method, path, headers) == 401, (method, path, headers)
            for headers in good:
                assert _status(c, method, path, headers) not in (401, 429), (method, path, headers)


@pytest.mark.parametrize("config", ["key", "login", "both"])
def test_what_is_open_says_nothing_about_the_store(apps, config):
    lib, running = apps
    srv, policy = running[config]
    with httpx.Client(base_url=srv.url) as c:
        health = c.get("/api/v1/health")
        assert health.status_code == 200 and set(health.json()) == {"status", "store", "llm"}
        assert health.json()["store"] == {"ok": True}
        page = c.get("/")
        assert page.status_code == 200 and '"auth_required":true' in page.text
        assert '"components":[]' in page.text  # the login form, not the page
        assert str(lib.home) not in health.text + page.text


@pytest.mark.parametrize("config", ["login", "both", "key"])
def test_a_page_login_opens_the_api_for_that_browser(apps, config):
    _, running = apps
    srv, policy = running[config]
    user, password = (USER, PASSWORD) if policy.user else ("chiunque", KEY)  # key only: the key is the password
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/api/v1/stats").status_code == 401
        assert c.post("/login", data={"username": user, "password": password}).status_code == 200
        assert c.get("/api/v1/stats").status_code == 200
        assert c.get("/config").status_code == 200
        assert c.post("/v1/chat/completions", json={"model": "cronaca", "messages": []}).status_code != 401


def test_failed_logins_are_throttled_per_client():
    clock = [0.0]
    throttle = access.Throttle(free=3, first=2.0, cap=60.0, clock=lambda: clock[0])
    for _ in range(2):
        throttle.failed("1.2.3.4")
    assert throttle.wait("1.2.3.4") == 0  # three tries at once
    throttle.failed("1.2.3.4")
    assert throttle.wait("1.2.3.4") == 2.0
    throttle.failed("1.2.3.4")
    assert throttle.wait("1.2.3.4") == 4.0  # doubling
    assert throttle.wait("5.6.7.8") == 0  # another client is not affected
    clock[0] = 10.0
    assert throttle.wait("1.2.3.4") == 0
    throttle.succeeded("1.2.3.4")
    throttle.failed("1.2.3.4")
    assert throttle.wait("1.2.3.4") == 0  # a success forgets the failures


def test_the_login_form_and_the_key_are_throttled_over_http(apps):
    _, running = apps
    srv, policy = running["both"]
    policy.throttle = access.Throttle()
    with httpx.Client(base_url=srv.url) as c:
        answers = [c.post("/login", data={"username": USER, "password": f"tentativo-{i}"}).status_code
                   for i in range(access.FREE_FAILURES + 1)]
        assert answers[:access.FREE_FAILURES] == [400] * access.FREE_FAILURES and answers[-1] == 429
        locked = c.post("/login", data={"username": USER, "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1  # even the right one waits
        assert json.loads(locked.text)["error"]["code"] == "too_many_failures"
        assert c.get("/api/v1/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 429
    policy.throttle = access.Throttle()


def test_an_open_bind_needs_credentials_or_insecure():
    none, keyed = access.Policy(), access.Policy(key=KEY)
    assert access.refuse_open_bind("127.0.0.1", none, False) == ""
    assert access.refuse_open_bind("::1", none, False) == "" and access.refuse_open_bind("localhost", none, False) == ""
    assert "--insecure" in access.refuse_open_bind("0.0.0.0", none, False)
    assert access.refuse_open_bind("0.0.0.0", keyed, False) == ""
    assert access.refuse_open_bind("192.168.1.10", none, True) == ""


def test_policy_from_the_environment():
    policy = access.Policy.from_env({"CRONACA_AUTH": f"{USER}:{PASSWORD}", "CRONACA_API_KEY": KEY})
    assert (policy.user, policy.password, policy.key, policy.required) == (USER, PASSWORD, KEY, True)
    assert not access.Policy.from_env({}).required
    with pytest.raises(SystemExit, match="user:password"):
        access.Policy.from_env({"CRONACA_AUTH": "senza-password"})


def test_gradio_client_cannot_make_the_server_read_its_own_files(hash_sample, tmp_path, monkeypatch):
    """Issue 19, reproduced as reported: a FileData path the client never uploaded is refused,
    while a real upload through the same endpoint is stored.

    gradio_client uploads a path it can read itself before sending it; an attacker's client does
    not, so the client's upload step is skipped here and the server path goes out as is — the
    same request as the raw HTTP call below."""
    from gradio_client import Client, handle_file
    from gradio_client.client import Endpoint

    lib = hash_sample()
    secret = tmp_path / "credenziali.json"
    secret.write_text(json.dumps({"title": "Credenziali", "date": "2025-01-01",
                                  "text": "Il server usa la password hunter2 per il database. " * 5}))
    secret.chmod(0o600)
    payload = [{"path": str(secret), "meta": {"_type": "gradio.FileData"}, "orig_name": "x.json"}]
    with ServerThread(server.build_app(lib, policy=access.Policy())) as srv:
        c = Client(srv.url + "/", verbose=False)
        with monkeypatch.context() as hostile:
            hostile.setattr(Endpoint, "_upload_file", lambda self, f, data_index: f)
            with pytest.raises(Exception) as info:
                c.predict(payload, "", "__tutte__", "", api_name="/upload")
        assert "hunter2" not in str(info.value)
        started = httpx.post(srv.url + "/gradio_api/call/upload", json={"data": [payload, "", "__tutte__", ""]})
        events = httpx.get(srv.url + f"/gradio_api/call/upload/{started.json()['event_id']}", timeout=60).text
        assert "event: error" in events and "hunter2" not in events
        assert not [a for a in lib.articles() if a.title == "Credenziali"]
        mine = tmp_path / "mia-notizia.md"
        mine.write_text("---\ntitle: Notizia caricata\ndate: 2025-02-02\n---\nIl consiglio approva il bilancio.\n")
        c.predict([handle_file(str(mine))], "", "__tutte__", "", api_name="/upload")
    titles = [a.title for a in lib.articles()]
    assert "Notizia caricata" in titles and "Credenziali" not in titles


@pytest.mark.browser
@pytest.mark.parametrize("config", ["login", "key"])
def test_the_login_form_works_through_the_gate_in_a_browser(browser, sample_lib, config):
    """Chromium against the real server: the login form renders with nothing but its public
    routes, and logging in (with the password, or with the key when only a key is set) opens
    the whole page."""
    from tests.test_app_browser import archive_count, wait_loaded

    creds = CONFIGS[config]
    user, password = (USER, PASSWORD) if config == "login" else ("redazione", KEY)
    with ServerThread(server.build_app(sample_lib, policy=access.Policy(**creds))) as srv:
        context = browser.new_context(locale="it-IT")
        pg = context.new_page()
        refused: list[str] = []
        pg.on("response", lambda r: refused.append(r.url) if r.status in (401, 429) else None)
        pg.goto(srv.url, wait_until="load")
        pg.locator("input[type=password]").wait_for(timeout=30_000)
        assert not [u for u in refused if "login_check" not in u], refused
        pg.locator("input[type=text], input:not([type])").first.fill(user)
        pg.locator("input[type=password]").fill(password)
        pg.locator("button", has_text=re.compile("Accedi|Login")).click()
        wait_loaded(pg)
        assert archive_count(pg) == len(sample_lib.articles())
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        with httpx.Client(base_url=srv.url, cookies=cookies) as c:  # the page's session opens the API
            assert c.get("/api/v1/stats").status_code == 200
        context.close()
