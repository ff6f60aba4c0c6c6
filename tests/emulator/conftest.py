"""Fixtures for the emulator's own tests: a running emulator and SDK clients.

The tests talk to the emulator only through the real `akeyless` SDK (or,
for the control plane, plain HTTP), over real loopback sockets.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import akeyless
import pytest

from akeyless_emulator import Emulator
from tests.support.emulator import EmulatorProcess

KEY = "/k8s-etcd-key"


@dataclass
class Client:
    """An SDK client bound to one emulator, already authenticated."""

    api: Any
    token: str
    access_id: str

    def encrypt(self, plaintext: bytes, key: str = KEY, context: dict[str, str] | None = None) -> str:
        """Encrypt bytes (base64 input format); returns the base64 ciphertext."""
        body = akeyless.Encrypt(key_name=key, plaintext=base64.b64encode(plaintext).decode(),
                                input_format="base64", encryption_context=context, token=self.token)
        return str(self.api.encrypt(body, _request_timeout=(5, 10)).result)

    def decrypt(self, ciphertext: str, key: str = KEY, context: dict[str, str] | None = None) -> bytes:
        """Decrypt (base64 output format); returns the plaintext bytes."""
        body = akeyless.Decrypt(key_name=key, ciphertext=ciphertext, output_format="base64",
                                encryption_context=context, token=self.token)
        return base64.b64decode(self.api.decrypt(body, _request_timeout=(5, 10)).result)

    def describe(self, key: str = KEY) -> Any:
        """describe-item with versions."""
        body = akeyless.DescribeItem(name=key, show_versions=True, token=self.token)
        return self.api.describe_item(body, _request_timeout=(5, 10))


def make_api(emu: Emulator | EmulatorProcess, **cfg: Any) -> Any:
    """A V2Api for this emulator, in this process or its own (CA pinned when it serves HTTPS)."""
    conf = akeyless.Configuration(host=emu.url)
    if emu.url.startswith("https:"):
        conf.ssl_ca_cert = str(emu.ca_file)
    for name, value in cfg.items():
        setattr(conf, name, value)
    return akeyless.V2Api(akeyless.ApiClient(conf))


def login(emu: Emulator, api: Any | None = None) -> Client:
    """Register access-key credentials, authenticate through the SDK."""
    ident = emu.add_access_key()
    api = api or make_api(emu)
    out = api.auth(akeyless.Auth(access_id=ident.access_id, access_key=ident.access_key), _request_timeout=(5, 10))
    return Client(api, out.token, ident.access_id)


@pytest.fixture(params=[False, True], ids=["http", "https"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running emulator over HTTP and over HTTPS, with key /k8s-etcd-key."""
    with Emulator(tls=request.param) as e:
        e.create_key(KEY)
        yield e


@pytest.fixture
def plain_emu() -> Iterator[Emulator]:
    """A running plain-HTTP emulator with key /k8s-etcd-key (transport-agnostic tests)."""
    with Emulator() as e:
        e.create_key(KEY)
        yield e


@pytest.fixture
def client(emu: Emulator) -> Client:
    """An authenticated SDK client of `emu`."""
    return login(emu)


@pytest.fixture
def plain_client(plain_emu: Emulator) -> Client:
    """An authenticated SDK client of `plain_emu`."""
    return login(plain_emu)


def api_error(fn: Callable[[], Any]) -> Any:
    """Run an SDK call that must fail with ApiException; return the exception."""
    with pytest.raises(akeyless.ApiException) as info:
        fn()
    return info.value
