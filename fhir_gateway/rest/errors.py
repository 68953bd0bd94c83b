"""Unexpected errors answered as a 500 OperationOutcome, with the connection kept.

Starlette sends the response of the app's handler for ``Exception`` from its outermost
middleware and then raises the exception again (so that the server logs it); uvicorn closes
the connection of a request whose application raised. A client that keeps connections alive
(an integration engine, any HTTP client's pool) then has its *next* request on that
connection fail with a reset, although the 500 reached it. ``UnexpectedErrors`` sits inside
Starlette's layer, gives the same handler the exception and sends its response, and the
exception goes no further: logged by the handler, audited, and the connection stays usable.
An exception raised after the response has started cannot be answered any more; it goes on
as before.
"""

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class UnexpectedErrors:
    def __init__(self, app: ASGIApp, handler: Handler) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            response = await self.handler(Request(scope, receive), exc)
            await response(scope, receive, send)
