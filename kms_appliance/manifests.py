"""Kubernetes documents generated from the configuration: EncryptionConfiguration, static pod.

YAML is written by hand (no YAML library in the binary); the values are
validated config strings, so quoting them as JSON strings is valid YAML.
Every value is also checked against what Kubernetes accepts (k8svalid.py)
before anything is written: a generator must not emit a document the
apiserver or kubelet refuses. The ConfigError keys are the command-line flags
the values come from, so the one-line error names what to fix.
"""

from __future__ import annotations

import json
import posixpath

from . import k8svalid
from .config import Config
from .errors import ConfigError, shown


def encryption_config(cfg: Config, kms_api: str = "v2", timeout: str = "3s",
                      resources: tuple[str, ...] = ("secrets",)) -> str:
    """An EncryptionConfiguration pointing at this plugin, then identity for old data."""
    if kms_api not in ("v1", "v2"):
        raise ConfigError("--kms-api", f"must be v1 or v2, got {shown(kms_api)}")
    k8svalid.kms_timeout("--timeout", timeout)
    _provider_name(cfg.server.provider_name)
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


# The binary unpacks ~102 MiB (107 MB: staticx 57 MB + PyInstaller 50 MB, measured
# with du on dist/kms-appliance while serving) into TMPDIR at every start; a
# memory-backed emptyDir counts against the container's memory limit, hence
# the 192Mi request / 384Mi default limit. The emptyDir outlives a container
# killed by SIGKILL (liveness, OOM) and keeps that start's unpack; the next
# start unpacks beside it and removes it (kms_appliance/unpack.py), so the
# size limit holds two: 256Mi.
UNPACK_DIR = "/tmp"  # noqa: S108 - inside the container, on its own private emptyDir
UNPACK_SIZE_LIMIT = "256Mi"
NONROOT_UID = 65532


def _provider_name(name: str) -> None:
    """The apiserver's own rule (validateKMSConfigName): non-empty, no ':' (KMS v2).

    config.p_provider is stricter already; repeated here because the
    EncryptionConfiguration is refused at apiserver start, not at ours.
    """
    if not name or ":" in name:
        raise ConfigError("--provider-name", f"must be non-empty without ':', got {shown(name)}")


# The pod's memory request; the limit may not be lower (the apiserver refuses the pod).
MEMORY_REQUEST = "192Mi"


def _check_static_pod(cfg: Config, image: str, name: str, namespace: str, config_file: str,
                      state_dir: str, memory_limit: str) -> None:
    """Refuse, naming the flag, any value the apiserver/kubelet would refuse in the pod."""
    k8svalid.image("--image", image)
    k8svalid.dns_label("--name", name)
    k8svalid.dns_label("--namespace", namespace)
    limit = k8svalid.quantity("--memory-limit", memory_limit)
    if limit < k8svalid.quantity("request", MEMORY_REQUEST):
        raise ConfigError("--memory-limit", f"must be at least the {MEMORY_REQUEST} memory request "
                                            "(the unpacked binary and its in-memory TMPDIR), "
                                            f"got {shown(memory_limit)}")
    k8svalid.abs_path("--config", config_file)
    k8svalid.abs_path("state_dir", state_dir)
    k8svalid.abs_path("--socket", str(cfg.server.socket))
    # Each directory is its own volume: a container's mountPaths must be unique. Fixed ones
    # first, so a collision is reported on the flag the operator gave.
    mounts = [("TMPDIR", "unpack directory", UNPACK_DIR), ("state_dir", "state directory", state_dir),
              ("--socket", "socket directory", str(cfg.server.socket.parent)),
              ("--config", "config directory", posixpath.dirname(config_file))]
    seen: dict[str, str] = {}
    for key, what, raw in mounts:
        path = posixpath.normpath(raw)
        if path in seen:
            raise ConfigError(key, f"the {what} {path} is also the {seen[path]}; "
                                   "each needs its own directory")
        seen[path] = what


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
    _check_static_pod(cfg, image, name, namespace, config_file, state_dir, memory_limit)
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
        f"          memory: {q(MEMORY_REQUEST)}",
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
