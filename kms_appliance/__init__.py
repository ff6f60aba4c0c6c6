"""kms-appliance: a hardened Kubernetes KMS v2/v1beta1 plugin with the KEK in Akeyless."""

from .version import __version__

__all__ = ["__version__"]
