"""Every auth method and the detection order, against the emulator over HTTPS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akeyless_emulator import Emulator
from kms_appliance.backends.akeyless.backend import AkeylessBackend
from kms_appliance.backends.akeyless.methods import detect
from kms_appliance.errors import SetupError
from kms_appliance.metrics import Metrics
from tests.integration.akeyless.conftest import load_cfg
from tests.integration.akeyless.metadata import MetadataServer
from tests.support.procs import eventually


def _works(b: AkeylessBackend, method: str) -> None:
    """``b`` logged in with ``method``, and wraps and unwraps."""
    assert b.auth.method == method
    w = b.wrap(os.urandom(32))
    assert b.unwrap(w.ciphertext, w.key_id, {}).plaintext


class TestMethods:
    """Each access type authenticates and wraps (an access key, right and wrong: test_akeyless_check.py;
    a Universal Identity token: TestUidRotation)."""

    def test_access_key_file(self, emu: Emulator, base_env, make_backend, tmp_path: Path):
        ident = emu.add_access_key()
        key_file = tmp_path / "ak"
        key_file.write_text(ident.access_key + "\n")
        env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id,
               "KMS_APPLIANCE_AKEYLESS_ACCESS_KEY_FILE": str(key_file)}
        _works(make_backend(env), "access_key")

    def test_aws_iam_from_instance_metadata(self, emu: Emulator, base_env, make_backend):
        ident = emu.add_aws_iam("p-awsidentity1", "AKIAEMULATOR", "aws-secret")
        with MetadataServer(aws=("AKIAEMULATOR", "aws-secret", "session-tok")) as md:
            env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id, "AWS_EC2_METADATA_SERVICE_ENDPOINT": md.base}
            b = make_backend(env)
            assert "PUT /latest/api/token" in md.seen  # IMDSv2
        _works(b, "aws_iam")

    def test_azure_ad(self, emu: Emulator, base_env, make_backend):
        ident, token = emu.add_azure_ad("p-azureident01")
        with MetadataServer(azure_token=token) as md:
            env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id, "AZURE_POD_IDENTITY_AUTHORITY_HOST": md.base}
            b = make_backend(env)
        _works(b, "azure_ad")

    def test_gcp(self, emu: Emulator, base_env, make_backend):
        ident, token = emu.add_gcp("p-gcpidentity1", audience="akeyless.io")
        with MetadataServer(gcp_token=token) as md:
            env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id, "GCE_METADATA_HOST": md.hostport}
            b = make_backend(env)
        _works(b, "gcp")

    def test_k8s(self, emu: Emulator, base_env, make_backend, tmp_path: Path):
        ident, jwt = emu.add_k8s("p-k8sidentity1", config_name="cluster-a")
        token_file = tmp_path / "sa-token"
        token_file.write_text(jwt)
        env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id,
               "KMS_APPLIANCE_AKEYLESS_K8S_AUTH_CONFIG_NAME": "cluster-a",
               "KMS_APPLIANCE_AKEYLESS_K8S_TOKEN_FILE": str(token_file)}
        _works(make_backend(env), "k8s")

    def test_cert(self, emu: Emulator, base_env, make_backend):
        ident = emu.add_cert("p-certidentity")
        files = emu.mint_client_cert()
        env = {**base_env, "AKEYLESS_ACCESS_ID": ident.access_id,
               "KMS_APPLIANCE_AKEYLESS_ACCESS_TYPE": "cert",
               "KMS_APPLIANCE_AKEYLESS_CERT_FILE": files.cert_file,
               "KMS_APPLIANCE_AKEYLESS_KEY_FILE": files.key_file}
        _works(make_backend(env), "cert")


class TestDetection:
    """access key, then UID token, then k8s config, then AWS, Azure, GCP metadata."""

    def test_access_key_wins_over_uid_token(self, base_env):
        env = {**base_env, "AKEYLESS_ACCESS_ID": "p-x", "AKEYLESS_ACCESS_KEY": "k", "AKEYLESS_UID_INIT_TOKEN": "u-x"}
        assert detect(load_cfg(env).akeyless, env)[0] == "access_key"

    def test_uid_token_before_cloud(self, base_env):
        env = {**base_env, "AKEYLESS_ACCESS_ID": "p-x", "AKEYLESS_UID_INIT_TOKEN": "u-x",
               "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}
        assert detect(load_cfg(env).akeyless, env)[0] == "universal_identity"

    def test_cloud_order_aws_then_azure_then_gcp(self, base_env):
        with MetadataServer(azure_token="a.b.c", gcp_token="g.h.i") as md:
            env = {**base_env, "AKEYLESS_ACCESS_ID": "p-x",
                   "AZURE_POD_IDENTITY_AUTHORITY_HOST": md.base, "GCE_METADATA_HOST": md.hostport}
            method, tried = detect(load_cfg(env).akeyless, env)
            assert method == "azure_ad"
            assert any(t.startswith("aws_iam:") for t in tried)
            env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = "http://127.0.0.1:9"
            assert detect(load_cfg(env).akeyless, env)[0] == "gcp"

    def test_nothing_found_lists_everything_tried(self, base_env):
        env = {**base_env, "AKEYLESS_ACCESS_ID": "p-x"}
        with pytest.raises(SetupError) as info:
            detect(load_cfg(env).akeyless, env)
        for step in ("access_key", "universal_identity", "k8s", "aws_iam", "azure_ad", "gcp"):
            assert step in info.value.message


class TestUidRotation:
    """The UID token is rotated on schedule, saved atomically 0600, and survives a restart; a failing
    rotation is counted, not fatal."""

    def test_rotation_persisted_restart_and_a_failing_rotation(self, emu: Emulator, base_env, make_backend,
                                                               tmp_path: Path):
        first = emu.add_universal_identity()
        access_id = emu.core.tokens.tokens[first].access_id
        token_file = tmp_path / "uid-token"
        env = {**base_env, "AKEYLESS_ACCESS_ID": access_id, "AKEYLESS_UID_INIT_TOKEN": first,
               "KMS_APPLIANCE_AKEYLESS_UID_TOKEN_FILE": str(token_file)}
        m = Metrics()
        b = make_backend(env, metrics=m, uid_rotate_interval=0.3)
        _works(b, "universal_identity")  # logged in with the initial token
        assert eventually(lambda: emu.calls["uid-rotate-token"] >= 2, 10, 0.05)
        # live gauge: the UID token's remaining TTL (learnt with /validate-token)
        assert 3000 < m.registry.get_sample_value("kms_appliance_token_expiry_seconds") <= 3600
        b.close()
        saved = token_file.read_text().strip()
        assert saved.startswith("u-")
        assert saved != first
        assert token_file.stat().st_mode & 0o777 == 0o600
        # restart: the file (newer) wins over the dead initial token
        b2 = make_backend(env)
        _works(b2, "universal_identity")
        b2.close()
        emu.fault("uid-rotate-token", status=503)
        m = Metrics()
        b3 = make_backend(env, metrics=m, uid_rotate_interval=0.2)
        assert eventually(lambda: (m.registry.get_sample_value("kms_appliance_token_rotation_failures_total")
                                   or 0) >= 1, 10, 0.05)
        _works(b3, "universal_identity")
