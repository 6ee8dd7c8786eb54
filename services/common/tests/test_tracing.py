"""Trace ids always, recorded spans only where they can be exported."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from carevault_common.telemetry import tracer_provider

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def test_without_an_endpoint_nothing_is_recorded_but_the_trace_id_crosses_hops() -> None:
    gateway = tracer_provider("gateway").get_tracer("test")
    with gateway.start_as_current_span("GET /fhir/{path}") as span:
        assert not span.is_recording()
        trace_id = span.get_span_context().trace_id
        assert span.get_span_context().is_valid
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert carrier["traceparent"].split("-")[1] == format(trace_id, "032x")
    api = tracer_provider("api").get_tracer("test")
    with api.start_as_current_span("GET /fhir/{path}", context=propagate.extract(carrier)) as child:
        assert child.get_span_context().trace_id == trace_id
        assert not child.is_recording()


def _decision(ratio: float, parent_sampled: bool | None) -> Decision:
    provider = tracer_provider("api", "http://127.0.0.1:9/v1/traces", ratio)
    try:
        context: Context | None = None
        if parent_sampled is not None:
            flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
            parent = SpanContext(TRACE_ID, 0x00F067AA0BA902B7, is_remote=True, trace_flags=flags)
            context = set_span_in_context(NonRecordingSpan(parent))
        return provider.sampler.should_sample(context, TRACE_ID, "GET /fhir/{path}").decision
    finally:
        provider.shutdown()


def test_with_an_endpoint_the_ratio_decides_where_a_trace_starts_and_hops_follow() -> None:
    assert _decision(1.0, None) == Decision.RECORD_AND_SAMPLE
    assert _decision(0.0, None) == Decision.DROP
    assert _decision(0.0, True) == Decision.RECORD_AND_SAMPLE  # the caller sampled it: so does this hop
    assert _decision(1.0, False) == Decision.DROP
