"""`derive serve`: the web page and its JSON API (FastAPI; its OpenAPI description at /openapi.json;
no /docs page, whose script would come from a CDN).

The server itself only routes: every request's work runs in a worker process under a time and a
memory limit (pool.py). Bodies are bounded before they are read, fields by the models below. The
page is a Jinja template; its script and style are derive's own files, served from the package,
and a Content-Security-Policy allows nothing else: no inline script, no other origin.
"""
from __future__ import annotations

import json
import os
import re
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .pool import Busy, LimitExceeded, Limits, Pool

MAX_BODY_BYTES = 256 * 1024          # a spec, a ten-page derivation: far below; a 1 MB body is refused unread
MAX_SPEC = 100_000
MAX_FORMULA = 20_000
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


class BodyLimit:
    """ASGI middleware: a body over the limit gets 413 (by its Content-Length, unread, or once the
    bytes streamed in pass the limit); every response carries the security headers."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        answered = False

        async def send_secured(message):
            if answered:                    # the 413 went out: whatever the app says after is dropped
                return
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send_secured, self.limit)
        seen = 0

        async def bounded_receive():
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:       # streamed past the limit: answer now, the app sees a disconnect
                    await _too_large(send_secured, self.limit)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, bounded_receive, send_secured)


async def _too_large(send, limit: int):
    body = json.dumps({"error": f"the request body is larger than {limit // 1024} KB, the limit"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------- request models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecSource(_Model):
    example: str | None = Field(None, max_length=80, description="A built-in example's name (GET /api/examples).")
    spec: str | None = Field(None, max_length=MAX_SPEC, description="A network description as YAML text.")


class SpecRequest(SpecSource):
    lang: Literal["en", "zh"] = "en"


class PreviewRequest(_Model):
    tex: str = Field(..., max_length=MAX_FORMULA, description="LaTeX math, as typed.")
    display: bool = False


class VerifyRequest(SpecSource):
    param: str | None = Field(None, max_length=40, description="W2, b1, delta2, Theta1, W1[2,3] …")
    claim: str | None = Field(None, max_length=MAX_FORMULA, description="A claimed formula for dL/dparam.")
    derivation: str | None = Field(None, max_length=MAX_SPEC, description="A LaTeX chain of equalities.")


class CheckRequest(SpecSource):
    trials: int | None = Field(None, ge=1, le=5)


class GraphRequest(_Model):
    expression: str = Field(..., max_length=2000, description="e.g. (x + y) * z, or LaTeX.")
    at: dict[str, float] = Field(default_factory=dict, max_length=40, description="Each variable's value.")
    gates: bool = False


class BuildRequest(SpecSource):
    lang: Literal["en", "zh"] = "en"
    detail: Literal["brief", "normal", "full"] = "normal"


class DownloadRequest(BuildRequest):
    kind: Literal["tex", "pdf", "md", "html", "py"]


# ------------------------------------------------------------------------- the app
def create_app(workers: int | None = None, limits: Limits | None = None) -> FastAPI:
    """The app. Unset arguments come from the environment, so that a production
    server's factory call (uvicorn --factory derive.web.app:create_app) is configured there:
    DERIVE_WORKERS (worker processes of each server process; default: the number of cores),
    DERIVE_TIMEOUT (seconds per request, default 20), DERIVE_MEMORY_MB (per worker, default 2048)."""
    limits = limits or limits_from_environment()
    pool = Pool(workers or _environment_int("DERIVE_WORKERS", 0) or max(1, os.cpu_count() or 1), limits)

    @asynccontextmanager
    async def lifespan(app):
        await pool.start()
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(title="derive", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Backpropagation derived, checked and typeset. The JSON API mirrors the "
                              "command line's --json output.")
    app.state.pool = pool
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        words = {404: "no such page or API endpoint; the API is described at /openapi.json",
                 405: "this method is not accepted here; the API is described at /openapi.json"}
        return JSONResponse({"error": words.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse({"error": f"the request is not accepted: {problems}"}, status_code=422)

    async def run(name: str, payload: dict, seconds: float | None = None) -> dict | JSONResponse:
        """The task's answer, or the error response that stands in for it."""
        try:
            status, value = await pool.run(name, payload, seconds)
        except LimitExceeded as exc:
            what = {"time": f"took longer than {exc.limit:g} s, the server's limit",
                    "memory": f"needed more than {exc.limit} MB of memory, the server's limit"}.get(
                        exc.kind, "stopped the process working on it")
            return JSONResponse({"error": f"this request {what}; it was stopped",
                                 "limit": exc.kind}, status_code=422)
        except Busy:
            return JSONResponse({"error": "the server is busy; try again in a minute"}, status_code=503,
                                headers={"retry-after": "30"})
        if status != "ok":
            return JSONResponse({"error": "derive failed on this request (a defect: please report it)",
                                 "detail": value}, status_code=500)
        if "error" in value:
            return JSONResponse(value, status_code=400)
        return value

    async def work(name: str, payload: dict) -> JSONResponse:
        answer = await run(name, payload)
        return answer if isinstance(answer, JSONResponse) else JSONResponse(answer)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request, lang: str | None = None):
        from .page import render_page

        return HTMLResponse(render_page(_language(request, lang)))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC:                    # a fixed table: no request path reaches the file system
            return JSONResponse({"error": f"no such file; accepted: {', '.join(STATIC)}"}, status_code=404)
        from .page import static_text

        return Response(static_text(name), media_type=STATIC[name], headers={"cache-control": "max-age=3600"})

    @app.get("/api/examples", summary="The built-in examples: name and title (en, zh)")
    async def examples():
        from .page import example_list

        return example_list()

    @app.get("/api/examples/{name}", summary="A built-in example's YAML text")
    async def example(name: str):
        from ..resources import example_names, example_text

        if name not in example_names():
            return JSONResponse({"error": f"{name!r} is not a built-in example; accepted: {', '.join(example_names())}"},
                                status_code=404)
        return {"name": name, "spec": example_text(name)}

    @app.post("/api/spec", summary="Read and validate a spec (as derive build would)")
    async def spec(body: SpecRequest):
        return await work("spec", body.model_dump())

    @app.post("/api/preview", summary="LaTeX math as MathML (allow-listed)")
    async def preview(body: PreviewRequest):
        return await work("preview", body.model_dump())

    @app.post("/api/verify", summary="Judge a claim or a derivation: derive verify --json")
    async def verify(body: VerifyRequest):
        return await work("verify", body.model_dump())

    @app.post("/api/check", summary="Check every step and the gradients: derive check --json")
    async def check(body: CheckRequest):
        return await work("check", body.model_dump())

    @app.post("/api/graph", summary="A computation graph's values and gradients: derive graph --json, with SVG")
    async def graph(body: GraphRequest):
        return await work("graph", body.model_dump())

    @app.post("/api/build", summary="The derivation as HTML with its checks: derive build --json")
    async def build(body: BuildRequest):
        return await work("build", body.model_dump())

    @app.post("/api/download", summary="One file: .tex, .pdf, .md, .html or the NumPy module (.py)",
              responses={200: {"content": {"application/octet-stream": {}}}})
    async def download(body: DownloadRequest):
        answer = await run("download", body.model_dump(), limits.pdf_seconds if body.kind == "pdf" else None)
        if isinstance(answer, JSONResponse):
            return answer
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", answer["filename"])[:100]
        return Response(answer["data"], media_type=answer["media_type"],
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz", include_in_schema=False)
    async def health():
        return {"ok": True, "workers": len(pool.pids()), "replaced": pool.replaced}

    return app


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"derive serve: {name}={value!r} is not accepted; expected a positive whole number")
    return int(value)


def limits_from_environment() -> Limits:
    base = Limits()
    return Limits(seconds=float(_environment_int("DERIVE_TIMEOUT", int(base.seconds))),
                  memory_mb=_environment_int("DERIVE_MEMORY_MB", base.memory_mb))


def _language(request: Request, asked: str | None) -> str:
    if asked in ("en", "zh"):
        return asked
    accept = request.headers.get("accept-language", "")
    return "zh" if accept.lower().startswith("zh") else "en"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("derive")
    except PackageNotFoundError:
        return "0"
