"""Run staticx with a reproducible archive: every tar member gets mtime SOURCE_DATE_EPOCH.

Why: staticx copies the libraries into a fresh temp directory and tars them,
so each member carries the build's wall-clock mtime and two builds of one
commit differ in those header bytes (and, compressed, everywhere after).
Clamping the mtime (and owner names) in ``TarFile.gettarinfo`` is the only
change; staticx itself is untouched. Usage: same arguments as ``staticx``.
"""

from __future__ import annotations

import os
import tarfile
from typing import Any

from staticx.__main__ import main

_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
_gettarinfo = tarfile.TarFile.gettarinfo


def _clamped(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> tarfile.TarInfo:
    info = _gettarinfo(self, *args, **kwargs)
    info.mtime = min(int(info.mtime), _EPOCH)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


tarfile.TarFile.gettarinfo = _clamped  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
