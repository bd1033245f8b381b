"""The compiled CLIENT LIST scanner against the pure path: same summary for any reply.

The fixture-based tests (test_clientlist.py, test_golden.py) already run on both scanners;
here hypothesis generates replies neither was written for: random field orders and subsets,
non-digit, empty and huge numbers, non-UTF-8 names, blank and garbage lines, cut-off replies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config.model import Buckets
from exporter.pipeline.clientlist import line_keys, scan_reply, summarize_client_list
from exporter.pipeline.columns import (
    GROUP_SOURCES,
    HISTOGRAM_SOURCES,
    INTEGER_KEYS,
    ClientListSpec,
)
from exporter.pipeline.groups import column
from tests.support.golden import VERSIONS, read_data, reference_clients

ROOT = Path(__file__).resolve().parent.parent
REDIS_7_KEYS = (
    "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub",
    "multi", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem",
    "tot-mem", "events", "cmd", "user", "redir", "resp", "lib-name", "lib-ver",
)
BUCKETS = {name: getattr(Buckets(), name) for name in HISTOGRAM_SOURCES}

numbers = st.one_of(
    st.integers(0, 100_000).map(str),
    st.integers(0, 10**30).map(str),  # beyond a double: the compiled path hands over
    st.sampled_from(["", "-1", "1_000", "+5", "0x10", "\xb3", "12a", " "]),
)
texts = st.one_of(
    st.sampled_from(["web-1", "worker-2", "", "N", "S", "Pb", "x=y", "default", "1.2.3.4:5",
                     "[::1]:6", "/tmp/redis.sock:0"]),
    st.binary(max_size=12).map(lambda raw: raw.replace(b" ", b"").replace(b"\n", b"")
                               .decode("latin-1")),
)


@st.composite
def client_lines(draw: st.DrawFn) -> str:
    keys = list(REDIS_7_KEYS)
    if draw(st.booleans()):  # most replies: Redis' order, some fields dropped or added
        keys = [key for key in keys if draw(st.integers(0, 9)) > 0]
    else:
        keys = draw(st.permutations(keys))[:draw(st.integers(0, len(keys)))]
    # Fields of other servers: Redis 8.0 io-thread, Valkey 8.0 tot-net-*, Valkey 8.1 capa.
    keys += draw(st.lists(st.sampled_from(["zz", "io-thread", "ssub", "watch", "capa",
                                           "tot-net-in", "tot-net-out", "tot-cmds"]),
                          max_size=4))
    keys = list(dict.fromkeys(keys))  # one value per key (Redis never repeats one)
    tokens = []
    for key in keys:
        value = draw(numbers if key.encode() in INTEGER_KEYS else texts)
        tokens.append(f"{key}={value}")
    return " ".join(tokens)


lines = st.one_of(
    client_lines(),
    st.sampled_from(["", "   ", "\t", "garbage", "=", "id", "addr=", "ERR something"]),
)


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    text = "\n".join(draw(st.lists(lines, max_size=12)))
    raw = text.encode("latin-1")
    if draw(st.booleans()):
        raw += b"\n"
    if raw and draw(st.integers(0, 4)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]  # cut off mid-line
    return raw


specs = st.builds(
    ClientListSpec,
    group_by=st.lists(st.sampled_from(sorted(GROUP_SOURCES)), min_size=1, max_size=3,
                      unique=True).map(tuple),
    idle_threshold=st.sampled_from([0.0, 5.0, 60.0, 1e18]),
    buckets=st.just(BUCKETS),
)


pytestmark = pytest.mark.usefixtures("compiled_scanner")  # tests/conftest.py


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=replies(), spec=specs)
def test_compiled_and_pure_agree_on_any_reply(raw: bytes, spec: ClientListSpec) -> None:
    assert summarize_client_list(raw, spec) == summarize_client_list(raw, spec, compiled=False)


@settings(max_examples=100, deadline=None)
@given(spec=specs, count=st.integers(1, 300), data=st.data())
def test_compiled_and_pure_agree_on_realistic_replies(spec: ClientListSpec, count: int,
                                                      data: st.DataObject) -> None:
    rows = []
    for index in range(count):
        name = data.draw(st.sampled_from(["web-1", "web-2", "", "job-7f3a9c21", "ad\"min"]))
        idle = data.draw(st.integers(0, 100_000))
        flags = data.draw(st.sampled_from(["N", "S", "P", "b", "M", "O", "x"]))
        rows.append(f"id={index} addr=10.0.0.{index % 250}:{1000 + index} laddr=10.0.0.1:6379 "
                    f"fd={index + 8} name={name} age={idle + index} idle={idle} flags={flags} "
                    f"db={index % 3} sub=0 psub=0 ssub=0 multi=-1 qbuf={index % 7} "
                    f"qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 "
                    f"omem={index * 1000} tot-mem={20000 + index} events=r cmd=ping "
                    f"user=default redir=-1 resp=2")
    raw = ("\n".join(rows) + "\n").encode()
    compiled = summarize_client_list(raw, spec)
    assert compiled == summarize_client_list(raw, spec, compiled=False)
    assert compiled.clients == count == sum(column(compiled.groups, "connections").values())


def test_huge_values_hand_over_to_the_pure_path() -> None:
    raw = b"id=1 addr=a:1 name=x age=1 idle=99999999999999999999 flags=N omem=0\n"
    spec = ClientListSpec(("name",), 60.0, BUCKETS)
    summary = summarize_client_list(raw, spec)
    assert summary.histograms["idle_seconds"].total == 99999999999999999999.0
    assert column(summary.groups, "idle") == {("x",): 1}


def test_wheel_builds_without_a_c_compiler(tmp_path: Path) -> None:
    """`pip install .` must work on a machine without a compiler: the scanner is optional."""
    source = tmp_path / "source"  # a copy: no build/ or .so left over from earlier builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.so", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        ".servers", "tests", "bench"))  # .servers: server builds, with dangling doc symlinks
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "--wheel-dir", str(tmp_path), str(source)],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(tmp_path.glob("redis_connection_exporter-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "exporter/pipeline/clientlist.py" in names
    assert not [name for name in names if name.endswith(".so")]


# -- per-group sums: the generic machinery behind the group record's summed fields --------

SUMMABLE = [b"omem", b"qbuf", b"tot-mem", b"tot-net-in", b"age", b"idle", b"zz"]
sum_specs = st.builds(
    ClientListSpec,
    group_by=st.lists(st.sampled_from(sorted(GROUP_SOURCES)), min_size=1, max_size=3,
                      unique=True).map(tuple),
    idle_threshold=st.sampled_from([0.0, 60.0]),
    buckets=st.just(BUCKETS),
    sums=st.lists(st.sampled_from(SUMMABLE), max_size=4, unique=True).map(tuple),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=replies(), spec=sum_specs)
def test_compiled_and_pure_agree_on_sums(raw: bytes, spec: ClientListSpec) -> None:
    keys = line_keys(raw[:65536])
    assert scan_reply(raw, spec, keys) == scan_reply(raw, spec, keys, compiled=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_compiled_and_pure_agree_on_each_fixture_with_every_group_key(version: str) -> None:
    raw = read_data(f"{version}/client_list.txt")
    spec = ClientListSpec(tuple(sorted(GROUP_SOURCES)), 60.0, BUCKETS)
    compiled = summarize_client_list(raw, spec)
    assert compiled == summarize_client_list(raw, spec, compiled=False)
    assert (compiled.clients, compiled.malformed) == (17, 0)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure"])
@pytest.mark.parametrize("version", VERSIONS)
def test_sums_per_raw_group_match_the_reference_reader(version: str, compiled: bool) -> None:
    raw = read_data(f"{version}/client_list.txt")
    sums = (b"omem", b"qbuf", b"tot-mem")
    spec = ClientListSpec(("name",), 60.0, BUCKETS, sums)
    scan = scan_reply(raw, spec, line_keys(raw), compiled=compiled)
    expected: dict[tuple[str, str], list[int]] = {}
    for client in reference_clients(raw):
        labels = (client.fields.get("flags", ""), client.fields.get("name", ""))
        counts = expected.setdefault(labels, [0, 0, 0, 0, 0])
        counts[0] += 1
        counts[1] += int((client.number("idle") or 0) > 60)
        for index, key in enumerate(sums, start=2):
            counts[index] += client.number(key.decode()) or 0
    got = {tuple(value.decode("latin-1") if value is not None else "" for value in labels):
           list(counts) for labels, counts in scan.combos.items()}
    assert got == expected
    assert sum(counts[0] for counts in got.values()) == scan.clients
