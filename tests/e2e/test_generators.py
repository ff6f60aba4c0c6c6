"""The generators against the real kube-apiserver's validation.

``kms-appliance static-pod`` must write a pod the apiserver accepts, and must
refuse (exit 2) exactly the values the apiserver would refuse: each refused
value is also rendered with the generator's check bypassed and sent to the
apiserver with ``--dry-run=server``, which must refuse it too. So the
re-implemented rules in kms_appliance/k8svalid.py cannot drift from the
apiserver's without this failing.

``encryption-config``: kube-apiserver starts (``/livez``; no plugin needs to
answer) with the generated EncryptionConfiguration for the timeouts the
generator accepts, and exits at start with the ones it refuses.

Not covered here: image references (the apiserver only checks that the image
is non-empty without surrounding spaces; the kubelet refuses a bad reference
at pull time, InvalidImageName).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from kms_appliance import config, manifests
from tests.support.kube.cluster import ApiServerOptions, Cluster
from tests.support.kube.encryption import encryption_config, identity
from tests.support.plugin import cli
from tests.support.yamlsubset import parse

pytestmark = pytest.mark.e2e

IMAGE = "localhost/kms-appliance:0.1.0"


def _cli_static_pod(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(tmp_path, "static-pod", "--image", IMAGE, *args)


def _unchecked_pod(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> str:
    """What the generator would have written without its checks (as the code before them did)."""
    cfg = config.load(env={}, config_file=Path("/dev/null"), flags={"server.backend": "local"})
    with monkeypatch.context() as m:
        m.setattr(manifests, "_check_static_pod", lambda *a, **k: None)
        return manifests.static_pod(cfg, IMAGE, **kwargs)


def _dry_run(cluster: Cluster, manifest: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", check=False,
                           input_text=manifest)


def _refused_by_validation(stderr: str) -> bool:
    """A validation or decoding refusal, not some other error (admission, connection)."""
    return " is invalid" in stderr or "quantities must match the regular expression" in stderr


ACCEPTED = [[], ["--memory-limit", "1G"], ["--memory-limit", "0.5Gi"], ["--memory-limit", "192Mi", "--name", "kms-1"]]
REFUSED = [
    ("--name", "A_B", "name"),
    ("--name", "kms.appliance", "name"),  # a valid pod name, but not a valid container name
    ("--memory-limit", "lots", "memory_limit"),
    ("--memory-limit", "128Mi", "memory_limit"),  # below the 192Mi request
]


def _generated_encryption_config(tmp_path: Path, timeout: str, monkeypatch: pytest.MonkeyPatch,
                                 checked: bool = True) -> dict[str, Any]:
    cfg = config.load(env={}, config_file=Path("/dev/null"),
                      flags={"server.backend": "local", "server.socket": str(tmp_path / "kms.sock")})
    with monkeypatch.context() as m:
        if not checked:
            m.setattr(manifests.k8svalid, "kms_timeout", lambda key, value: value)
        doc: dict[str, Any] = parse(manifests.encryption_config(cfg, timeout=timeout))
    return doc


def test_generators_agree_with_the_apiserver(cluster: Cluster, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One etcd + kube-apiserver for every value (loops rather than parametrize): the static
    pods the generator writes are accepted, what it refuses the apiserver refuses, and the
    apiserver starts with the timeouts it accepts only."""
    cluster.apiserver.start(ApiServerOptions(encryption_config=encryption_config([identity()])))
    # No controller-manager here to create it, and the ServiceAccount admission plugin
    # (before validation) refuses a non-mirror pod without it: the kubelet's mirror pod skips it.
    cluster.kubectl("create", "serviceaccount", "default", "-n", "kube-system")
    for args in ACCEPTED:
        proc = _cli_static_pod(tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
        result = _dry_run(cluster, proc.stdout)
        assert result.returncode == 0, (args, result.stderr)
    for flag, value, kwarg in REFUSED:
        proc = _cli_static_pod(tmp_path, flag, value)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert f" {flag}: " in proc.stderr
        result = _dry_run(cluster, _unchecked_pod(monkeypatch, **{kwarg: value}))
        assert result.returncode != 0, f"the apiserver accepted {flag} {value!r} that the generator refuses"
        assert _refused_by_validation(result.stderr), result.stderr
    for bad in ("Kube-System", "kube_system", "kms.x"):
        assert _cli_static_pod(tmp_path, "--namespace", bad).returncode == 2
        result = cluster.kubectl("create", "namespace", bad, "--dry-run=server", check=False)
        assert result.returncode != 0, f"the apiserver accepted namespace {bad!r}"
        assert _refused_by_validation(result.stderr), result.stderr
    assert cluster.kubectl("create", "namespace", "kms-1", "--dry-run=server", check=False).returncode == 0

    for timeout in ("3s", "1s500ms"):  # a compound duration, short: no plugin answers here
        cluster.apiserver.restart(ApiServerOptions(
            encryption_config=_generated_encryption_config(tmp_path, timeout, monkeypatch), ready_path="/livez"))
    cluster.apiserver.stop()
    for timeout in ("abc", "0s"):
        with pytest.raises(Exception) as err:
            cluster.apiserver.start(ApiServerOptions(
                encryption_config=_generated_encryption_config(tmp_path, timeout, monkeypatch, checked=False),
                ready_path="/livez"))
        assert "exit" in str(err.value).lower() or "died" in str(err.value).lower(), err.value
        log = (cluster.workdir / "logs" / "kube-apiserver.log").read_text()
        assert "timeout" in log, log[-2000:]
