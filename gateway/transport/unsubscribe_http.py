"""One-click unsubscribe from notification mail, without signing in.

- `GET /unsubscribe?token=…`: the link in a digest's footer. Turns the email off (all of
  it, or the one kind the token names) and answers a small HTML page, or JSON when
  `Accept` asks for `application/json`.
- `POST /unsubscribe?token=…`: what a mail client sends for the `List-Unsubscribe` and
  `List-Unsubscribe-Post: List-Unsubscribe=One-Click` headers (RFC 8058); same effect,
  answered in JSON.

Both are idempotent. A malformed token is 400, an altered or expired one 403, an account
that no longer exists 404, each with a message saying so (`storage.unsubscribe_tokens`).
"""

from __future__ import annotations

import html

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
        as_json = request.method == "POST" or _wants_json(request)
        try:
            wanted = self._tokens.verify(request.query_params.get("token", ""))
            done = await self._notifications.unsubscribe(wanted)
        except BadToken as refused:
            return _answer(as_json, refused.status, str(refused))
        except InvalidInput as invalid:
            return _answer(as_json, 400, str(invalid))
        if not done:
            return _answer(as_json, 404, "this account no longer exists")
        what = f"{wanted.kind} notifications" if wanted.kind else "notifications"
        message = (
            f"You will no longer get emails about {what}. You can turn them back on in "
            "Nova's notification settings."
        )
        return _answer(as_json, 200, message, kind=wanted.kind)


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
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{title} · Nova</title>"
        f"<h1>{title}</h1><p>{html.escape(message)}</p></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_NO_STORE)
