"""Kubernetes documents generated from the configuration: EncryptionConfiguration, static pod.

YAML is written by hand (no YAML library in the binary); the values are
validated config strings, so quoting them as JSON strings is valid YAML.
"""

from __future__ import annotations

import json
import posixpath

from .config import Config
from .errors import ConfigError


def encryption_config(cfg: Config, kms_api: str = "v2", timeout: str = "3s",
                      resources: tuple[str, ...] = ("secrets",)) -> str:
    """An EncryptionConfiguration pointing at this plugin, then identity for old data."""
    endpoint = json.dumps(f"unix://{cfg.server.socket}")
    lines = [
        "apiVersion: apiserver.config.k8s.io/v1",
        "kind: EncryptionConfiguration",
        "resources:",
        f"  - resources: [{', '.join(resources)}]",
        "    providers:",
        "      - kms:",
        f"          apiVersion: {kms_api}",
        f"          name: {json.dumps(cfg.server.provider_name)}",
        f"          endpoint: {endpoint}",
    ]
    if kms_api == "v1":
        lines.append("          cachesize: 1000")
    lines += [f"          timeout: {timeout}", "      - identity: {}"]
    return "\n".join(lines) + "\n"


# The binary unpacks ~80 MB into TMPDIR at every start; a memory-backed
# emptyDir counts against the container's memory limit, hence both numbers.
UNPACK_DIR = "/tmp"  # noqa: S108 - inside the container, on its own private emptyDir
UNPACK_SIZE_LIMIT = "128Mi"
NONROOT_UID = 65532


def static_pod(cfg: Config, image: str, name: str = "kms-appliance", namespace: str = "kube-system",
               config_file: str = "/etc/kms-appliance/config.toml", state_dir: str = "/var/lib/kms-appliance",
               memory_limit: str = "384Mi") -> str:
    """A static pod for a control-plane node (kubelet's staticPodPath).

    Runs the distroless image as uid 65532 with a read-only root, no
    capabilities and seccomp RuntimeDefault; the socket directory is a
    hostPath shared with kube-apiserver. hostNetwork so the kubelet probes the
    loopback-only /livez and /readyz, and so an apiserver outage cannot take
    the plugin's network with it. ``config_file`` is mounted (its directory,
    read-only) at the same path in the container. The socket and state directories must
    exist, owned by 65532 (see docs/deployment.md): hostPath would create them
    root-owned, where a non-root plugin cannot bind.
    """
    listen = cfg.observability.http_listen
    if listen is None:
        raise ConfigError("observability.http_listen",
                          "must be set: the static pod's probes use /livez and /readyz")
    host, port = listen
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - comparison only
    sock_dir = str(cfg.server.socket.parent)
    q = json.dumps
    config_dir = posixpath.dirname(config_file)
    args = [f"--config={config_file}", f"--socket={cfg.server.socket}",
            f"--http-listen={host}:{port}" if ":" not in host else f"--http-listen=[{host}]:{port}"]
    grace = int(cfg.server.grace_period) + 5
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        f"  name: {q(name)}",
        f"  namespace: {q(namespace)}",
        "  labels:",
        f"    component: {q(name)}",
        "    tier: control-plane",
        "spec:",
        "  hostNetwork: true",
        "  priorityClassName: system-node-critical",
        f"  terminationGracePeriodSeconds: {grace}",
        "  securityContext:",
        "    runAsNonRoot: true",
        f"    runAsUser: {NONROOT_UID}",
        f"    runAsGroup: {NONROOT_UID}",
        "    seccompProfile:",
        "      type: RuntimeDefault",
        "  containers:",
        f"    - name: {q(name)}",
        f"      image: {q(image)}",
        "      imagePullPolicy: IfNotPresent",
        f"      args: [{', '.join(q(a) for a in args)}]",
        "      env:",
        "        - name: TMPDIR",
        f"          value: {q(UNPACK_DIR)}",
        "      securityContext:",
        "        readOnlyRootFilesystem: true",
        "        allowPrivilegeEscalation: false",
        "        privileged: false",
        "        capabilities:",
        "          drop: [\"ALL\"]",
        "      resources:",
        "        requests:",
        "          cpu: \"100m\"",
        "          memory: \"192Mi\"",
        "        limits:",
        f"          memory: {q(memory_limit)}",
        *_probe("livenessProbe", "/livez", probe_host, port, failures=3),
        *_probe("readinessProbe", "/readyz", probe_host, port, failures=2),
        "      volumeMounts:",
        "        - name: socket-dir",
        f"          mountPath: {q(sock_dir)}",
        "        - name: config",
        f"          mountPath: {q(config_dir)}",
        "          readOnly: true",
        "        - name: state",
        f"          mountPath: {q(state_dir)}",
        "        - name: unpack",
        f"          mountPath: {q(UNPACK_DIR)}",
        "  volumes:",
        *_host_path("socket-dir", sock_dir),
        *_host_path("config", config_dir),
        *_host_path("state", state_dir),
        "    - name: unpack",
        "      emptyDir:",
        "        medium: Memory",
        f"        sizeLimit: {q(UNPACK_SIZE_LIMIT)}",
    ]
    return "\n".join(lines) + "\n"


def _probe(kind: str, path: str, host: str, port: int, failures: int) -> list[str]:
    return [
        f"      {kind}:",
        "        httpGet:",
        f"          host: {json.dumps(host)}",
        f"          path: {path}",
        f"          port: {port}",
        "        initialDelaySeconds: 5",
        "        periodSeconds: 10",
        "        timeoutSeconds: 3",
        f"        failureThreshold: {failures}",
    ]


def _host_path(name: str, path: str) -> list[str]:
    return [f"    - name: {name}", "      hostPath:", f"        path: {json.dumps(path)}",
            "        type: Directory"]
