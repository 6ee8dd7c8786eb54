"""Tracing, metrics and error reports, set up once per process.

Traces: an OpenTelemetry SDK tracer provider always runs, so every request has a
trace id that crosses hops (W3C ``traceparent``) and shows in the logs; spans are
exported over OTLP only when an endpoint is configured. Spans are named by route
template, never by raw path (paths carry patient ids).

Error reports: sentry-sdk only when a DSN is configured, with local variables off
and an allow-list ``before_send`` (stack frames and URLs carry tokens and content).
Unexpected errors and integrity failures are reported with :func:`report_error`.

Whatever leaves the process as a span or an error report goes through the one
redaction filter of :mod:`carevault_common.logging` (:func:`redact_value`), as log
lines do.
"""

from __future__ import annotations

import re
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carevault_common.logging import REDACTED, Verbatim, redact, redact_value, request_id_var, trace_id_var

REQUESTS = Counter(
    "carevault_http_requests_total",
    "HTTP requests served, by route template.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "carevault_http_request_duration_seconds",
    "HTTP request latency, by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

REQUEST_ID_HEADER = b"x-request-id"
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def configure_tracing(service: str, otlp_endpoint: str = "", sample_ratio: float = 1.0) -> None:
    trace.set_tracer_provider(tracer_provider(service, otlp_endpoint, sample_ratio))


def tracer_provider(service: str, otlp_endpoint: str = "", sample_ratio: float = 1.0) -> TracerProvider:
    """Every request gets a trace id that crosses hops and shows in the logs. Spans are
    recorded only when they can be exported: without an endpoint, recording them cost
    each service a few per cent of its CPU for nothing. With one, ``sample_ratio`` of
    the traces started here are recorded, and a hop follows its caller's decision."""
    sampler = ParentBased(TraceIdRatioBased(sample_ratio)) if otlp_endpoint else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": f"carevault-{service}"}), sampler=sampler)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(OTLPSpanExporter(endpoint=otlp_endpoint))))
    return provider


# Span attributes that may leave as they are (ids, codes, templates); any other
# attribute leaves with its value masked. Instrumentations record raw URLs, query
# strings, headers and statements under other keys.
SAFE_SPAN_ATTRIBUTES = frozenset(
    {
        "http.route",
        "http.request.method",
        "http.response.status_code",
        "server.port",
        "network.protocol.name",
        "network.protocol.version",
        "url.scheme",
        "error.type",
        "db.system",
        "db.system.name",
        "db.operation.name",
        "rpc.system",
    }
)


def _span_attributes(attributes: Any) -> dict[str, Any]:
    # Masked values need no filtering; kept ones still go through it.
    return {
        k: (redact_value(v, k) if k in SAFE_SPAN_ATTRIBUTES or k.startswith("carevault.") else REDACTED)
        for k, v in dict(attributes or {}).items()
    }


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span``: name through the filter, attributes through the allow-list
    and the filter (events likewise)."""
    events = [Event(redact(e.name), _span_attributes(e.attributes), e.timestamp) for e in span.events]
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_span_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter: spans leave the process only redacted."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# Keys of a Sentry event that may leave the process; everything else is dropped.
_SENTRY_EVENT_KEYS = frozenset(
    {
        "event_id",
        "timestamp",
        "level",
        "platform",
        "logger",
        "release",
        "environment",
        "server_name",
        "exception",
        "tags",
        "contexts",
        "sdk",
    }
)


def _sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    kept = {k: v for k, v in event.items() if k in _SENTRY_EVENT_KEYS}
    for exc in kept.get("exception", {}).get("values", []):
        exc["value"] = ""  # messages may quote input; the type and stack are enough
        for frame in exc.get("stacktrace", {}).get("frames", []):
            frame.pop("vars", None)
            frame.pop("context_line", None)
            frame.pop("pre_context", None)
            frame.pop("post_context", None)
    kept.get("contexts", {}).pop("request", None)
    kept.get("contexts", {}).pop("user", None)
    redacted: dict[str, Any] = redact_value(kept)
    return redacted


_error_reports_on = False


def configure_error_reports(service: str, dsn: str, environment: str) -> None:
    global _error_reports_on
    if not dsn:
        return
    import sentry_sdk

    _error_reports_on = True
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        server_name=f"carevault-{service}",
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=_sentry_before_send,  # type: ignore[arg-type]
        traces_sample_rate=0,
        default_integrations=False,
    )


def report_error(exc: BaseException) -> None:
    """Send an error report for ``exc`` (type and stack only), if reports are on."""
    if not _error_reports_on:
        return
    import sentry_sdk

    sentry_sdk.capture_exception(exc)


def outgoing_headers() -> dict[str, str]:
    """Headers that carry the current trace and request id to the next hop."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    if rid := request_id_var.get():
        headers["x-request-id"] = rid
    return headers


class RequestContextMiddleware:
    """Request id, trace span, metrics and one access-log line per request.

    Pure ASGI (no BaseHTTPMiddleware) so that streaming bodies pass untouched and
    the hot path pays for one span and two metric updates only.
    """

    def __init__(self, app: ASGIApp, service: str, access_logger: Any) -> None:
        self.app = app
        self.tracer = trace.get_tracer(f"carevault.{service}")
        self.access_logger = access_logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        incoming_rid = ""
        for name, value in scope["headers"]:  # one pass: this runs on every request of every hop
            if name in _TRACE_HEADERS:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
            elif name == REQUEST_ID_HEADER and not incoming_rid:
                incoming_rid = value.decode("latin-1")
        # Only an id of the form this mesh makes is taken over (propagated between hops):
        # whatever else a client sends would reach every log line unredacted.
        request_id = incoming_rid if _REQUEST_ID.fullmatch(incoming_rid) else _new_request_id()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = otel_context.attach(propagate.extract(carrier))
        rid_token = request_id_var.set(request_id)
        started = time.perf_counter()
        method = scope["method"]
        try:
            with self.tracer.start_as_current_span("HTTP " + method, kind=SpanKind.SERVER) as span:
                tid_token = trace_id_var.set(format(span.get_span_context().trace_id, "032x"))
                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    route = _route_template(scope)
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status_holder["status"])
                    if status_holder["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    elapsed = time.perf_counter() - started
                    REQUESTS.labels(method, route, str(status_holder["status"])).inc()
                    LATENCY.labels(method, route).observe(elapsed)
                    # A standard method and the route template (the code's own) carry no
                    # personal data: they skip the filter, which is measurable at one
                    # line per request.
                    self.access_logger.info(
                        "request",
                        extra={
                            "method": Verbatim(method) if method in STANDARD_METHODS else method,
                            "route": Verbatim(route),
                            "status": status_holder["status"],
                            "duration_ms": round(elapsed * 1000, 2),
                        },
                    )
                    trace_id_var.reset(tid_token)
        finally:
            request_id_var.reset(rid_token)
            otel_context.detach(token)


def _route_template(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _new_request_id() -> str:
    import uuid

    return uuid.uuid4().hex
