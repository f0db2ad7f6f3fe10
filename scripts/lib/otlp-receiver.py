#!/usr/bin/env python3
"""A stand-in for the OpenTelemetry collector, for scripts/compose-smoke: takes OTLP/gRPC
exports on :4317 as the collector does and prints one line per span received,

    span TRACE_ID SERVICE NAME

so the smoke test can follow one customer's message through the services' traces. It
needs only grpcio (Debian's python3-grpcio): the request is read straight from the
protobuf wire format, and only the fields a line needs (opentelemetry-proto's
trace/v1/trace.proto: ResourceSpans, Resource, KeyValue, ScopeSpans, Span)."""

import signal
import sys
from concurrent import futures

import grpc

EXPORTS = (
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
)


def fields(buf):
    """(number, value) for each field of a protobuf message; value is an int for
    varints and fixed numbers, bytes for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wire == 2:
            length, i = varint(buf, i)
            value, i = bytes(buf[i : i + length]), i + length
        elif wire == 5:
            value, i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wire} at byte {i}")
        yield number, value


def varint(buf, i):
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def service_name(resource):
    for number, attribute in fields(resource):
        if number != 1:
            continue
        kv = dict(fields(attribute))
        if kv.get(1) == b"service.name":
            any_value = dict(fields(kv.get(2, b"")))
            return any_value.get(1, b"?").decode("utf-8", "replace")
    return "?"


def spans(request):
    for number, resource_spans in fields(request):
        if number != 1:
            continue
        parts = list(fields(resource_spans))
        service = next((service_name(v) for n, v in parts if n == 1), "?")
        for scope_spans in (v for n, v in parts if n == 2):
            for span in (v for n, v in fields(scope_spans) if n == 2):
                span = dict(fields(span))
                yield span.get(1, b"").hex(), service, span.get(5, b"").decode("utf-8", "replace")


def export_traces(request, context):
    try:
        for trace_id, service, name in spans(request):
            print(f"span {trace_id} {service} {name}", flush=True)
    except (ValueError, IndexError) as e:
        print(f"unreadable export: {e}", flush=True)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unreadable export: {e}")
    # An empty ExportTraceServiceResponse: every span accepted.
    return b""


def export_other(request, context):
    return b""


class Exports(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method in EXPORTS:
            # No deserializer: the handler gets the request's bytes.
            trace = details.method == EXPORTS[0]
            return grpc.unary_unary_rpc_method_handler(export_traces if trace else export_other)
        return None


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((Exports(),))
    server.add_insecure_port("0.0.0.0:4317")
    server.start()
    print("OTLP/gRPC stand-in listening on :4317", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
