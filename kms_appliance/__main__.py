"""``python -m kms_appliance``: same as the ``kms-appliance`` command."""

from .cli import main

raise SystemExit(main())
