"""The operator docs say what the code does: each test reads a doc against the code it describes."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from kms_appliance import config, errors, k8svalid, manifests, socketfs
from kms_appliance.backends.akeyless import classify, keystate
from tests.support.procs import REPO

DOCS = REPO / "docs"


def test_akeyless_error_table_labels_are_the_code_outcomes() -> None:
    rows = re.findall(r"^\| `(\w+)`[^|]*\|[^|]*\| (\w+) \|$", (DOCS / "akeyless.md").read_text(), re.M)
    assert len(rows) >= 6, rows
    for name, label in rows:
        cls = getattr(errors, name, None) or getattr(classify, name)
        assert label == cls.outcome, f"docs/akeyless.md says {name} is {label!r}, the code says {cls.outcome!r}"


def test_audit_log_key_id_example_is_what_the_akeyless_backend_emits() -> None:
    doc = (DOCS / "audit-log.md").read_text()
    examples = [line for line in doc.splitlines() if line.startswith('{"ts"') and '"backend":"akeyless"' in line]
    assert examples
    for line in examples:
        key_id = re.search(r'"key_id":"([^"]*)"', line)
        version = re.search(r'"key_version":"([^"]*)"', line)
        assert key_id and version
        item_id = key_id.group(1).split(":")[1]
        assert key_id.group(1) == keystate.make_key_id(int(item_id), int(version.group(1)))
    assert "`akeyless:<item_id>:<version>`" in doc


# Measured: du -sb of $TMPDIR while dist/kms-appliance serves (staticx 57.3 MB + _MEI 50.1 MB).
UNPACK_MEASURED_BYTES = 107_399_041


@pytest.mark.parametrize("path", ["docs/deployment.md", "docs/binary.md", "kms_appliance/cli.py",
                                  "kms_appliance/manifests.py", "Dockerfile.distroless", "README.md"])
def test_no_stale_unpack_figure(path: str) -> None:
    text = (REPO / path).read_text()
    assert not re.search(r"~\s*80\s*MB", text), f"{path} still says ~80 MB"


def test_unpack_figure_and_sizes_agree() -> None:
    figure = f"~{UNPACK_MEASURED_BYTES / 2**20:.0f} MiB"
    for path in ("docs/deployment.md", "kms_appliance/cli.py", "kms_appliance/manifests.py",
                 "Dockerfile.distroless"):
        assert figure in (REPO / path).read_text().replace("\n# ", " "), f"{path} lacks {figure}"
    tmpfs = k8svalid.quantity("sizeLimit", manifests.UNPACK_SIZE_LIMIT)
    # room for a killed start's leftovers beside a fresh unpack (kms_appliance/unpack.py), within
    # the default memory limit
    assert 2 * UNPACK_MEASURED_BYTES < tmpfs < k8svalid.quantity("limit", "384Mi")
    # podman's --tmpfs size=256m (docs, Dockerfile) is the same 256 MiB as the emptyDir's sizeLimit.
    for path in ("docs/deployment.md", "Dockerfile.distroless"):
        sizes = re.findall(r"size=(\d+)m\b", (REPO / path).read_text())
        assert sizes and all(int(s) * 2**20 == tmpfs for s in sizes), (path, sizes)


def test_migration_doc_says_the_old_tmp_socket_is_refused() -> None:
    cfg = config.load(env={"AKEYLESS_UNIX_SOCKET": "unix:///tmp/akeyless_kms_plugin.sock"},
                      config_file=Path("/dev/null"), flags={"server.backend": "local"})
    assert cfg.server.socket == Path("/tmp/akeyless_kms_plugin.sock")
    st = Path("/tmp").stat()
    assert st.st_mode & stat.S_IWOTH
    with pytest.raises(errors.SetupError, match="writable by others"):
        socketfs.check_dir_stat(Path("/tmp"), st, None)
    migration = (DOCS / "akeyless.md").read_text().split("## Migration", 1)[1]
    assert "/tmp/akeyless_kms_plugin.sock" in migration and "refused" in migration
    assert "environment can stay as it is." not in migration.replace("\n", " ")


def test_tmpdir_is_the_same_in_unit_image_pod_and_docs() -> None:
    unit = (REPO / "packaging" / "systemd" / "kms-appliance.service").read_text()
    (unit_tmp,) = re.findall(r"^Environment=TMPDIR=(\S+)$", unit, re.M)
    runtime_dirs = re.search(r"^RuntimeDirectory=(.*)$", unit, re.M)
    assert runtime_dirs and unit_tmp.removeprefix("/run/") in runtime_dirs.group(1).split()
    for doc in ("binary.md", "deployment.md"):
        assert f"TMPDIR={unit_tmp}`" in (DOCS / doc).read_text(), doc
    (image_tmp,) = re.findall(r"^ENV TMPDIR=(\S+)$", (REPO / "Dockerfile.distroless").read_text(), re.M)
    assert image_tmp == manifests.UNPACK_DIR
    assert f"`TMPDIR={image_tmp}` in the image" in (DOCS / "deployment.md").read_text()


def test_packaged_config_names_every_setting() -> None:
    """packaging/config.toml (the operator's starting point) shows every setting in its section."""
    shown: set[str] = set()
    section = ""
    for text in (REPO / "packaging" / "config.toml").read_text().splitlines():
        head = re.match(r"^\[(\w+)\]$", text)
        if head:
            section = head.group(1)
            continue
        name = re.match(r"^#?(\w+) = ", text)
        if name and section:
            shown.add(f"{section}.{name.group(1)}")
    keys = {key for key, *_ in config.describe()}
    assert keys - shown == set(), "settings missing from packaging/config.toml"
    assert shown - keys == set(), "packaging/config.toml names settings that do not exist"
