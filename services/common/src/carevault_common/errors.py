"""One error shape everywhere: RFC 9457 problem details.

Domain errors subclass :class:`ProblemError` next to the service that raises
them; one handler renders them. Under the FHIR base path the same errors are
rendered as an OperationOutcome, which is what FHIR clients expect.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from carevault_common.telemetry import report_error

PROBLEM_TYPE_BASE = "https://carevault.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
FHIR_MEDIA_TYPE = "application/fhir+json"

logger = logging.getLogger("carevault.errors")

# FHIR issue codes by HTTP status, for OperationOutcome bodies (one table for every service).
FHIR_ISSUE_CODES: dict[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    428: "required",
    429: "throttled",
    500: "exception",
    503: "transient",
    504: "timeout",
}


class ProblemError(Exception):
    """An error with an HTTP status, rendered as problem details.

    ``code`` is a stable machine-readable name; it becomes the problem ``type``.
    ``detail`` must never carry personal data: it is sent to clients and logged.
    """

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extensions = extensions or {}
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class NotFound(ProblemError):
    status, code, title = 404, "not-found", "Not found"


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "Forbidden"


class Unauthorized(ProblemError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Conflict(ProblemError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ProblemError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class UnprocessableEntity(ProblemError):
    status, code, title = 422, "unprocessable", "Unprocessable content"


class ServiceUnavailable(ProblemError):
    status, code, title = 503, "service-unavailable", "A service this request needs is unavailable"


class ClientClosedRequest(ProblemError):
    """The client went away before its request was read whole (nginx's 499): no one is
    left to answer, and it is no fault of this service or its peers."""

    status, code, title = 499, "client-closed-request", "The client closed the request"


class RequestTimeout(ProblemError):
    """The client stopped sending its request body: its connection is closed rather
    than held (and the peers it was streaming to freed)."""

    status, code, title = 408, "request-timeout", "The client stopped sending the request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"connection": "close"})


class CallerNotAllowed(ProblemError):
    status, code, title = 403, "caller-not-allowed", "Caller not allowed"


def problem_from_peer(status: int, body: bytes, peer: str) -> ProblemError:
    """A peer's problem-details answer as a :class:`ProblemError` of this service
    (its code and detail kept), to re-render in this service's error shape."""
    try:
        problem = orjson.loads(body)
    except orjson.JSONDecodeError:
        problem = None
    if not isinstance(problem, dict) or not isinstance(problem.get("type"), str):
        return ProblemError(f"The {peer} service answered {status}.", status=502 if status < 400 else status, code="peer-error")
    code = problem["type"].removeprefix(PROBLEM_TYPE_BASE)
    return ProblemError(str(problem.get("detail") or ""), status=status, code=code, title=str(problem.get("title") or "Error"))


def operation_outcome(problem: dict[str, Any]) -> dict[str, Any]:
    """Render a problem body as a FHIR OperationOutcome, keeping its type."""
    status = int(problem.get("status", 500))
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": FHIR_ISSUE_CODES.get(status, "exception"),
        "details": {"coding": [{"system": PROBLEM_TYPE_BASE, "code": str(problem["type"]).removeprefix(PROBLEM_TYPE_BASE)}]},
        "diagnostics": problem.get("detail") or problem.get("title", ""),
    }
    issues = [issue]
    for extra in problem.get("issues", []):
        issues.append(extra)
    return {"resourceType": "OperationOutcome", "issue": issues}


def render_problem(request_path: str, problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    status = int(problem["status"])
    if request_path == "/fhir" or request_path.startswith("/fhir/"):
        body, media_type = operation_outcome(problem), FHIR_MEDIA_TYPE
    else:
        body, media_type = problem, PROBLEM_MEDIA_TYPE
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)


def _validation_problem(exc: RequestValidationError) -> dict[str, Any]:
    # Field locations only: the offending input values may be personal data.
    errors = [{"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")} for err in exc.errors()]
    return UnprocessableEntity("The request does not match the expected shape.", extensions={"errors": errors}).to_problem()


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        if exc.status >= 500:
            logger.warning("request failed", extra={"problem": exc.code, "status": exc.status})
        if exc.status == 500:  # our own fault (an integrity failure...), not a peer's unavailability
            report_error(exc)
        return render_problem(request.url.path, exc.to_problem(), exc.headers)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        problem = ProblemError(str(exc.detail), status=exc.status_code, code=code, title=str(exc.detail)).to_problem()
        return render_problem(request.url.path, problem, dict(exc.headers or {}))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render_problem(request.url.path, _validation_problem(exc))

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # Not a 500: a phone losing its signal mid-upload must not page anyone.
        return await on_problem(request, ClientClosedRequest())

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, unexpected_error)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """A 500 problem for what no handler expected; logged and reported."""
    logger.exception("unhandled error")
    report_error(exc)
    problem = ProblemError("An internal error occurred.", status=500, code="internal-error", title="Internal error")
    return render_problem(request.url.path, problem.to_problem())
