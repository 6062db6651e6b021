"""`vigil web`: the live view an operator keeps open, read from the alerts store.

``/``: the fleet, every series in the store most urgent first (an open incident by its
severity, then the last score against its threshold, the last data's time), each linking to
its page. ``/?source=NAME``: a series' anomaly score with the threshold, and each metric in a
panel of its own (small multiples, each on its own scale), incidents shaded; the URL keeps the
series, the time range shown and the incident opened, so a link can go into a ticket. Click an
incident for its contributing metrics, ranked, the remedies proposed for it (ranked by what has
worked, with the past incidents behind each), and the buttons that record a verdict and the
remedy applied (`tasks.alerts.record_feedback`, with its audit row; the ranker then learns from
it). The page asks for new points every ``web.refresh_seconds`` and extends the plots as
`vigil score` writes them, without a reload. ``/compare``: detectors side by side on one
dataset of the benchmark report (``reports/benchmark_summary.json``). FastAPI (which
Prefect's server brings) and Plotly.js (from the plotly package, served from here: the page
needs no internet). The pages and their scripts are static files (``vigil/static/``); what
comes from data reaches them as JSON only.

What the server accepts (`Guard`), since names in the store come from machines and people
Vigil does not control, and any web page the operator visits can make the browser send
requests here:
- only the hosts it serves in the ``Host`` header (``127.0.0.1``, ``localhost``, ``::1`` and
  ``web.allowed_hosts``; against DNS rebinding), others get 400;
- bodies up to ``MAX_BODY`` bytes with a ``Content-Length`` (413, 411), and a cross-site
  ``Origin`` on a POST gets 403;
- served on an address other than loopback only with ``--expose``, and then only with the
  token printed at start (a ``?token=`` link sets it as a cookie; or ``Authorization: Bearer``);
- every answer carries a Content-Security-Policy that forbids inline script, and frames.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import BackgroundTasks, Query  # module level: FastAPI resolves the handlers' annotations here
from pydantic import BaseModel, ConfigDict, Field

from tasks.alerts import (
    MAX_ID,
    MINUTES_MAX,
    NOTE_MAX,
    SOURCE_MAX,
    VERDICTS,
    WHO_MAX,
    FeedbackError,
    StoreError,
    alerts_of,
    feedback_of,
    fleet,
    incidents_of,
    open_existing_store,
    points_after,
    rankings_of,
    record_feedback,
    sources,
)
from tasks.urls import storage_url
from vigil.config import ConfigError, load_config

MAX_POINTS = 20000  # per request; the page asks again for the rest
MAX_BODY = 16 * 1024  # bytes in a request body: a verdict with the longest note is under 10 KiB
STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)  # styles inline: Plotly sets them on its own elements; scripts only from the files served here
TOKEN_COOKIE = "vigil_token"


class Verdict(BaseModel):
    """What the page's buttons send (`tasks.alerts.record_feedback` checks it again)."""

    model_config = ConfigDict(extra="forbid")
    incident: int = Field(ge=1, le=MAX_ID)
    verdict: str = Field(max_length=20)
    who: str = Field(max_length=WHO_MAX)
    remedy: str | None = Field(None, max_length=100)
    resolved: bool | None = None
    minutes: float | None = Field(None, ge=0, le=MINUTES_MAX)
    note: str | None = Field(None, max_length=NOTE_MAX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The host a ``Host`` header names, without its port, lower case (``[::1]:8050`` -> ``::1``)."""
    try:
        return urlsplit("//" + header).hostname
    except ValueError:
        return None


class Guard:
    """ASGI middleware in front of the app: the checks listed in the module's docstring, and
    the security headers on every answer."""

    def __init__(self, app, allowed_hosts, token: str | None = None):
        self.app, self.allowed, self.token = app, frozenset(h.lower() for h in allowed_hosts), token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse, RedirectResponse

        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is None and self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [None])[0]
            if given is not None and scope["method"] == "GET" and self._same(given):
                rest = urlencode([(k, v) for k, vs in query.items() if k != "token" for v in vs])
                here = "/" + scope["path"].lstrip("/")  # never "//host": the redirect stays on this server
                answer = RedirectResponse(here + (f"?{rest}" if rest else ""), status_code=303)
                answer.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
                return await answer(scope, receive, self._with_headers(send))
            if not self._authorised(headers):
                refusal = (401, "token required: open the address `vigil web` printed at start")
        if refusal is not None:
            status, text = refusal
            return await PlainTextResponse(text, status_code=status)(scope, receive, self._with_headers(send))
        await self.app(scope, receive, self._with_headers(send))

    def refusal(self, scope, headers) -> tuple[int, str] | None:
        if host_name(headers.get("host", "")) not in self.allowed:
            return 400, "this server does not serve that host name (web.allowed_hosts lists those it serves)"
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and host_name(urlsplit(origin).netloc) not in self.allowed:
                return 403, "cross-site request refused"
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                return 411, "a request body needs a Content-Length"
            if int(length) > MAX_BODY:
                return 413, f"request body over {MAX_BODY} bytes"
        return None

    def _same(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _authorised(self, headers) -> bool:
        from starlette.requests import cookie_parser

        bearer = headers.get("authorization", "")
        if bearer.startswith("Bearer ") and self._same(bearer.removeprefix("Bearer ")):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)
        return cookie is not None and self._same(cookie)

    @staticmethod
    def _with_headers(send):
        async def sending(message):
            if message["type"] == "http.response.start":
                from starlette.datastructures import MutableHeaders

                h = MutableHeaders(scope=message)
                h["Content-Security-Policy"] = CSP
                h["X-Content-Type-Options"] = "nosniff"
                h["X-Frame-Options"] = "DENY"
                h["Referrer-Policy"] = "no-referrer"
                h.setdefault("Cache-Control", "no-store")
            await send(message)

        return sending


def make_app(
    store_url: str,
    report: Path,
    refresh_seconds: float,
    remedies: list[str] | None = None,
    on_feedback=None,
    who: str = "",
    allowed_hosts=LOOPBACK_HOSTS,
    token: str | None = None,
):
    """``remedies``: the catalogue's names (a reported remedy must be one); ``on_feedback``:
    called with the store's engine after a verdict is stored, in the background (the ranker's
    update); ``who``: the operator name the page offers first; ``allowed_hosts``: the host
    names it answers to; ``token``: where set, every request must carry it. The store must
    exist (`vigil score` makes it): a missing or replaced store is refused by name."""
    import plotly
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, JSONResponse

    store = open_existing_store(store_url)
    engine = store.engine
    app = FastAPI(title="Vigil", docs_url=None, redoc_url=None, openapi_url=None)
    files = {  # the only files served: nothing from a path in the request
        "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
        **{name: STATIC / name for name in ("dom.js", "live.js", "fleet.js", "compare.js", "vigil.css")},
    }

    @app.exception_handler(StoreError)
    def store_failed(request, exc: StoreError):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/")
    def live(source: str | None = Query(None, max_length=SOURCE_MAX)):
        """The fleet (every series, most urgent first); with ``?source=``, that series' page
        (``&incident=``, ``&from=``, ``&to=``: what it opens on, as a pasted link says)."""
        page = "fleet.html" if source is None else "live.html"
        return FileResponse(STATIC / page, media_type="text/html")

    @app.get("/compare")
    def compare():
        return FileResponse(STATIC / "compare.html", media_type="text/html")

    @app.get("/static/{name}")
    def static_file(name: str):
        if name not in files:
            raise HTTPException(404, "no such file")
        return FileResponse(files[name])

    @app.get("/api/config")
    def api_config() -> dict:
        return {
            "refresh_ms": int(refresh_seconds * 1000),
            "verdicts": list(VERDICTS),
            "remedies": list(remedies or []),
            "who": who,
        }

    @app.get("/api/sources")
    def api_sources() -> list[dict]:
        with store.connect() as conn:
            return sources(conn)

    @app.get("/api/fleet")
    def api_fleet() -> list[dict]:
        with store.connect() as conn:
            return fleet(conn)

    @app.get("/api/points")
    def api_points(
        source: str = Query(max_length=SOURCE_MAX),
        after: int = Query(0, ge=0, le=MAX_ID),
        limit: int = Query(MAX_POINTS, ge=1, le=MAX_POINTS),
    ) -> list[dict]:
        with store.connect() as conn:
            return points_after(conn, source, after, limit)

    @app.get("/api/incidents")
    def api_incidents(source: str = Query(max_length=SOURCE_MAX)) -> list[dict]:
        with store.connect() as conn:
            return incidents_of(conn, source)

    @app.get("/api/alerts")
    def api_alerts(incident: int = Query(ge=1, le=MAX_ID)) -> list[dict]:
        with store.connect() as conn:
            return alerts_of(conn, incident)

    @app.get("/api/remedies")
    def api_remedies(incident: int = Query(ge=1, le=MAX_ID)) -> dict:
        """The remedies proposed for the incident, and every verdict on it, oldest first."""
        with store.connect() as conn:
            return {"ranking": rankings_of(conn, [incident]).get(incident), "feedback": feedback_of(conn, incident)}

    @app.post("/api/feedback")
    def api_feedback(v: Verdict, background: BackgroundTasks) -> dict:
        store.check()
        try:
            fid = record_feedback(
                engine,
                v.incident,
                v.verdict,
                v.who,
                remedy=v.remedy or None,
                resolved=v.resolved,
                minutes=v.minutes,
                note=v.note or None,
                remedies=remedies,
            )
        except FeedbackError as exc:
            raise HTTPException(400, str(exc)) from None
        if on_feedback is not None:
            background.add_task(on_feedback, engine)
        return {"id": fid}

    @app.get("/api/benchmark")
    def api_benchmark() -> dict:
        if not report.is_file():
            raise HTTPException(404, f"no benchmark report at {report}: run `vigil benchmark`")
        data = json.loads(report.read_text())
        return {k: data[k] for k in ("datasets", "summary", "meta", "series")}

    return Guard(app, allowed_hosts, token)


def serving_plan(host: str, expose: bool, configured_hosts: list[str]) -> tuple[list[str], str | None]:
    """The host names the server answers to and its token (None on loopback). Another address
    than loopback needs ``expose``: the alerts and the verdict buttons would reach that network."""
    hosts = [*LOOPBACK_HOSTS, *configured_hosts]
    if is_loopback(host):
        return hosts + [host], None
    if not expose:
        raise ConfigError(
            f"web: serving on {host} would show the alerts and take verdicts from that network; "
            "give --expose to mean it (a token is then required), or serve on 127.0.0.1"
        )
    token = os.environ.get("VIGIL_WEB_TOKEN") or secrets.token_urlsafe(24)
    if len(token) < 16 or not token.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("VIGIL_WEB_TOKEN: at least 16 characters, letters, digits, - and _ only")
    if not _is_wildcard(host):  # every address: the names it is reached by are web.allowed_hosts
        hosts.append(host)
    return hosts, token


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from vigil.entry import run_entry

    return run_entry(lambda: serve_web(args), runs_flows=False)


def serve_web(args: argparse.Namespace) -> str:
    import getpass
    import threading

    import uvicorn

    from tasks.remedies import remedy_settings
    from vigil.workspace import Workspace

    from .feedback import update_ranker

    cfg = load_config(args.params)
    root = Path.cwd()  # the checkout, as for `vigil score`: a relative SQLite store is its
    host, port = args.host or cfg.web.host, args.port or cfg.web.port
    hosts, token = serving_plan(host, args.expose, cfg.web.allowed_hosts)
    store = storage_url(cfg.scoring.store, root, make_folder=False)
    settings = remedy_settings(cfg.remedies, root)
    one_at_a_time = threading.Lock()  # two verdicts in quick succession: one registration each, in turn

    def learn(engine) -> None:  # the ranker for the feedback now in force, registered where it is new
        with one_at_a_time:
            update_ranker(cfg, Workspace.at(root), engine, settings)

    app = make_app(
        store,
        root / "reports" / "benchmark_summary.json",
        cfg.web.refresh_seconds,
        remedies=settings.names,
        on_feedback=learn,
        who=cfg.feedback.who or getpass.getuser(),
        allowed_hosts=hosts,
        token=token,
    )
    shown = f"[{host}]" if ":" in host else host
    print(f"Vigil live view on http://{shown}:{port}/ (detectors compared: /compare); Ctrl-C stops", flush=True)
    print(f"answers to the host names {', '.join(hosts)} (web.allowed_hosts adds more)", flush=True)
    if token is not None:
        print(
            f"exposed beyond this machine: every request needs the token; open http://{shown}:{port}/?token={token} "
            "(or send 'Authorization: Bearer <token>'; VIGIL_WEB_TOKEN sets it)",
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return "vigil web stopped"
