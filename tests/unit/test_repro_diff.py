"""build/repro_diff.py names the member that differs, however deep it sits: its report is the only
diagnosis a failed `make repro-check` prints, so each layer (tar, gzip, ar, cpio, OCI) is built here
for real with one planted difference."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.helpers import script


@pytest.fixture(scope="module")
def rd() -> ModuleType:
    return script("build/repro_diff.py")


def _tar(files: dict[str, bytes], mtime: int = 1000, mtimes: dict[str, int] | None = None,
         uname: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o644
            info.mtime = (mtimes or {}).get(name, mtime)
            info.uname = uname
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _gz(data: bytes, mtime: int = 0) -> bytes:
    return gzip.compress(data, mtime=mtime)


def _ar(members: dict[str, bytes], mtime: int = 0) -> bytes:
    out = b"!<arch>\n"
    for name, body in members.items():
        header = f"{name:<16}{mtime:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += header + body + (b"\n" if len(body) % 2 else b"")
    return out


def _cpio(files: dict[str, tuple[bytes, int]]) -> bytes:
    out = b""
    for i, (name, (body, uid)) in enumerate([*files.items(), ("TRAILER!!!", (b"", 0))]):
        fields = [i + 1, 0o100644, uid, 0, 1, 0, len(body), 0, 0, 0, 0, len(name) + 1, 0]
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        entry = header + name.encode() + b"\0"
        entry += b"\0" * (-len(entry) % 4) + body
        out += entry + b"\0" * (-len(entry) % 4)
    return out


@pytest.mark.parametrize(("name", "a", "b", "report"), [
    ("x.tar.gz", _gz(_tar({"a": b"x"})), _gz(_tar({"a": b"x"})), []),
    ("b.tar.gz", _gz(_tar({"a": b"x"}), mtime=1), _gz(_tar({"a": b"x"}), mtime=2),
     ["b.tar.gz: gzip header mtime 1 != 2"]),
    ("k.deb", _ar({"debian-binary": b"2.0\n"}, 5), _ar({"debian-binary": b"2.0\n"}, 6),
     ["k.deb:debian-binary: mtime '5' != '6'"]),
    ("p.cpio", _cpio({"./usr/bin/k": (b"bin", 0)}), _cpio({"./usr/bin/k": (b"bin", 1000)}),
     ["p.cpio:./usr/bin/k: uid 0 != 1000"]),
], ids=["identical", "gzip-header-mtime", "ar-member-mtime", "cpio-owner"])
def test_one_planted_difference_is_the_whole_report(rd: ModuleType, name: str, a: bytes, b: bytes,
                                                    report: list[str]) -> None:
    assert rd.compare_bytes(name, a, b) == report


def test_tar_member_metadata_and_content(rd: ModuleType) -> None:
    a = _tar({"etc/x": b"same", "usr/y": b"one\n"}, mtimes={"etc/x": 1})
    b = _tar({"etc/x": b"same", "usr/y": b"two\n"}, mtimes={"etc/x": 2})
    report = rd.compare_bytes("t.tar", a, b)
    assert "t.tar:etc/x: mtime 1 != 2" in report
    assert "t.tar:usr/y: text differs:" in report
    assert "    -one" in report and "    +two" in report
    assert not any("usr/y: mtime" in line for line in report)


def test_tar_owner_name_and_order(rd: ModuleType) -> None:
    a = _tar({"a": b"1", "b": b"2"}, uname="builder")
    b = _tar({"b": b"2", "a": b"1"}, uname="root")
    report = rd.compare_bytes("t.tar", a, b)
    assert "t.tar: members in a different order" in report
    assert "t.tar:a: uname 'builder' != 'root'" in report


def _oci(created: str, layer_mtime: int, annotation: str) -> bytes:
    """A one-manifest OCI layout as `buildah push oci-archive:` writes it."""
    blobs: dict[str, bytes] = {}

    def add(body: bytes) -> dict[str, object]:
        digest = hashlib.sha256(body).hexdigest()
        blobs[f"blobs/sha256/{digest}"] = body
        return {"digest": f"sha256:{digest}", "size": len(body)}

    layer = _gz(_tar({"usr/bin/k": b"\x7fELFbinary"}, mtime=layer_mtime))
    config = json.dumps({"created": created, "config": {"User": "65532"}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **add(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **add(layer)}],
        "annotations": {"org.opencontainers.image.created": annotation},
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **add(manifest)}]}).encode()
    return _tar({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index, **blobs})


def test_oci_pairs_blobs_by_position(rd: ModuleType) -> None:
    """Changed blobs change their names; the report still says which field and which file."""
    report = rd.compare_bytes("i_oci.tar", _oci("1970-01-01T00:00:00Z", 10, "x"), _oci("2026-12-06T16:00:00Z", 11, "y"))
    assert 'i_oci.tar: manifest[0].annotations.org.opencontainers.image.created: \'"x"\' != \'"y"\'' in report
    assert "i_oci.tar: manifest[0] config.created: '\"1970-01-01T00:00:00Z\"' != '\"2026-12-06T16:00:00Z\"'" in report
    assert "i_oci.tar: manifest[0] layer[0]:usr/bin/k: mtime 10 != 11" in report
    assert not any("only in" in line for line in report)


def test_bundle_nests_everything(rd: ModuleType) -> None:
    """The bundle holds the deb (ar -> data.tar.gz -> file): a difference deep inside names the
    whole path an operator would unpack; the members that agree are not named."""
    def bundle(conf: bytes) -> bytes:
        deb = _ar({"debian-binary": b"2.0\n", "control.tar.gz": _gz(_tar({"./control": b"Package: k\n"})),
                   "data.tar.gz": _gz(_tar({"./etc/k.conf": conf}))})
        return _gz(_tar({"b/k.deb": deb, "b/INSTALL.md": b"same\n"}))
    report = rd.compare_bytes("b.tar.gz", bundle(b"1\n"), bundle(b"2\n"))
    assert report[0] == "b.tar.gz:b/k.deb:data.tar.gz:./etc/k.conf: text differs:"
    assert not any("control.tar.gz" in line or "INSTALL.md" in line for line in report)


def test_directories_name_missing_files(rd: ModuleType, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.json").write_text('{"k": 1, "same": 0}')
    (b / "x.json").write_text('{"k": 2, "same": 0}')
    (a / "only-a").write_bytes(b"\0\1")
    report = rd.compare(a, b)
    assert report == [f"only-a: only in {a}", "x.json.k: '1' != '2'"]
