"""kms/wire.py: request decoders that never raise, counted and rate-limited; tried on both grpc
servers (sync and aio), neither of which may log a traceback for a request that does not parse."""

from __future__ import annotations

import asyncio
import logging
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from kms_appliance.errors import InvalidRequest
from kms_appliance.kms import v2_pb2 as pb
from kms_appliance.kms import wire
from kms_appliance.metrics import Metrics
from tests.unit.helpers import Clock, sample

BAD = b"\xff\xff\xff\xff"
METHOD = "/v2.KeyManagementService/Encrypt"


def _count(m: Metrics) -> float:
    return sample(m, "kms_appliance_malformed_requests_total", api="v2", method="encrypt")


class TestDecoder:
    def test_valid_request_parses_unchanged(self) -> None:
        m = Metrics()
        decode = wire.MalformedRequests(m.malformed).decoder("v2", "encrypt", "EncryptRequest",
                                                             pb.EncryptRequest.FromString)
        req = decode(pb.EncryptRequest(plaintext=b"x" * 32, uid="u").SerializeToString())
        assert (req.plaintext, req.uid) == (b"x" * 32, "u")
        assert _count(m) == 0

    def test_malformed_request_is_a_stand_in_that_refuses_field_reads(self) -> None:
        m = Metrics()
        decode = wire.MalformedRequests(m.malformed).decoder("v2", "encrypt", "EncryptRequest",
                                                             pb.EncryptRequest.FromString)
        req = decode(BAD)
        with pytest.raises(InvalidRequest, match="not a valid EncryptRequest message"):
            _ = req.uid
        assert _count(m) == 1

    def test_one_line_per_interval_with_the_count_since_the_last(
            self, caplog: pytest.LogCaptureFixture) -> None:
        m, clock = Metrics(), Clock()
        bad = wire.MalformedRequests(m.malformed, every=10.0, clock=clock)
        decode = bad.decoder("v2", "encrypt", "EncryptRequest", pb.EncryptRequest.FromString)
        with caplog.at_level(logging.DEBUG):
            for _ in range(1000):
                decode(BAD)
            assert len(caplog.records) == 1
            assert caplog.records[0].getMessage().startswith("1 request(s)")
            clock.now += 9.9
            decode(BAD)
            assert len(caplog.records) == 1
            clock.now += 0.1
            decode(BAD)
        assert len(caplog.records) == 2
        assert caplog.records[1].getMessage().startswith("1001 request(s)")
        assert all(r.exc_info is None and r.levelno == logging.WARNING for r in caplog.records)
        assert _count(m) == 1002


def _behaviour(request: Any, context: Any) -> pb.EncryptResponse:
    try:
        _ = request.plaintext
    except InvalidRequest as exc:
        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        context.set_details(exc.message)
    return pb.EncryptResponse()


def _handler(m: Metrics) -> Any:
    decode = wire.MalformedRequests(m.malformed).decoder("v2", "encrypt", "EncryptRequest",
                                                         pb.EncryptRequest.FromString)
    method = grpc.unary_unary_rpc_method_handler(
        _behaviour, request_deserializer=decode,
        response_serializer=pb.EncryptResponse.SerializeToString)
    return grpc.method_handlers_generic_handler("v2.KeyManagementService", {"Encrypt": method})


def _send_garbage(target: str, n: int) -> set[grpc.StatusCode]:
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        codes = set()
        for _ in range(n):
            with pytest.raises(grpc.RpcError) as err:
                call(BAD, timeout=5)
            codes.add(err.value.code())
        return codes


def _grpc_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.levelno >= logging.WARNING and (r.name.startswith("grpc") or r.exc_info)]


class TestBothServers:
    """The same decoder keeps grpc's sync and aio servers from logging tracebacks."""

    def test_sync_server(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        m = Metrics()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[_handler(m)])
        target = f"unix:{tmp_path / 's.sock'}"
        server.add_insecure_port(target)
        server.start()
        try:
            with caplog.at_level(logging.DEBUG):
                codes = _send_garbage(target, 20)
        finally:
            server.stop(None)
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
        assert _grpc_errors(caplog) == []
        assert _count(m) == 20

    def test_aio_server(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        m = Metrics()
        target = f"unix:{tmp_path / 'a.sock'}"

        async def main() -> set[grpc.StatusCode]:
            server = grpc.aio.server(migration_thread_pool=futures.ThreadPoolExecutor(2),
                                     handlers=[_handler(m)])
            server.add_insecure_port(target)
            await server.start()
            try:
                return await asyncio.to_thread(_send_garbage, target, 20)
            finally:
                await server.stop(None)

        with caplog.at_level(logging.DEBUG):
            codes = asyncio.run(main())
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
        assert _grpc_errors(caplog) == []
        assert _count(m) == 20
