"""Every metric the appliance exports, defined once.

Names start with ``kms_appliance_``; labels are bounded (method, API version,
outcome class, backend, operation): never error text, key ids or material.
A fresh :class:`Metrics` takes its own registry so tests can assert on
samples without global state.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from . import version

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The appliance's metrics over one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("kms_appliance_calls", "gRPC calls served",
                             ["method", "api", "outcome"], registry=r)
        self.malformed = Counter("kms_appliance_malformed_requests",
                                 "Requests that are not a valid protobuf message (INVALID_ARGUMENT)",
                                 ["api", "method"], registry=r)
        self.call_seconds = Histogram("kms_appliance_call_duration_seconds", "gRPC call latency",
                                      ["method", "api"], buckets=_LATENCY_BUCKETS, registry=r)
        self.backend_calls = Counter("kms_appliance_backend_calls", "Calls to the key backend",
                                     ["backend", "operation", "outcome"], registry=r)
        self.backend_seconds = Histogram("kms_appliance_backend_call_duration_seconds",
                                         "Key backend call latency", ["backend", "operation"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.key_version = Gauge("kms_appliance_key_version", "Current KEK version in use",
                                 ["backend"], registry=r)
        self.key_changed = Gauge("kms_appliance_key_version_change_timestamp_seconds",
                                 "When this process first saw the current KEK version",
                                 ["backend"], registry=r)
        # From the key holder (Akeyless describe-item, keyring "created"): survives restarts,
        # which is what a "key not rotated" alert needs; absent when the holder does not say.
        self.key_created = Gauge("kms_appliance_key_version_created_timestamp_seconds",
                                 "When the current KEK version was created, per the key backend",
                                 ["backend"], registry=r)
        self.backend_healthy = Gauge("kms_appliance_backend_healthy",
                                     "1 if the backend passed its last health probe",
                                     ["backend"], registry=r)
        self.peer_refusals = Counter("kms_appliance_peer_refusals",
                                     "Connections refused by the peer-uid allowlist or limit",
                                     ["reason"], registry=r)
        self.connections = Gauge("kms_appliance_connections",
                                 "Open client connections on the accept path", registry=r)
        self.cache_events = Counter("kms_appliance_decrypt_cache", "Decrypt cache events",
                                    ["event"], registry=r)
        self.cache_entries = Gauge("kms_appliance_decrypt_cache_entries",
                                   "DEKs held in the decrypt cache", registry=r)
        self.token_expiry = Gauge("kms_appliance_token_expiry_seconds",
                                  "Seconds until the backend auth token expires", registry=r)
        self.token_rotation_failures = Counter("kms_appliance_token_rotation_failures",
                                               "Failed Universal Identity token rotations",
                                               registry=r)
        self.audit_write_failures = Counter("kms_appliance_audit_write_failures",
                                            "Failed opens/reopens or writes of the audit log",
                                            registry=r)
        self.audit_records_dropped = Counter("kms_appliance_audit_records_dropped",
                                             "Audit records lost because the audit log could not "
                                             "be written", registry=r)
        self.self_probe_failures = Gauge("kms_appliance_self_probe_failures",
                                         "Consecutive failed Status calls through the plugin's own "
                                         "socket path (3 fail /livez)", registry=r)
        self.http_evictions = Counter("kms_appliance_http_connections_evicted",
                                      "Idle HTTP connections closed to make room at the "
                                      "connection limit", registry=r)
        self.thread_restarts = Counter("kms_appliance_thread_restarts",
                                       "Long-lived threads that died and were restarted",
                                       ["thread"], registry=r)
        # Akeyless envelope mode (docs/akeyless.md): mode is "direct" or "envelope".
        self.akeyless_mode = Gauge("kms_appliance_akeyless_mode", "1 for the Akeyless backend's "
                                   "mode", ["mode"], registry=r)
        self.intermediate_keys = Gauge("kms_appliance_intermediate_keys",
                                       "Intermediate keys held in memory", registry=r)
        self.intermediate_key_validation_age = Gauge(
            "kms_appliance_intermediate_key_validation_age_seconds",
            "Seconds since Akeyless last vouched for the least recently validated held "
            "intermediate key", registry=r)
        self.intermediate_key_events = Counter(
            "kms_appliance_intermediate_key_events", "Intermediate key events "
            "(created|unwrapped|dropped|validated|validation_failed)", ["event"], registry=r)
        self.build_info = Gauge("kms_appliance_build_info", "Build information",
                                ["version", "commit", "python"], registry=r)
        info = version.info()
        self.build_info.labels(info["version"], info["commit"], platform.python_version()).set(1)
        self._bound: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        # process_* (resident/virtual memory, open and max fds, CPU seconds, start time; read
        # from /proc/self at scrape time) and python_info, on this registry: the global
        # default registry is never served.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def bound(self, method: str, api: str, outcome: str) -> tuple[Counter, Histogram]:
        """Label children cached per combination: label lookup is off the hot path."""
        key = (method, api, outcome)
        pair = self._bound.get(key)
        if pair is None:
            pair = (self.calls.labels(method, api, outcome), self.call_seconds.labels(method, api))
            self._bound[key] = pair
        return pair
