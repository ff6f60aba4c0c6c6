"""Frozen entry point: the same thing as ``python -m kms_appliance``.

Why a separate file: PyInstaller wants a script, and ``kms_appliance/__main__.py``
is a module inside the package (freezing it as the script would load the
package twice, once as ``__main__``).
"""

from kms_appliance.cli import main

raise SystemExit(main())
