"""Safe by default: loopback unless told otherwise, a token off loopback, CSRF on every form.

- ``check_bind``: binding anywhere but a loopback address needs ``review_token``.
- ``Guard`` (middleware): when a token is set, every request carries it (``Authorization: Bearer``,
  the cookie, or ``?token=`` once, which sets the cookie); each client gets a random CSRF cookie;
  every response forbids framing (one-click actions) and scripts from anywhere but the page's own
  static files.
- ``checked_form``: a POST's form, only when its ``csrf`` field matches the cookie (double submit,
  SameSite=Strict).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from etlnorm.errors import ConfigError

TOKEN_COOKIE = "etlnorm_review_token"
CSRF_COOKIE = "etlnorm_csrf"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class CsrfError(Exception):
    """A form without the client's CSRF token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve off loopback without a token: the page can change the warehouse."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"binding the review page to {host} needs a token: set review_token "
                          "(ETLNORM_REVIEW_TOKEN) or bind to 127.0.0.1")  # fmt: skip


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())  # type: ignore[union-attr]


class Guard(BaseHTTPMiddleware):
    """Token on every request (when set), a CSRF cookie for every client, security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token:
            given = request.query_params.get("token")
            if same(given, self.token):  # a link with the token: keep it in a cookie, drop it from the URL
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response: Response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), 303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                return self._headers(response)
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not (same(request.cookies.get(TOKEN_COOKIE), self.token) or same(bearer, self.token)):
                return self._headers(PlainTextResponse("a review token is required", 401))
        csrf = request.cookies.get(CSRF_COOKIE)
        request.state.csrf = csrf or secrets.token_urlsafe(32)
        response = await call_next(request)
        if not csrf:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict")
        return self._headers(response)

    @staticmethod
    def _headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response


async def checked_form(request: Request) -> FormData:
    """The request's form, if its ``csrf`` field is the client's CSRF cookie; else ``CsrfError``."""
    form = await request.form()
    field = form.get("csrf")
    if not same(field if isinstance(field, str) else None, request.cookies.get(CSRF_COOKIE)):
        raise CsrfError("the form's CSRF token does not match: reload the page and try again")
    return form
