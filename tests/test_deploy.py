"""Deploy files are code: Dockerfile, Kubernetes manifests, systemd unit, Prometheus configs.

Nothing here needs a Docker engine or a cluster. The Dockerfile is linted in Python (the
hadolint rules that matter here) and its ENTRYPOINT + CMD and HEALTHCHECK are run outside
Docker; manifests are parsed and cross-checked (ports, labels, shard flags against replicas,
Secret keys against password_file paths); the StatefulSet's own args are run with
`--check-config` as each pod would; Prometheus configs go through `promtool check config`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from exporter import cli
from exporter.sharding import hashmod
from tests.support.process import ROOT, ExporterProcess
from tests.support.redis_server import RedisServer, free_port, require_binary

DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
SYSTEMD = os.path.join(DEPLOY, "systemd")
PROMETHEUS = os.path.join(DEPLOY, "prometheus")
UNIT = os.path.join(SYSTEMD, "redis-connection-exporter.service")
DEFAULT_FILE = os.path.join(SYSTEMD, "redis-connection-exporter.default")
NAME = "redis-connection-exporter"
PORT = 9379
SECRET_DIR = "/run/secrets/redis-connection-exporter"


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _yaml_files() -> list[str]:
    found = glob.glob(os.path.join(DEPLOY, "**", "*.yml"), recursive=True)
    found += glob.glob(os.path.join(DEPLOY, "**", "*.yaml"), recursive=True)
    return sorted(os.path.relpath(path, ROOT) for path in found)


def _documents(path: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(_read(path)) if doc is not None]


# ---------------------------------------------------------------- every YAML file under deploy/

def test_deploy_has_the_expected_files() -> None:
    files = set(_yaml_files())
    for name in ("kubernetes/kustomization.yaml", "kubernetes/statefulset.yaml",
                 "kubernetes/service.yaml", "kubernetes/servicemonitor.yaml",
                 "kubernetes/prometheusrule.yaml", "kubernetes/configmap.yaml",
                 "kubernetes/secret.example.yaml", "prometheus/prometheus.yml",
                 "prometheus/prometheus-multi-target.yml", "prometheus/prometheus-sharded.yml"):
        assert f"deploy/{name}" in files
    assert os.path.isfile(UNIT) and os.path.isfile(DEFAULT_FILE)


@pytest.mark.parametrize("path", _yaml_files())
def test_every_yaml_file_parses(path: str) -> None:
    documents = _documents(os.path.join(ROOT, path))
    assert documents, f"{path} has no document"
    assert all(isinstance(doc, dict) for doc in documents)


# ---------------------------------------------------------------- Kubernetes

def _manifests() -> dict[str, dict[str, Any]]:
    """kind -> manifest, over every file in deploy/kubernetes (one object per kind)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        for doc in _documents(path):
            assert {"apiVersion", "kind"} <= set(doc), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path
                assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == NAME, path
            assert doc["kind"] not in by_kind, f"second {doc['kind']} in {path}"
            by_kind[doc["kind"]] = doc
    return by_kind


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    return _manifests()


def _pod(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = k8s["StatefulSet"]["spec"]["template"]["spec"]
    return spec


def _container(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = _pod(k8s)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _flag(args: list[str], name: str) -> str | None:
    values = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]
    assert len(values) <= 1 and f"{name}" not in args, f"{name}: use --flag=value, once"
    return values[0] if values else None


def test_kustomization_lists_every_manifest_but_the_secret_example(
        k8s: dict[str, dict[str, Any]]) -> None:
    resources = k8s["Kustomization"]["resources"]
    manifests = {os.path.basename(path) for path in glob.glob(os.path.join(K8S, "*.yaml"))}
    assert set(resources) == manifests - {"kustomization.yaml", "secret.example.yaml"}
    images = {image["name"] for image in k8s["Kustomization"]["images"]}
    assert _container(k8s)["image"].split(":")[0] in images


def test_kustomize_builds_the_namespaced_bundle() -> None:
    """`kubectl kustomize` (offline) renders every listed resource into the namespace."""
    kubectl = require_binary("kubectl")  # present on the CI machines; a failure there if not
    result = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in rendered) == [
        "ConfigMap", "PrometheusRule", "Service", "ServiceMonitor", "StatefulSet"]
    assert {doc["metadata"]["namespace"] for doc in rendered} == {"monitoring"}


def test_pod_and_container_security_context(k8s: dict[str, dict[str, Any]]) -> None:
    pod = _pod(k8s)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(k8s)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context.get("privileged", False) is False
    uid, gid = _docker_user()
    assert context["runAsUser"] == pod["securityContext"]["runAsUser"] == uid != 0
    assert context["runAsGroup"] == gid


def test_probes_ports_and_resources(k8s: dict[str, dict[str, Any]]) -> None:
    container = _container(k8s)
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    # A read-only root filesystem still needs a writable /tmp.
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert "/tmp" in mounts and mounts["/tmp"].get("readOnly") is not True


def test_service_and_servicemonitor_select_the_pods(k8s: dict[str, dict[str, Any]]) -> None:
    service, monitor = k8s["Service"], k8s["ServiceMonitor"]
    statefulset = k8s["StatefulSet"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Headless, so StatefulSet pods get the DNS names prometheus-sharded.yml uses.
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": PORT,
                                         "targetPort": "metrics", "protocol": "TCP"}]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert monitor["spec"]["jobLabel"] in service["metadata"]["labels"]


def test_shard_count_is_the_replica_count_and_the_index_comes_from_the_hostname(
        k8s: dict[str, dict[str, Any]]) -> None:
    statefulset = k8s["StatefulSet"]
    args = _container(k8s)["args"]
    replicas = statefulset["spec"]["replicas"]
    assert replicas > 1
    assert _flag(args, "--shard.count") == str(replicas)
    assert _flag(args, "--shard.index") is None  # DESIGN.md: the trailing -<n> of the hostname
    env = {item["name"] for item in _container(k8s).get("env", [])}
    assert "REDIS_CONNECTION_EXPORTER_SHARD_INDEX" not in env


def test_config_and_password_mounts(k8s: dict[str, dict[str, Any]]) -> None:
    container, pod = _container(k8s), _pod(k8s)
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_file = _flag(container["args"], "--config.file")
    assert config_file is not None
    config_dir, config_key = os.path.split(config_file)
    assert mounts["config"]["mountPath"] == config_dir and mounts["config"]["readOnly"]
    assert volumes["config"]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert config_key in k8s["ConfigMap"]["data"]
    secret = k8s["Secret"]
    assert mounts["passwords"]["mountPath"] == SECRET_DIR and mounts["passwords"]["readOnly"]
    assert volumes["passwords"]["secret"]["secretName"] == secret["metadata"]["name"]
    # Group-readable, and the pod's fsGroup owns the files: never world-readable.
    assert volumes["passwords"]["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]
    config = yaml.safe_load(k8s["ConfigMap"]["data"][config_key])
    password_files = {target["password_file"] for target in config["targets"]
                      if "password_file" in target}
    assert password_files, "the example should show a password_file"
    assert {os.path.dirname(path) for path in password_files} == {SECRET_DIR}
    assert {os.path.basename(path) for path in password_files} == set(secret["stringData"])


def _pod_config(k8s: dict[str, dict[str, Any]], tmp_path: os.PathLike[str]) -> list[str]:
    """The container's args, with the ConfigMap and the Secret written under tmp_path."""
    secrets = os.path.join(tmp_path, "secrets")
    os.makedirs(secrets)
    for key, value in k8s["Secret"]["stringData"].items():
        with open(os.path.join(secrets, key), "w", encoding="utf-8") as handle:
            handle.write(value)
    args = list(_container(k8s)["args"])
    config_file = _flag(args, "--config.file")
    assert config_file is not None
    text = k8s["ConfigMap"]["data"][os.path.basename(config_file)]
    local = os.path.join(tmp_path, "config.yaml")
    with open(local, "w", encoding="utf-8") as handle:
        handle.write(text.replace(SECRET_DIR, secrets))
    return [f"--config.file={local}" if arg == f"--config.file={config_file}" else arg
            for arg in args]


def _hostname(name: str) -> Callable[[], str]:
    return lambda: name


def test_each_pod_checks_its_shard_of_the_configmap(
        k8s: dict[str, dict[str, Any]], tmp_path: os.PathLike[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The StatefulSet's own args, as pod <name>-<n> runs them: every target in one shard."""
    args = _pod_config(k8s, tmp_path)
    replicas = k8s["StatefulSet"]["spec"]["replicas"]
    name = k8s["StatefulSet"]["metadata"]["name"]
    targets = [t["name"] for t in yaml.safe_load(k8s["ConfigMap"]["data"]["config.yaml"])
               ["targets"]]
    owned = 0
    for ordinal in range(replicas):
        code = cli.main([*args, "--check-config"], env={},
                        hostname=_hostname(f"{name}-{ordinal}"))
        out = capsys.readouterr()
        assert code == 0, out.err
        match = re.search(rf", (\d+) in shard {ordinal} of {replicas}$", out.out.strip())
        assert match, out.out
        assert int(match.group(1)) == sum(hashmod(t, replicas) == ordinal for t in targets)
        owned += int(match.group(1))
    assert owned == len(targets)
    # A pod beyond --shard.count (replicas raised, the flag forgotten) refuses to start.
    assert cli.main([*args, "--check-config"], env={},
                    hostname=_hostname(f"{name}-{replicas}")) == 2
    assert "--shard.count" in capsys.readouterr().err


def test_prometheusrule_groups_pass_promtool(k8s: dict[str, dict[str, Any]],
                                            tmp_path: os.PathLike[str]) -> None:
    rule = k8s["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"]
    path = os.path.join(tmp_path, "rules.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, handle)
    _promtool("check", "rules", path)


def test_prometheusrule_carries_exactly_the_tested_rules(k8s: dict[str, dict[str, Any]]) -> None:
    """spec.groups is rules.yml (promtool-tested) plus the exporter's own group: in step."""
    with open(os.path.join(ROOT, "deploy", "prometheus", "rules.yml"), encoding="utf-8") as f:
        tested = yaml.safe_load(f)["groups"]
    groups = k8s["PrometheusRule"]["spec"]["groups"]
    own = [group for group in groups if group["name"] == "redis-connection-exporter.self"]
    assert len(own) == 1
    assert [group for group in groups if group is not own[0]] == tested


# ---------------------------------------------------------------- systemd

def _unit() -> dict[str, list[str]]:
    """`Section.Key` -> values (a key may repeat, as SystemCallFilter does)."""
    directives: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in _read(UNIT).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives[f"{section}.{key}"].append(value)
    return directives


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    "AmbientCapabilities": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
    "SystemCallArchitectures": "native",
}


def test_systemd_unit_runs_the_exporter_with_the_default_files_args() -> None:
    unit = _unit()
    assert unit["Service.EnvironmentFile"] == ["-/etc/default/redis-connection-exporter"]
    assert os.path.basename(DEFAULT_FILE) == "redis-connection-exporter.default"
    assert unit["Service.ExecStart"] == ["/usr/bin/redis-connection-exporter $ARGS"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.User"] and unit["Service.User"] != ["root"]
    assert unit["Install.WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("key", sorted(HARDENING))
def test_systemd_unit_hardening(key: str) -> None:
    assert _unit()[f"Service.{key}"] == [HARDENING[key]]


def test_systemd_unit_raises_the_open_files_limit() -> None:
    """systemd's default soft limit (1,024) is below one descriptor per target at 1,000+."""
    assert [int(value) for value in _unit()["Service.LimitNOFILE"]] == [65536]


def test_systemd_unit_filters_system_calls() -> None:
    filters = _unit()["Service.SystemCallFilter"]
    assert "@system-service" in filters
    assert any(value.startswith("~") and "@privileged" in value for value in filters)


def _default_args() -> list[str]:
    """ARGS from the /etc/default file, split as systemd splits an unquoted $ARGS."""
    assignments = [line for line in _read(DEFAULT_FILE).splitlines()
                   if line.startswith("ARGS=")]
    assert len(assignments) == 1, "the default file defines ARGS once"
    [value] = shlex.split(assignments[0].removeprefix("ARGS="))
    return value.split()


def test_default_files_args_pass_check_config(tmp_path: os.PathLike[str]) -> None:
    args = _default_args()
    config_file = _flag(args, "--config.file")
    assert config_file == "/etc/redis-connection-exporter/config.yaml"
    example = os.path.join(ROOT, "config.example.yaml")
    local = [f"--config.file={example}" if arg.startswith("--config.file=") else arg
             for arg in args]
    result = subprocess.run([sys.executable, "-m", "exporter", *local, "--check-config"],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_systemd_analyze_accepts_the_unit(tmp_path: os.PathLike[str]) -> None:
    """`systemd-analyze verify` (no unknown keys or bad values) and `security` (exposure)."""
    analyze = require_binary("systemd-analyze")  # present on the CI machines
    binary = shutil.which(NAME)
    assert binary is not None, "the console script is installed with the project"
    local = os.path.join(tmp_path, os.path.basename(UNIT))
    with open(local, "w", encoding="utf-8") as handle:  # verify wants ExecStart to exist
        handle.write(_read(UNIT).replace("/usr/bin/redis-connection-exporter", binary))
    verify = subprocess.run([analyze, "verify", local], capture_output=True, text=True,
                            timeout=60, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", local],
                              capture_output=True, text=True, timeout=60, check=False)
    assert security.returncode == 0, security.stdout[-2000:]


# ---------------------------------------------------------------- Dockerfile

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def _dockerfile() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (continuations joined, no comments)."""
    stages: list[list[Instruction]] = []
    pending, start = "", 0
    for number, raw in enumerate(_read(os.path.join(ROOT, "Dockerfile")).splitlines(), 1):
        if raw.strip().startswith("#") or (not pending and not raw.strip()):
            continue
        if not pending:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"line {start}: {keyword} before FROM"
        stages[-1].append(instruction)
    return stages


def _all() -> list[Instruction]:
    return [instruction for stage in _dockerfile() for instruction in stage]


def _final(keyword: str) -> list[Instruction]:
    return [i for i in _dockerfile()[-1] if i.keyword == keyword]


def _exec_form(instruction: Instruction, args: str | None = None) -> list[str]:
    """DL3025 / JSONArgsRecommended: a JSON array of strings, never the shell form."""
    try:
        value = json.loads(instruction.args if args is None else args)
    except json.JSONDecodeError:
        raise AssertionError(f"line {instruction.line}: {instruction.keyword} is not in "
                             "exec form (a JSON array)") from None
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def _entrypoint_and_cmd() -> tuple[list[str], list[str]]:
    [entrypoint], [cmd] = _final("ENTRYPOINT"), _final("CMD")
    return _exec_form(entrypoint), _exec_form(cmd)


def _healthcheck() -> list[str]:
    [healthcheck] = _final("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert command, "HEALTHCHECK CMD [...] (not NONE)"
    assert all(option.startswith("--") for option in options.split())
    return _exec_form(healthcheck, command)


def _docker_user() -> tuple[int, int]:
    users = _final("USER")
    assert users, "the final stage sets USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and group.isdigit(), "numeric uid:gid, for runAsNonRoot"
    return int(user), int(group)


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    stages = _dockerfile()
    assert len(stages) >= 2
    aliases = set()
    for stage in stages:
        words = [word for word in stage[0].args.split() if not word.startswith("--")]
        image = words[0]
        if image in aliases:  # FROM an earlier stage
            continue
        tag = image.partition("@")[0].rpartition(":")[2] if ":" in image else ""
        assert "@sha256:" in image or (tag and tag != "latest"), f"{image}: pin it (DL3006/7)"
        if len(words) == 3:
            assert words[1].upper() == "AS"
            aliases.add(words[2])
    assert _dockerfile()[-1][0].args.split()[0].split(":")[1].endswith(
        ("slim", "slim-bookworm", "slim-trixie")), "the final stage is a slim image"
    for instruction in _all():
        for reference in re.findall(r"--(?:mount=[^ ]*from|from)=([\w.-]+)", instruction.args):
            assert reference in aliases, f"line {instruction.line}: unknown stage {reference}"


def test_final_stage_runs_as_numeric_non_root_user_after_every_run() -> None:
    uid, gid = _docker_user()
    assert uid != 0 and gid != 0
    final = _dockerfile()[-1]
    last_user = max(i for i, instruction in enumerate(final) if instruction.keyword == "USER")
    assert all(instruction.keyword != "RUN" for instruction in final[last_user:])


def test_entrypoint_cmd_expose_and_healthcheck() -> None:
    entrypoint, cmd = _entrypoint_and_cmd()
    assert entrypoint == [NAME]
    assert cmd == ["--config.file=/etc/redis-connection-exporter/config.yaml"]
    assert [i.args for i in _final("EXPOSE")] == [str(PORT)]
    command = _healthcheck()
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]
    assert f"127.0.0.1:{PORT}/-/healthy" in command[2]
    labels = " ".join(i.args for i in _final("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerfile_hadolint_style_rules() -> None:
    for instruction in _all():
        where = f"line {instruction.line}"
        assert instruction.keyword != "ADD" or not re.search(r"https?://", instruction.args), \
            f"{where}: ADD of a URL (DL3020): download with a checked RUN"
        assert instruction.keyword != "MAINTAINER", where
        if instruction.keyword == "WORKDIR":
            assert instruction.args.startswith("/"), f"{where}: absolute WORKDIR (DL3000)"
        if instruction.keyword != "RUN":
            continue
        run = instruction.args
        assert not re.search(r"\bsudo\b", run), f"{where}: no sudo (DL3004)"
        assert "apt-get upgrade" not in run and "dist-upgrade" not in run, where
        if "apt-get install" in run:
            assert "apt-get update" in run, f"{where}: update in the same RUN (DL3009)"
            assert "--no-install-recommends" in run, f"{where}: DL3015"
            assert "rm -rf /var/lib/apt/lists/*" in run, f"{where}: clean apt lists (DL3009)"
            assert re.search(r"apt-get install\s+(-\S+\s+)*-y", run), f"{where}: -y (DL3014)"
        for pip in re.findall(r"pip (?:install|wheel)[^&;]*", run):
            assert "--no-cache-dir" in pip, f"{where}: pip --no-cache-dir (DL3042)"


SECRET_WORDS = re.compile(r"pass|secret|token|credential|api_?key|private", re.IGNORECASE)


def test_dockerfile_bakes_in_no_secret_and_no_compiler() -> None:
    for instruction in _all():
        if instruction.keyword in ("ENV", "ARG"):
            for item in shlex.split(instruction.args):
                key = item.partition("=")[0]
                assert not SECRET_WORDS.search(key), f"line {instruction.line}: {key}"
        if instruction.keyword in ("COPY", "ADD"):
            assert not SECRET_WORDS.search(instruction.args), f"line {instruction.line}"
    text = _read(os.path.join(ROOT, "Dockerfile"))
    assert "requirepass" not in text and "--redis.password-file" not in text
    final = " ".join(i.args for i in _dockerfile()[-1] if i.keyword == "RUN")
    assert "apt-get" not in final and "gcc" not in final, "build tools only in the builder"
    assert "--no-index" in final, "the final stage installs only the built wheels"


def test_builder_requires_the_compiled_scanner() -> None:
    """setup.py's extension is optional: the image build must fail rather than lose it."""
    builder = " ".join(i.args for i in _dockerfile()[0] if i.keyword == "RUN")
    assert "pip wheel" in builder and "_clientlist_scan" in builder
    final = " ".join(i.args for i in _dockerfile()[-1] if i.keyword == "RUN")
    assert "import exporter.pipeline._clientlist_scan" in final


def _dockerignore() -> list[str]:
    return [line.strip() for line in _read(os.path.join(ROOT, ".dockerignore")).splitlines()
            if line.strip() and not line.startswith("#")]


def test_dockerignore_admits_only_the_build_inputs() -> None:
    patterns = _dockerignore()
    assert patterns[0] == "*", "an allow-list: nothing enters the context by accident"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert any(pattern.endswith("*.so") for pattern in patterns), "no host-built extension"
    for instruction in _all():
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        *sources, _ = instruction.args.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"line {instruction.line}: {source}"
            assert os.path.exists(os.path.join(ROOT, source)), source


def test_image_default_config_is_the_example() -> None:
    """CMD's --config.file is where the Dockerfile copies config.example.yaml to."""
    _, cmd = _entrypoint_and_cmd()
    config_file = _flag(cmd, "--config.file")
    copies = [i.args.split() for i in _final("COPY")]
    assert ["config.example.yaml", config_file] in copies


def test_entrypoint_and_cmd_run_outside_docker(tmp_path: os.PathLike[str]) -> None:
    """ENTRYPOINT + CMD as the image runs them, the baked-in path mapped to its source."""
    entrypoint, cmd = _entrypoint_and_cmd()
    binary = require_binary(entrypoint[0])
    config = os.path.join(ROOT, "config.example.yaml")
    args = [f"--config.file={config}" if arg.startswith("--config.file=") else arg
            for arg in cmd]
    result = subprocess.run([binary, *entrypoint[1:], *args, "--check-config"],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def _run_healthcheck(address: str) -> subprocess.CompletedProcess[str]:
    command = _healthcheck()
    assert command[0] == "python"
    code = command[2].replace(f"127.0.0.1:{PORT}", address)
    return subprocess.run([sys.executable, *command[1:2], code], capture_output=True,
                          text=True, timeout=30, check=False)


def test_healthcheck_command_against_a_running_exporter(
        redis_factory: Callable[..., RedisServer], tmp_path: os.PathLike[str]) -> None:
    server = redis_factory()
    config = os.path.join(tmp_path, "config.yaml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(f"targets:\n  - {{name: main, url: '{server.url}'}}\n")
    proc = ExporterProcess.serving(config)
    try:
        healthy = _run_healthcheck(proc.base.removeprefix("http://"))
    finally:
        proc.finish()
    assert healthy.returncode == 0, healthy.stderr
    # ... and it fails (exit 1, as Docker expects) when nothing listens.
    unhealthy = _run_healthcheck(f"127.0.0.1:{free_port()}")
    assert unhealthy.returncode == 1


# ---------------------------------------------------------------- Prometheus configs

def _promtool(*args: str) -> str:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


PROMETHEUS_CONFIGS = sorted(os.path.basename(path) for path in
                            glob.glob(os.path.join(PROMETHEUS, "prometheus*.yml")))


def test_the_three_prometheus_configs_exist() -> None:
    assert {"prometheus-multi-target.yml", "prometheus-sharded.yml",
            "prometheus.yml"} <= set(PROMETHEUS_CONFIGS)


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_promtool_check_config(name: str) -> None:
    _promtool("check", "config", os.path.join(PROMETHEUS, name))


def _job(name: str, job: str) -> dict[str, Any]:
    [config] = _documents(os.path.join(PROMETHEUS, name))
    [found] = [c for c in config["scrape_configs"] if c["job_name"] == job]
    scrape: dict[str, Any] = found
    return scrape


def _configmap_targets() -> list[str]:
    [configmap] = _documents(os.path.join(K8S, "configmap.yaml"))
    return [t["name"] for t in yaml.safe_load(configmap["data"]["config.yaml"])["targets"]]


@pytest.mark.parametrize("name", ["prometheus-multi-target.yml", "prometheus-sharded.yml"])
def test_multi_target_relabelling(name: str) -> None:
    """DESIGN.md "HTTP surface": /scrape?target=<name>, instance = the name."""
    job = _job(name, "redis")
    assert job["metrics_path"] == "/scrape"
    names = [t for group in job["static_configs"] for t in group["targets"]]
    assert names == _configmap_targets()
    relabel = job["relabel_configs"]
    assert relabel[0] == {"source_labels": ["__address__"], "target_label": "__param_target"}
    assert relabel[1] == {"source_labels": ["__param_target"], "target_label": "instance"}
    assert relabel[-1]["target_label"] == "__address__"
    assert relabel[-1]["replacement"].endswith(f":{PORT}")
    # The exporters' own job keeps only the series without a `target` label.
    own = _job(name, NAME)
    assert own["metric_relabel_configs"] == [{"source_labels": ["target"], "regex": ".+",
                                              "action": "drop"}]


def test_sharded_config_matches_the_statefulset(k8s: dict[str, dict[str, Any]]) -> None:
    """hashmod modulus = replicas = --shard.count, and shard n goes to pod <name>-<n>."""
    replicas = k8s["StatefulSet"]["spec"]["replicas"]
    relabel = _job("prometheus-sharded.yml", "redis")["relabel_configs"]
    [hashing] = [rule for rule in relabel if rule.get("action") == "hashmod"]
    assert hashing["source_labels"] == ["__param_target"]
    assert hashing["modulus"] == replicas
    pod = (f"{k8s['StatefulSet']['metadata']['name']}-{{}}."
           f"{k8s['Service']['metadata']['name']}.{k8s['Kustomization']['namespace']}.svc:{PORT}")
    routing = relabel[-1]
    assert routing["source_labels"] == [hashing["target_label"]]
    assert routing["replacement"] == pod.format("${1}")
    own = _job("prometheus-sharded.yml", NAME)["static_configs"][0]["targets"]
    assert own == [pod.format(ordinal) for ordinal in range(replicas)]
    # The example's target names land on every replica: none sits idle.
    assert {hashmod(target, replicas) for target in _configmap_targets()} == set(range(replicas))


@pytest.mark.parametrize(("name", "job"), [("prometheus-discovered.yml", "redis-file-sd"),
                                           ("discovered-kubernetes.yml", "redis-kubernetes")])
def test_discovered_targets_examples_use_scrape_and_an_auth_module(name: str, job: str) -> None:
    """DESIGN.md "Targets that Prometheus discovers": the target address goes to
    ?target=, the credentials are named by ?auth_module=, never in the URL."""
    found = _job(name, job)
    assert found["metrics_path"] == "/scrape"
    assert found["params"] == {"auth_module": ["prod"]}
    relabel = found["relabel_configs"]
    index = relabel.index({"source_labels": ["__address__"], "target_label": "__param_target"})
    assert relabel[index + 1] == {"source_labels": ["__param_target"], "target_label": "instance"}
    assert relabel[-1]["target_label"] == "__address__"  # the exporter is what is scraped
