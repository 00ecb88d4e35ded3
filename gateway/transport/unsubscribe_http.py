"""One-click unsubscribe from notification mail, without signing in.

- `GET /unsubscribe?token=…`: the link in a digest's footer. Checks the token and answers a
  page asking to confirm, whose button POSTs; it changes nothing, because mail scanners and
  link previews fetch links nobody clicked (RFC 8058 keeps the one click for a POST).
- `POST /unsubscribe?token=…`: the page's button, or what a mail client sends for the
  `List-Unsubscribe` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` headers.
  Turns the email off (all of it, or the one kind the token names); answered in HTML to a
  browser, in JSON otherwise.

Both are idempotent. A malformed token is 400, an altered or expired one 403, an account
that no longer exists 404, each with a message saying so (`storage.unsubscribe_tokens`).
"""

from __future__ import annotations

import html
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.services.notifications import Notifications
from storage.errors import InvalidInput
from storage.unsubscribe_tokens import BadToken, UnsubscribeTokens

_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_CODES = {400: "BAD_USER_INPUT", 403: "FORBIDDEN", 404: "NOT_FOUND"}


class UnsubscribeRoutes:
    def __init__(self, notifications: Notifications, tokens: UnsubscribeTokens) -> None:
        self._notifications = notifications
        self._tokens = tokens

    def routes(self) -> list[BaseRoute]:
        return [Route("/unsubscribe", self.unsubscribe, methods=["GET", "POST"])]

    async def unsubscribe(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        as_json = _wants_json(request) or (request.method == "POST" and "text/html" not in accept)
        token = request.query_params.get("token", "")
        try:
            wanted = self._tokens.verify(token)
            what = f"{wanted.kind} notifications" if wanted.kind else "notifications"
            if request.method == "GET":
                return _confirm(as_json, token, what, wanted.kind)
            done = await self._notifications.unsubscribe(wanted)
        except BadToken as refused:
            return _answer(as_json, refused.status, str(refused))
        except InvalidInput as invalid:
            return _answer(as_json, 400, str(invalid))
        if not done:
            return _answer(as_json, 404, "this account no longer exists")
        message = (
            f"You will no longer get emails about {what}. You can turn them back on in "
            "Nova's notification settings."
        )
        return _answer(as_json, 200, message, kind=wanted.kind)


def _confirm(as_json: bool, token: str, what: str, kind: str | None) -> Response:
    """The page a clicked link opens: one button that POSTs the same token."""
    question = f"Stop emails about {what}?"
    if as_json:
        body = {"unsubscribed": False, "kind": kind.upper() if kind else None, "message": question}
        return JSONResponse(body, headers=_NO_STORE)
    action = html.escape(f"/unsubscribe?token={quote(token)}")
    return _page(
        "Unsubscribe",
        f'<p>{html.escape(question)}</p><form method=post action="{action}">'
        "<button type=submit>Unsubscribe</button></form>",
        200,
    )


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _answer(as_json: bool, status: int, message: str, *, kind: str | None = None) -> Response:
    if as_json:
        body: dict[str, object] = (
            {"unsubscribed": True, "kind": kind.upper() if kind else None, "message": message}
            if status == 200
            else {"errors": [{"message": message, "extensions": {"code": _CODES[status]}}]}
        )
        return JSONResponse(body, status_code=status, headers=_NO_STORE)
    title = "Unsubscribed" if status == 200 else "This link does not work"
    return _page(title, f"<p>{html.escape(message)}</p>", status)


def _page(title: str, body: str, status: int) -> HTMLResponse:
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{title} · Nova</title><h1>{title}</h1>{body}</html>"
    )
    return HTMLResponse(page, status_code=status, headers=_NO_STORE)
