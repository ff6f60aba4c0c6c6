"""kms/wire.py: request decoders that never raise, counted and rate-limited (the real server's answer to
1,000 of them, with no traceback: tests/reliability/test_attacks_requests.py)."""

from __future__ import annotations

import logging

import pytest

from kms_appliance.errors import InvalidRequest
from kms_appliance.kms import v2_pb2 as pb
from kms_appliance.kms import wire
from kms_appliance.metrics import Metrics
from tests.unit.helpers import Clock, sample

BAD = b"\xff\xff\xff\xff"


def _count(m: Metrics) -> float:
    return sample(m, "kms_appliance_malformed_requests_total", api="v2", method="encrypt")


class TestDecoder:
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

