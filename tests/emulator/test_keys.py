"""Encrypt / decrypt / describe-item through the real SDK, and what they refuse."""

from __future__ import annotations

import base64

import akeyless
import pytest

from akeyless_emulator import Emulator

from .conftest import KEY, Client, api_error


class TestRoundTrip:
    """Ciphertext from /encrypt decrypts back, bound to key and context."""

    def test_each_encryption_is_fresh(self, client: Client) -> None:
        """Two encryptions of the same plaintext differ (random nonce)."""
        assert client.encrypt(b"same") != client.encrypt(b"same")

    def test_text_formats_are_not_emulated(self, client: Client) -> None:
        """Only base64 plaintexts are emulated (all the plugin sends): a text one is a 400, not a guess."""
        err = api_error(lambda: client.api.encrypt(akeyless.Encrypt(key_name=KEY, plaintext="x", token=client.token)))
        assert (err.status, "input-format" in err.body) == (400, True)

    def test_key_name_without_leading_slash_is_the_same_item(self, client: Client) -> None:
        """Akeyless names are paths: `k8s-etcd-key` is `/k8s-etcd-key`."""
        assert client.decrypt(client.encrypt(b"x", key="k8s-etcd-key")) == b"x"

    @pytest.mark.parametrize("ctx", [None, {"cluster": "dev"}, {"cluster": "prod", "x": "y"}])
    def test_mismatched_encryption_context_is_400(self, client: Client, ctx: dict[str, str] | None) -> None:
        ciphertext = client.encrypt(b"dek", context={"cluster": "prod"})
        err = api_error(lambda: client.decrypt(ciphertext, context=ctx))
        assert err.status == 400
        assert "dek" not in err.body

    def test_garbage_ciphertext_is_400(self, client: Client) -> None:
        """Not base64, or too short, are both 400 with a JSON body."""
        assert api_error(lambda: client.decrypt("!!not-base64!!")).status == 400
        err = api_error(lambda: client.decrypt(base64.b64encode(b"short").decode()))
        assert err.status == 400
        assert '"error"' in err.body

    def test_ciphertext_of_another_key_is_400(self, emu: Emulator, client: Client) -> None:
        """The item id in the header ties a ciphertext to its key."""
        emu.create_key("/other")
        err = api_error(lambda: client.decrypt(client.encrypt(b"dek", key="/other")))
        assert err.status == 400

    def test_unknown_key_is_404(self, client: Client) -> None:
        assert api_error(lambda: client.encrypt(b"x", key="/nope")).status == 404


class TestVersions:
    """The version travels in the ciphertext; describe-item and disabled versions or keys."""

    def test_ciphertext_header_layout(self, emu: Emulator, client: Client) -> None:
        """The documented header: marker 0x01, item id, version (big-endian)."""
        emu.rotate_key(KEY)
        raw = base64.b64decode(client.encrypt(b"x"))
        assert raw[0] == 1
        assert int.from_bytes(raw[1:9], "big") == client.describe().item_id
        assert int.from_bytes(raw[9:13], "big") == 2
        assert raw[13:15] == b"\0\0"
        assert len(raw) == 15 + 12 + 1 + 16

    def test_describe_without_show_versions(self, client: Client) -> None:
        """item_versions is only sent when show-versions is set."""
        item = client.api.describe_item(akeyless.DescribeItem(name=KEY, token=client.token))
        assert item.last_version == 1
        assert item.item_versions is None

    def test_disabled_latest_version_or_key_is_403(self, emu: Emulator, client: Client) -> None:
        """Encrypt needs the latest version enabled; a disabled key refuses both directions."""
        ciphertext = client.encrypt(b"x")
        emu.rotate_key(KEY)
        emu.set_version_state(KEY, 2, "Disabled")
        assert api_error(lambda: client.encrypt(b"x")).status == 403
        emu.set_key_enabled(KEY, False)
        assert api_error(lambda: client.encrypt(b"x")).status == 403
        assert api_error(lambda: client.decrypt(ciphertext)).status == 403
        assert client.describe().is_enabled is False
