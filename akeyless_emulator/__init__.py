"""A faithful, self-contained fake of the Akeyless API for tests (docs/emulator.md).

Test infrastructure only: never imported by `kms_appliance`, never shipped.
"""

from akeyless_emulator.emulator import Emulator
from akeyless_emulator.jwt import make_jwt
from akeyless_emulator.tls import CertFiles, TestCA

__all__ = ["CertFiles", "Emulator", "TestCA", "make_jwt"]
