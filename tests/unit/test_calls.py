"""The single error -> gRPC status mapping, request validation, and call accounting."""

from __future__ import annotations

import datetime
import json
import time
from contextlib import closing
from pathlib import Path

import grpc
import pytest

from kms_appliance import errors
from kms_appliance.audit import AuditLog, Site, fingerprint
from kms_appliance.kms import calls as calls_module
from kms_appliance.kms import validate
from kms_appliance.kms.calls import Calls, grpc_code
from kms_appliance.metrics import Metrics
from tests.support.fakes import FakeContext
from tests.unit.helpers import sample


@pytest.mark.parametrize(("exc", "code", "outcome"), [
    (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
    (errors.CiphertextError("x"), grpc.StatusCode.INVALID_ARGUMENT, "corrupt"),
    (errors.KeyUnavailable("x"), grpc.StatusCode.FAILED_PRECONDITION, "user"),
    (errors.AccessDenied("x"), grpc.StatusCode.PERMISSION_DENIED, "user"),
    (errors.Throttled("x"), grpc.StatusCode.RESOURCE_EXHAUSTED, "throttled"),
    (errors.BackendUnavailable("x"), grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (errors.BackendCorruption("x"), grpc.StatusCode.INTERNAL, "corrupt"),
])
def test_typed_errors_map_to_codes(exc: errors.KmsError, code: grpc.StatusCode, outcome: str) -> None:
    assert grpc_code(exc) == (code, "x", outcome)


class TestValidate:
    """Limits mirror what kube-apiserver enforces."""

    def test_sized(self) -> None:
        validate.sized("f", b"a" * 10, 10)
        with pytest.raises(errors.InvalidRequest, match="must not be empty"):
            validate.sized("f", b"", 10)
        with pytest.raises(errors.InvalidRequest, match="11 bytes; at most 10"):
            validate.sized("f", b"a" * 11, 10)
        with pytest.raises(errors.InvalidRequest, match="at most 3"):
            validate.sized("f", "éé", 3)

    @pytest.mark.parametrize("key", ["version.kms.example.com", "a.io", "x-1.y-2.example.org"])
    def test_fqdn_annotations_accepted(self, key: str) -> None:
        validate.annotation_map({key: b"1"})

    @pytest.mark.parametrize("key", ["version", "Version.Example.com", "-a.example.com", "a..b.com",
                                     "a.b.c1", "", "x" * 64 + ".com"])
    def test_non_fqdn_annotations_refused(self, key: str) -> None:
        with pytest.raises(errors.InvalidRequest, match="fully qualified"):
            validate.annotation_map({key: b"1"})

    def test_annotation_total_size(self) -> None:
        validate.annotation_map({"a.example.com": b"x" * (32 * 1024 - 13)})
        with pytest.raises(errors.InvalidRequest, match="at most 32768"):
            validate.annotation_map({"a.example.com": b"x" * (32 * 1024 - 12)})


class TestDeferredAccounting:
    """Calls queue their bookkeeping; the audit flusher turns it into metrics and records."""

    @staticmethod
    def _calls(tmp_path: Path, interval: float) -> tuple[Calls, AuditLog, Metrics]:
        audit = AuditLog(str(tmp_path / "audit.log"), flush_interval=interval)
        metrics = Metrics()
        return Calls(metrics, audit, "local", "ring"), audit, metrics

    @staticmethod
    def _ok_count(metrics: Metrics) -> float:
        return sample(metrics, "kms_appliance_calls_total", method="encrypt", api="v2", outcome="ok")

    @staticmethod
    def _encrypt(calls: Calls, uid: str) -> None:
        calls.ok(time.perf_counter(), Site("v2", "encrypt"), uid=uid, key_id="local/k/1", key_version="1",
                 ciphertext=b"ct-" + uid.encode())

    def test_records_keep_the_call_time_and_order(self, tmp_path: Path) -> None:
        calls, audit, metrics = self._calls(tmp_path, interval=1.0)
        before = time.time()
        for i in range(3):
            self._encrypt(calls, f"u{i}")
        after = time.time()
        assert self._ok_count(metrics) == 0  # nothing on the request path
        time.sleep(0.05)
        audit.close()  # drains and writes
        records = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
        assert [r["uid"] for r in records] == ["u0", "u1", "u2"]
        assert self._ok_count(metrics) == 3
        for r in records:  # ts is the call's, not the (>= 50 ms later) write's
            stamp = datetime.datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            when = stamp.replace(tzinfo=datetime.UTC).timestamp()
            assert before - 0.002 <= when <= after + 0.002, (r["ts"], before, after)
            assert r["ct_fp"] and r["code"] == "OK" and r["duration_ms"] >= 0

    def test_a_backlog_is_written_whole_and_in_order(self, tmp_path: Path) -> None:
        calls, audit, metrics = self._calls(tmp_path, interval=1.0)
        n = 5 * calls_module.CHUNK + 3  # several chunks, the last one partial
        for i in range(n):
            self._encrypt(calls, f"u{i}")
        audit.close()
        records = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
        assert [r["uid"] for r in records] == [f"u{i}" for i in range(n)]
        assert self._ok_count(metrics) == n

    def test_a_failed_call_is_recorded_with_its_error(self, tmp_path: Path) -> None:
        calls, audit, _ = self._calls(tmp_path, interval=1.0)
        ctx = FakeContext()
        exc = errors.CiphertextError("ciphertext failed authentication")
        calls.failed(ctx, time.perf_counter(), Site("v2", "decrypt"), exc,  # type: ignore[arg-type]
                     uid="u-bad" + "x" * 300, key_id="local/k/1", ciphertext=b"ct")
        assert [len(rec.uid) for rec in calls._done] == [validate.MAX_UID]  # bounded while queued
        audit.close()
        (record,) = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
        assert (ctx.code, ctx.details) == (grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        assert (record["outcome"], record["code"], record["error"]) == (
            "corrupt", "INVALID_ARGUMENT", "ciphertext failed authentication")
        assert record["uid"] == ("u-bad" + "x" * 300)[:validate.MAX_UID]
        assert (record["key_id"], record["ct_fp"]) == ("local/k/1", fingerprint(b"ct"))

    def test_a_full_queue_makes_calls_account_for_themselves(self, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(calls_module, "MAX_PENDING", 2)
        calls, audit, metrics = self._calls(tmp_path, interval=1.0)
        with closing(audit):
            for i in range(3):
                self._encrypt(calls, f"u{i}")
            assert self._ok_count(metrics) == 1  # the third, inline; two still queued
        assert self._ok_count(metrics) == 3

    def test_interval_zero_accounts_inline(self, tmp_path: Path) -> None:
        calls, audit, metrics = self._calls(tmp_path, interval=0)
        with closing(audit):
            self._encrypt(calls, "u0")
            assert self._ok_count(metrics) == 1
            assert json.loads((tmp_path / "audit.log").read_text())["uid"] == "u0"
