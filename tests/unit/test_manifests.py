"""The generators (kms_appliance/manifests.py) and their CLI: the static pod carries every field the
kubeadm walkthrough relies on, the EncryptionConfiguration CLI refuses what kube-apiserver would, and
both keep an output file untouched on refusal. Documents are read with tests/support/yamlsubset.py (the
product has no YAML library; tests/packaging uses a real one; test_encconfig.py reviews them)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from kms_appliance import cli, config, manifests
from kms_appliance.errors import ConfigError
from tests.support.plugin import cli as run_cli
from tests.support.yamlsubset import parse

IMAGE = "registry.example:5000/kms-appliance:0.1.0"


def load(tmp_path: Path, body: str = "") -> config.Config:
    f = tmp_path / "c.toml"
    f.write_text(body)
    return config.load(env={}, config_file=f)


def test_pod_carries_every_hardening_field(tmp_path: Path) -> None:
    pod = parse(manifests.static_pod(load(tmp_path, '[server]\nbackend = "akeyless"\n[akeyless]\n'
                                                    'access_id = "p-1"\nkey_name = "/k"\n'), IMAGE))
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert pod["metadata"]["namespace"] == "kube-system"
    spec = pod["spec"]
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    assert c["image"] == IMAGE
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"] == "384Mi"
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert (get["host"], get["path"], get["port"]) == ("127.0.0.1", path, 8787)
    assert "--socket=/run/kms-appliance/kms.sock" in c["args"]
    assert "--http-listen=127.0.0.1:8787" in c["args"]
    assert "--config=/etc/kms-appliance/config.toml" in c["args"]


def test_volumes_socket_hostpath_and_memory_unpack_dir(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[server]\nbackend = "local"\nsocket = "/var/run/kmsp/plugin.sock"\n')
    pod = parse(manifests.static_pod(cfg, IMAGE))
    (c,) = pod["spec"]["containers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert volumes["socket-dir"]["hostPath"] == {"path": "/var/run/kmsp", "type": "Directory"}
    assert mounts["socket-dir"]["mountPath"] == "/var/run/kmsp"
    assert volumes["unpack"]["emptyDir"]["medium"] == "Memory"
    assert mounts["unpack"]["mountPath"] == "/tmp"
    assert {"name": "TMPDIR", "value": "/tmp"} in c["env"]
    assert mounts["config"]["readOnly"] is True
    assert "readOnly" not in mounts["state"]
    # Every mount has its volume and the other way round.
    assert set(mounts) == set(volumes)


def test_probe_host_for_wildcard_listen_and_grace(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[server]\nbackend = "local"\ngrace_period = "20s"\n'
                         '[observability]\nhttp_listen = "0.0.0.0:9100"\n')
    pod = parse(manifests.static_pod(cfg, IMAGE, name="kms", namespace="ns"))
    (c,) = pod["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["host"] == "127.0.0.1"
    assert c["readinessProbe"]["httpGet"]["port"] == 9100
    assert pod["spec"]["terminationGracePeriodSeconds"] == 25
    assert (pod["metadata"]["name"], pod["metadata"]["namespace"]) == ("kms", "ns")


def test_refuses_without_http_endpoint(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[server]\nbackend = "local"\n[observability]\nhttp_listen = ""\n')
    with pytest.raises(ConfigError) as err:
        manifests.static_pod(cfg, IMAGE)
    assert err.value.key == "observability.http_listen"


def test_cli_static_pod(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "etc" / "kms.toml"
    conf.parent.mkdir()
    conf.write_text('[server]\nbackend = "local"\n')
    assert cli.main(["static-pod", "--config", str(conf), "--image", IMAGE, "--socket",
                     "/run/k/kms.sock"]) == 0
    pod = parse(capsys.readouterr().out)
    (c,) = pod["spec"]["containers"]
    assert f"--config={conf}" in c["args"] and "--socket=/run/k/kms.sock" in c["args"]
    assert {v["name"]: v for v in pod["spec"]["volumes"]}["config"]["hostPath"]["path"] == str(conf.parent)


def test_cli_static_pod_needs_image() -> None:
    with pytest.raises(SystemExit) as err:
        cli.main(["static-pod"])
    assert err.value.code == 2


def assert_refused(proc: subprocess.CompletedProcess[str], flag: str) -> None:
    """Exit 2, one stderr line naming the flag, nothing on stdout (no half-written manifest)."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kms-appliance: configuration error: {flag}: "), lines[0]


@pytest.mark.parametrize(("args", "flag"), [
    (["--name", "A_B"], "--name"),
    (["--namespace", "Kube-System"], "--namespace"),
    (["--memory-limit", "lots"], "--memory-limit"),
    (["--memory-limit", "128Mi"], "--memory-limit"),  # below the 192Mi request: the apiserver refuses it
    (["--image", "Registry.example/KMS:1"], "--image"),
    (["--socket", "/tmp/kms.sock"], "--socket"),  # socket dir would be mounted over the unpack dir
])
def test_cli_static_pod_refuses_invalid(tmp_path: Path, args: list[str], flag: str) -> None:
    argv = ["static-pod", "--image", IMAGE, *args]
    if "--image" in args:
        argv = ["static-pod", *args]
    assert_refused(run_cli(tmp_path, *argv), flag)


def test_cli_static_pod_refuses_config_dir_shared(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "kms.toml"
    proc = run_cli(tmp_path, "static-pod", "--image", IMAGE, "--socket", f"{conf.parent}/kms.sock")
    assert_refused(proc, "--config")


def test_cli_static_pod_takes_a_kubernetes_quantity_name_and_namespace(tmp_path: Path) -> None:
    """Given as written; a limit equal to the 192Mi request is enough (the quantities accepted:
    test_k8svalid.py::test_quantity_accepted)."""
    proc = run_cli(tmp_path, "static-pod", "--image", IMAGE, "--memory-limit", "192Mi", "--name", "kms-1",
                   "--namespace", "kms")
    assert proc.returncode == 0, proc.stderr
    pod = parse(proc.stdout)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "192Mi"
    assert (pod["metadata"]["name"], pod["metadata"]["namespace"]) == ("kms-1", "kms")


def test_cli_static_pod_output_untouched_on_refusal(tmp_path: Path) -> None:
    out = tmp_path / "manifests" / "kms-appliance.yaml"
    out.parent.mkdir(mode=0o700)
    out.write_text("previous\n")
    assert_refused(run_cli(tmp_path, "static-pod", "--image", IMAGE, "--name", "A_B", "-o", str(out)), "--name")
    assert out.read_text() == "previous\n"
    proc = run_cli(tmp_path, "static-pod", "--image", IMAGE, "-o", str(out))
    assert (proc.returncode, proc.stdout) == (0, "")
    assert parse(out.read_text())["kind"] == "Pod"


def test_refuses_bad_kms_api_and_provider_name(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[server]\nsocket = "/run/k/kms.sock"\nprovider_name = "akl"\n')
    with pytest.raises(ConfigError) as err:
        manifests.encryption_config(cfg, kms_api="v3")
    assert err.value.key == "--kms-api"
    bad = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, provider_name="a:b"))
    with pytest.raises(ConfigError) as err:
        manifests.encryption_config(bad)
    assert err.value.key == "--provider-name"


def test_output_is_atomic_and_untouched_on_refusal(tmp_path: Path) -> None:
    """A shell redirect would have emptied the file kube-apiserver reads; --output keeps it. A
    timeout kube-apiserver refuses is refused (the values: test_k8svalid.py's kms_timeout rule), one
    given is written as is."""
    out = tmp_path / "enc.yaml"
    out.write_text("previous\n")
    assert_refused(run_cli(tmp_path, "encryption-config", "--timeout=abc", "--output", str(out)), "--timeout")
    assert out.read_text() == "previous\n"
    done = run_cli(tmp_path, "encryption-config", "--timeout=1m30s", "--output", str(out))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    doc = parse(out.read_text())
    assert (doc["kind"], doc["resources"][0]["providers"][0]["kms"]["timeout"]) == ("EncryptionConfiguration", "1m30s")
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.yaml", "etc"]  # no temporary left
