"""Problem details (RFC 9457) for every error of the HTTP API.

A handler raises :class:`ProblemError`; :func:`problem_middleware` turns it, and aiohttp's own
HTTP errors (unknown route, wrong method, a body too large), into an
``application/problem+json`` response. Validation errors (422) list their fields in
``errors``: ``[{"field": "participant_pin", "message": "..."}]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "ProblemError",
    "bad_request",
    "conflict",
    "invalid",
    "not_found",
    "problem_middleware",
    "problem_response",
    "unauthorized",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

FieldError = Mapping[str, str]  # {"field": ..., "message": ...}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProblemError(Exception):
    """An API error: status, a short title, a human-readable detail, optional field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def bad_request(detail: str) -> ProblemError:
    return ProblemError(400, detail)


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="bridge"'})


def not_found(detail: str = "no such resource") -> ProblemError:
    return ProblemError(404, detail)


def conflict(detail: str, **extra: Any) -> ProblemError:
    return ProblemError(409, detail, extra=extra)


def invalid(errors: Sequence[FieldError], detail: str | None = None) -> ProblemError:
    text = detail or "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ProblemError(422, text, errors=errors)


def problem_response(problem: ProblemError, instance: str | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance is not None:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = [dict(e) for e in problem.errors]
    body.update(problem.extra)
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as problem:
        return problem_response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.reason
        if exc.status == 404:
            detail = f"no route for {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(ProblemError(exc.status, detail, headers=headers), request.path)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a bug: logged with its traceback, answered as a problem, never hidden
        log.exception("%s %s failed", request.method, request.path)
        return problem_response(ProblemError(500, "the bridge failed to answer this request; "
                                                  "see its log"), request.path)
