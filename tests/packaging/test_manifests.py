"""deploy/: the static pod and EncryptionConfiguration (parsed by a real YAML
parser), and the Prometheus rules (promtool check + unit tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kms_appliance import config, manifests
from tests.support.packaging import REPO, VERSION, run
from tests.support.yamlsubset import parse

pytestmark = pytest.mark.packaging

KUBEADM = REPO / "deploy/kubeadm"
PROM = REPO / "deploy/prometheus"


def yaml_docs(path: Path) -> list[Any]:
    """Parse with PyYAML from Debian's python3-yaml (the product has no YAML library)."""
    code = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"
    return list(json.loads(run(["/usr/bin/python3", "-c", code], input=path.read_text()).stdout))


def test_deploy_files_are_what_the_code_generates() -> None:
    cfg = config.load(env={}, config_file=Path("/dev/null"), flags={"server.backend": "local"})
    assert (KUBEADM / "kms-appliance.yaml").read_text() == \
        manifests.static_pod(cfg, f"localhost/kms-appliance:{VERSION}"), "run `make deploy-manifests`"
    assert (KUBEADM / "encryption-config.yaml").read_text() == manifests.encryption_config(cfg)


def test_static_pod_fields() -> None:
    """The fields themselves are checked in tests/unit/test_manifests.py on the generator's output,
    read with the tests' YAML subset; what the committed file adds: a real YAML parser reads it alike."""
    pod = KUBEADM / "kms-appliance.yaml"
    assert yaml_docs(pod) == [parse(pod.read_text())]


def test_encryption_config_fields() -> None:
    (enc,) = yaml_docs(KUBEADM / "encryption-config.yaml")
    assert (enc["apiVersion"], enc["kind"]) == ("apiserver.config.k8s.io/v1", "EncryptionConfiguration")
    (res,) = enc["resources"]
    assert res["resources"] == ["secrets"]
    kms, identity = res["providers"]
    assert identity == {"identity": {}}
    assert kms["kms"] == {"apiVersion": "v2", "name": "kms-appliance",
                          "endpoint": "unix:///run/kms-appliance/kms.sock", "timeout": "3s"}


def test_promtool_check_rules() -> None:
    out = run(["promtool", "check", "rules", PROM / "kms-appliance-rules.yml"]).stdout
    assert "SUCCESS: 7 rules found" in out


def test_promtool_unit_tests_pass_and_catch_a_broken_rule(tmp_path: Path) -> None:
    run(["promtool", "test", "rules", "kms-appliance-rules.test.yml"], cwd=PROM)
    # The same tests against a rule that no longer fires must fail.
    shutil.copy(PROM / "kms-appliance-rules.test.yml", tmp_path)
    rules = (PROM / "kms-appliance-rules.yml").read_text()
    broken = rules.replace("> 0.05", "> 0.5")
    assert broken != rules
    (tmp_path / "kms-appliance-rules.yml").write_text(broken)
    proc = run(["promtool", "test", "rules", "kms-appliance-rules.test.yml"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "KmsApplianceErrorRate" in proc.stdout + proc.stderr
