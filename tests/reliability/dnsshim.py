"""Run the plugin with a resolver that can be made to fail (DNS fault injection).

``python -m tests.reliability.dnsshim FLAGFILE serve ...``: while FLAGFILE exists, lookups of
``localhost`` fail with EAI_NONAME (what glibc raises for a name that does not resolve);
connections, TLS and the plugin itself are the real ones, so no DNS server is needed.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

_real = socket.getaddrinfo


def main() -> int:
    flag = sys.argv[1]

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name == "localhost" and os.path.exists(flag):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return _real(host, *args, **kw)

    socket.getaddrinfo = getaddrinfo
    from kms_appliance import cli  # imported after the hook is in place

    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
