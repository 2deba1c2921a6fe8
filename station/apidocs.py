"""Swagger UI and ReDoc served from the station itself (no CDN: the docs work offline).

The JavaScript and CSS come from the ``fastapi-offline`` package, a runtime dependency; the pages are
FastAPI's own, pointed at ``/docs/assets/``. The pages need a login (``station.access.POLICY``); the assets
are public, like any static file.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
TYPES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
         "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
PREFIX = "/docs/assets/"


def docs_router(app: FastAPI) -> APIRouter:
    """``/docs`` (Swagger UI), ``/redoc``, the OAuth2 redirect page and ``/docs/assets/{name}``."""
    r = APIRouter(include_in_schema=False)
    title = app.title

    @r.get("/docs", response_class=HTMLResponse)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - API",
                                   swagger_js_url=PREFIX + "swagger-ui-bundle.js",
                                   swagger_css_url=PREFIX + "swagger-ui.css",
                                   swagger_favicon_url=PREFIX + "favicon.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @r.get("/docs/oauth2-redirect", response_class=HTMLResponse)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @r.get("/redoc", response_class=HTMLResponse)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{title} - ReDoc",
                              redoc_js_url=PREFIX + "redoc.standalone.js", redoc_favicon_url=PREFIX + "favicon.png",
                              with_google_fonts=False)

    @r.get("/docs/assets/{name}")
    def asset(name: str) -> FileResponse:
        if name not in TYPES:
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(ASSETS / name, media_type=TYPES[name], headers={"Cache-Control": "max-age=86400"})

    return r
