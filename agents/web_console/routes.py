"""The console's HTTP routes (aiohttp): the page at ``/``, its static files, and the JSON API
under ``/console/api/`` (docs in README "Web console"). Every API answer needs the token;
every answer is built from names, numbers and masked text only (a test loads each one and
searches it for every setting's value)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from agents.web_console.backends import Backend, describe
from agents.web_console.token import TOKEN_HEADER, ConsoleToken
from streams.console_runs import RecentRuns, run_lead
from streams.masking import Masker
from streams.problems import FlowFileError

log = logging.getLogger("leadstreams.console")

STATIC_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# The page loads nothing from elsewhere and runs no inline script: a lead's text shown on it
# cannot become code even if a bug rendered it as HTML.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_file(name: str) -> bytes:
    return resources.files("agents.web_console").joinpath("static", name).read_bytes()


def answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=SECURITY_HEADERS)  # fmt: skip


def refuse(status: int, message: str) -> web.Response:
    return answer({"error": message}, status)


class ConsoleRoutes:
    def __init__(self, backend: Backend, token: ConsoleToken) -> None:
        self.backend = backend
        self.token = token
        self.runs = RecentRuns()

    def routes(self) -> list[web.RouteDef]:
        api = "/console/api"
        return [
            web.get("/", self.page),
            web.get("/console/static/{name}", self.static),
            web.get(f"{api}/overview", self.guarded(self.overview)),
            web.get(f"{api}/stats", self.guarded(self.stats)),
            web.get(f"{api}/problems", self.guarded(self.problems)),
            web.get(f"{api}/problems/{{id}}", self.guarded(self.problem)),
            web.post(f"{api}/try", self.guarded(self.try_lead)),
            web.post(f"{api}/cases", self.guarded(self.save_case)),
        ]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=static_file("index.html"), content_type="text/html",
                            headers=SECURITY_HEADERS)  # fmt: skip

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_TYPES or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=static_file(name), content_type=STATIC_TYPES[name], headers=SECURITY_HEADERS)

    def guarded(self, handler: Any) -> Any:
        async def checked(request: web.Request) -> web.Response:
            if not self.token.accepts(request.headers.get(TOKEN_HEADER)):
                return refuse(401, f"the console's token is missing or wrong (header {TOKEN_HEADER}; the "
                                   "worker printed the page's address with it at start)")  # fmt: skip
            response: web.Response = await handler(request)
            return response

        return checked

    async def overview(self, request: web.Request) -> web.Response:
        loaded = self.backend.loaded()
        off = self.backend.test_console_off()
        return answer({
            "mode": self.backend.mode,
            "test_console": off is None,
            "test_console_off_reason": off,
            "flows": [masked_view(describe(path, flow), flow.secrets) for path, flow in loaded.flows.items()],
            "rejected": [{"file": path, "problems": problems} for path, problems in loaded.rejected.items()],
        })  # fmt: skip

    async def stats(self, request: web.Request) -> web.Response:
        stats = self.backend.stats()
        if stats is None:
            return refuse(404, "no worker here: `leadstreams console` serves the test console only")
        return answer(stats)

    async def problems(self, request: web.Request) -> web.Response:
        kept = self.backend.problems
        if kept is None:
            return refuse(404, "no worker here: `leadstreams console` serves the test console only")
        return answer({"problems": kept.newest_first(), "kept": kept.keep})

    async def problem(self, request: web.Request) -> web.Response:
        kept = self.backend.problems
        if kept is None:
            return refuse(404, "no worker here: `leadstreams console` serves the test console only")
        try:
            problem_id = int(request.match_info["id"])
        except ValueError:
            return refuse(400, "a problem's id is a number")
        event = kept.event(problem_id)
        if event is None:
            return refuse(404, f"problem {problem_id} is no longer kept (the last {kept.keep} are)")
        return answer(event)

    async def test_console_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The JSON object of a test console request, or the refusal to answer."""
        off = self.backend.test_console_off()
        if off is not None:
            return refuse(403, off)
        return await json_body(request)

    async def try_lead(self, request: web.Request) -> web.Response:
        body = await self.test_console_body(request)
        if isinstance(body, web.Response):
            return body
        lead, name = body.get("lead"), body.get("flow")
        if not isinstance(lead, dict):
            return refuse(400, "the lead must be a JSON object")
        flows = {flow.name: flow for flow in self.backend.loaded().flows.values()}
        flow = flows.get(name) if isinstance(name, str) else None
        if flow is None:
            return refuse(404, f"no flow {name!r} here (flows: {', '.join(sorted(flows)) or 'none'})")
        log.info("test console: lead %r through flow %r", str(lead.get("id", "?")), flow.name)
        run = await run_lead(flow, lead)
        return answer({"run": self.runs.add(run), "report": run.report(verbose=True)})

    async def save_case(self, request: web.Request) -> web.Response:
        body = await self.test_console_body(request)
        if isinstance(body, web.Response):
            return body
        run = self.runs.get(str(body.get("run")))
        if run is None:
            return refuse(404, "that run is no longer kept (the last 20 are): send the lead again")
        name = body.get("name") or None
        if name is not None and not isinstance(name, str):
            return refuse(400, "a case's name is text")
        try:
            saved = run.save(name, self.backend.env)
        except FlowFileError as exc:
            problems = "; ".join(str(problem) for problem in exc.problems)
            return refuse(409, f"not saved: the cases file has problems: {problems}")
        except OSError as exc:
            return refuse(409, f"not saved: cannot write the cases file: {exc.strerror or exc}")
        return answer({"path": str(saved.path), "name": saved.name, "rewritten": saved.rewritten,
                       "missing_settings": saved.missing_settings})  # fmt: skip


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return refuse(400, f"the request is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return refuse(400, "the request must be a JSON object")
    return body


def masked_view(view: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """Through the flow's masker as a whole (a sample lead recorded by hand may hold a setting)."""
    return orjson.loads(Masker(secrets).json_bytes(orjson.dumps(view)))
