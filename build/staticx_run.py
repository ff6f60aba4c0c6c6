"""Run staticx reproducibly, optionally with our patched bootloader.

Why the mtime clamp: staticx copies the libraries into a fresh temp directory and tars them,
so each member carries the build's wall-clock mtime and two builds of one
commit differ in those header bytes (and, compressed, everywhere after).
Clamping the mtime (and owner names) in ``TarFile.gettarinfo`` fixes that.

Why the bootloader swap: KMS_STATICX_BOOTLOADER names the bootloader built by
build/bootloader.sh (stock source plus a clearer temp-dir error); staticx
otherwise takes its prebuilt asset. staticx itself is not modified on disk.
Usage: same arguments as ``staticx``.
"""

from __future__ import annotations

import os
import tarfile
from typing import Any

import staticx.api
from staticx.__main__ import main
from staticx.utils import copy_fileobj_to_tempfile

_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
_gettarinfo = tarfile.TarFile.gettarinfo


def _clamped(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> tarfile.TarInfo:
    info = _gettarinfo(self, *args, **kwargs)
    info.mtime = min(int(info.mtime), _EPOCH)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


tarfile.TarFile.gettarinfo = _clamped  # type: ignore[method-assign]

_BOOTLOADER = os.environ.get("KMS_STATICX_BOOTLOADER")
_copy_asset = staticx.api.copy_asset_to_tempfile


def _asset(name: str, debug: bool, **kwargs: Any) -> Any:
    if name == "bootloader" and _BOOTLOADER:
        with open(_BOOTLOADER, "rb") as src:
            return copy_fileobj_to_tempfile(src, **kwargs)
    return _copy_asset(name, debug, **kwargs)


staticx.api.copy_asset_to_tempfile = _asset

if __name__ == "__main__":
    main()
