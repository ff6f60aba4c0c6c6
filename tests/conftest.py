"""Settings every test suite needs before anything imports grpc.

grpcio enables gRPC's fork support by default: its pthread_atfork handlers
run on every fork, and a fork that coincides with a channel's background
shutdown deadlocks inside ``subprocess.Popen`` (grpc/grpc#37259; seen here
when the e2e suite started kube-apiserver right after closing its KMS
client). The test processes fork constantly (plugins, etcd, apiservers) and
never use gRPC in a forked child, so the handlers are turned off. The
appliance itself never forks.
"""

from __future__ import annotations

import os

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
