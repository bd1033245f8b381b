"""The one table of metric families: names, types, HELP, labels, and the closed sets of label
values (`kind`, `step`, `capability`, `state`).

The order here is the order of families on /metrics. Renderers look families up here, so a
metric that is not in this table cannot be emitted, and code names a kind, a step or a
capability through the constants below, never as a free string. A leaf: it imports nothing of
the exporter, so every stage may read it (tests/test_layout.py).
"""

from __future__ import annotations

from dataclasses import dataclass

_LAST_POLL = "From the last poll (INFO every poll.interval, default 15s)."
_LAST_LIST = ("From the last CLIENT LIST (every poll.client_list_interval, default 15s; "
              "longer while backed off).")
_SNAPSHOT = (" A snapshot of all current clients, not a running count: never rate() it; use "
             "histogram_quantile(q, sum by (le) (..._bucket)) and _sum / _count.")


class Kind:
    """What went wrong: the closed set of `kind` values. No free text reaches a label."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTH = "auth"
    NOPERM = "noperm"
    MAXCLIENTS = "maxclients"
    LOADING = "loading"
    BUSY = "busy"
    TLS = "tls"
    PROTOCOL = "protocol"
    UNSUPPORTED = "unsupported"  # unknown or renamed command: sets a capability to 0
    OTHER = "other"


ERROR_KINDS = (Kind.REFUSED, Kind.TIMEOUT, Kind.AUTH, Kind.NOPERM, Kind.MAXCLIENTS,
               Kind.LOADING, Kind.BUSY, Kind.TLS, Kind.PROTOCOL, Kind.UNSUPPORTED, Kind.OTHER)


class Step:
    """The `step` values: what a duration, a success time or an error belongs to."""

    INFO = "info"
    CLIENT_LIST = "client_list"
    PROBE = "probe"


STEPS = (Step.INFO, Step.CLIENT_LIST, Step.PROBE)


class Capability:
    """The `capability` values: what a target allows (1) or was found to refuse (0)."""

    CLIENT_LIST = "client_list"
    CONFIG = "config"
    CLIENT_SETNAME = "client_setname"
    CLIENT_NO_EVICT = "client_no_evict"
    CLIENT_LIST_FITS = "client_list_fits_output_buffer"
    CLIENT_IDS_MONOTONIC = "client_ids_monotonic"  # churn and traffic need increasing ids


CAPABILITIES = (Capability.CLIENT_LIST, Capability.CONFIG, Capability.CLIENT_SETNAME,
                Capability.CLIENT_NO_EVICT, Capability.CLIENT_LIST_FITS,
                Capability.CLIENT_IDS_MONOTONIC)


class PoolState:
    IN_USE = "in_use"
    IDLE = "idle"


class Rejection:
    """Why /scrape refused a discovered target: the closed set of `reason` values."""

    MALFORMED = "malformed"
    CREDENTIALS = "credentials"
    UNKNOWN_MODULE = "unknown_module"
    NOT_ALLOWED = "not_allowed"
    MODULE_NOT_ALLOWED = "module_not_allowed"
    MAX_TARGETS = "max_targets"
    PENDING = "pending"


REJECTIONS = (Rejection.MALFORMED, Rejection.CREDENTIALS, Rejection.UNKNOWN_MODULE,
              Rejection.NOT_ALLOWED, Rejection.MODULE_NOT_ALLOWED, Rejection.MAX_TARGETS,
              Rejection.PENDING)


class TargetState:
    UP = "up"
    DOWN = "down"


# Families with this label take the configured client_list.group_by labels in its place.
GROUP_BY = "<group_by>"


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # gauge, counter or histogram
    help: str
    labels: tuple[str, ...] = ("target",)  # histograms add `le`, not listed here


@dataclass(frozen=True)
class InfoField:
    """An INFO field exported as it is, under the Go peer's metric name."""

    field: str
    family: Family


def _gauge(name: str, text: str, *labels: str) -> Family:
    return Family(name, "gauge", text, ("target", *labels))


def _counter(name: str, text: str, *labels: str) -> Family:
    return Family(name, "counter", text, ("target", *labels))


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values)


UP = _gauge("redis_up", "1 if the last INFO on the held poll connection succeeded, else 0. "
            + _LAST_POLL)
INSTANCE_INFO = _gauge("redis_instance_info",
                       "Server version, role and mode, always 1: redis_version as INFO says it "
                       "(Valkey says 7.2.4), server_name (redis or valkey) and server_version "
                       "(the product's own version). " + _LAST_POLL,
                       "redis_version", "role", "redis_mode", "server_name", "server_version")
START_TIME = _gauge("redis_start_time_seconds",
                    "Unix time Redis started (now minus uptime, kept while run_id is the same). "
                    + _LAST_POLL)

INFO_FIELDS = (
    InfoField("loading", _gauge(
        "redis_loading", "1 while Redis loads its dataset (at start, or a replica's full "
        "sync), else 0 (INFO loading). New connections get LOADING errors meanwhile; INFO and "
        "CLIENT LIST still answer. " + _LAST_POLL)),
    InfoField("connected_clients", _gauge(
        "redis_connected_clients", "Client connections, not counting replicas (INFO "
        "connected_clients). " + _LAST_POLL)),
    InfoField("blocked_clients", _gauge(
        "redis_blocked_clients", "Clients blocked in BLPOP, XREAD, WAIT and similar. "
        + _LAST_POLL)),
    InfoField("tracking_clients", _gauge(
        "redis_tracking_clients", "Clients with client-side caching tracking on. " + _LAST_POLL)),
    InfoField("pubsub_clients", _gauge(
        "redis_pubsub_clients", "Clients in pub/sub mode (Redis 7.4+, Valkey 8+). " + _LAST_POLL)),
    InfoField("watching_clients", _gauge(
        "redis_watching_clients", "Clients in WATCH (Redis 7.4+, Valkey 8+). " + _LAST_POLL)),
    InfoField("clients_in_timeout_table", _gauge(
        "redis_clients_in_timeout_table", "Clients in the timeout table (blocking with a "
        "timeout). " + _LAST_POLL)),
    InfoField("connected_slaves", _gauge(
        "redis_connected_slaves", "Connected replicas. " + _LAST_POLL)),
    InfoField("cluster_connections", _gauge(
        "redis_cluster_connections", "Cluster bus connections; they count against maxclients. "
        + _LAST_POLL)),
    InfoField("client_recent_max_input_buffer", _gauge(
        "redis_client_recent_max_input_buffer_bytes", "Largest client input buffer in the "
        "last seconds. " + _LAST_POLL)),
    InfoField("client_recent_max_output_buffer", _gauge(
        "redis_client_recent_max_output_buffer_bytes", "Largest client output buffer in the "
        "last seconds (read before CLIENT LIST, so never the exporter's own reply). "
        + _LAST_POLL)),
    InfoField("mem_clients_normal", _gauge(
        "redis_mem_clients_normal", "Bytes used by normal clients' buffers. " + _LAST_POLL)),
    InfoField("total_connections_received", _counter(
        "redis_connections_received_total", "Connections accepted by Redis. " + _LAST_POLL)),
    InfoField("total_commands_processed", _counter(
        "redis_commands_processed_total", "Commands Redis processed (INFO "
        "total_commands_processed): what redis_client_commands_total adds up to. " + _LAST_POLL)),
    InfoField("total_net_input_bytes", _counter(
        "redis_net_input_bytes_total", "Bytes Redis read from the network, replication "
        "included (INFO total_net_input_bytes). " + _LAST_POLL)),
    InfoField("total_net_output_bytes", _counter(
        "redis_net_output_bytes_total", "Bytes Redis wrote to the network, replication "
        "included (INFO total_net_output_bytes). " + _LAST_POLL)),
    InfoField("rejected_connections", _counter(
        "redis_rejected_connections_total", "Connections rejected because of maxclients. "
        + _LAST_POLL)),
    InfoField("evicted_clients", _counter(
        "redis_evicted_clients_total", "Clients evicted by maxmemory-clients (Redis 7.0+). "
        + _LAST_POLL)),
    InfoField("client_query_buffer_limit_disconnections", _counter(
        "redis_client_query_buffer_limit_disconnections_total", "Clients disconnected for "
        "exceeding the query buffer limit (Redis 7.4+, Valkey 8+). " + _LAST_POLL)),
    InfoField("client_output_buffer_limit_disconnections", _counter(
        "redis_client_output_buffer_limit_disconnections_total", "Clients disconnected for "
        "exceeding an output buffer limit (Redis 7.4+, Valkey 8+). " + _LAST_POLL)),
)
_THREADS = " (INFO threads, Redis 8.0+; thread 0 is the main thread). "
IO_THREAD_CLIENTS = _gauge("redis_io_thread_clients", "Clients each I/O thread serves"
                           + _THREADS + _LAST_POLL, "thread")
IO_THREAD_READS = _counter("redis_io_thread_reads_total", "Read events of each I/O thread (not "
                           "bytes)" + _THREADS + _LAST_POLL, "thread")
IO_THREAD_WRITES = _counter("redis_io_thread_writes_total", "Write events of each I/O thread "
                            "(not bytes)" + _THREADS + _LAST_POLL, "thread")
# INFO threads field of io_thread_<n> -> its family
IO_THREAD_FAMILIES = {"clients": IO_THREAD_CLIENTS, "reads": IO_THREAD_READS,
                      "writes": IO_THREAD_WRITES}
MAX_CLIENTS = _gauge("redis_max_clients", "The connection limit used for saturation: the "
                     "target's max_clients setting, else INFO maxclients, else CONFIG GET "
                     "maxclients. " + _LAST_POLL)
SATURATION = _gauge("redis_connection_saturation_ratio", "(connected_clients + "
                    "connected_slaves + cluster_connections) / maxclients; Redis rejects new "
                    "connections at 1. " + _LAST_POLL)
HEADROOM = _gauge("redis_connection_headroom", "maxclients minus (connected_clients + "
                  "connected_slaves + cluster_connections): connections Redis still accepts. "
                  + _LAST_POLL)

CONNECTIONS = _gauge("redis_client_connections", "Client connections per group "
                     "(client_list.group_by, capped at max_groups, the rest in __other__); "
                     "the groups sum to the CLIENT LIST line count. " + _LAST_LIST, GROUP_BY)
IDLE_CONNECTIONS = _gauge("redis_client_idle_connections", "Connections per group idle longer "
                          "than client_list.idle_threshold, not counting blocked, pubsub, "
                          "replica, master or monitor clients. " + _LAST_LIST,
                          GROUP_BY)
GROUP_MEMORY = _gauge("redis_client_group_memory_bytes", "Total memory of the group's clients "
                      "(sum of tot-mem, Redis 6.0+): who eats client memory. " + _LAST_LIST,
                      GROUP_BY)
GROUP_OUTPUT_BUFFER = _gauge("redis_client_group_output_buffer_bytes", "Output buffer memory of "
                             "the group's clients (sum of omem): replies they read too slowly. "
                             + _LAST_LIST, GROUP_BY)
GROUP_QUERY_BUFFER = _gauge("redis_client_group_query_buffer_bytes", "Query buffer of the "
                            "group's clients (sum of qbuf): commands sent but not yet parsed. "
                            + _LAST_LIST, GROUP_BY)
_WINDOWS = (" Counted between consecutive CLIENT LISTs from client ids (tuples as "
            "redis_client_connections; __unattributed__: connections opened and closed between "
            "two lists, so that all series together move as redis_connections_received_total).")
OPENED = _counter("redis_client_connections_opened_total", "Connections opened, by the group "
                  "they were first seen in." + _WINDOWS, GROUP_BY)
CLOSED = _counter("redis_client_connections_closed_total", "Connections closed, by the group "
                  "they were last seen in." + _WINDOWS, GROUP_BY)
_TRAFFIC = (" Per-client deltas between consecutive CLIENT LISTs (Valkey 8.0+, Redis 8.2+); "
            "__unattributed__ holds the rest of the INFO total (clients gone in between).")
NET_INPUT = _counter("redis_client_network_input_bytes_total", "Bytes read from the group's "
                     "clients (tot-net-in)." + _TRAFFIC, GROUP_BY)
NET_OUTPUT = _counter("redis_client_network_output_bytes_total", "Bytes written to the group's "
                      "clients (tot-net-out)." + _TRAFFIC, GROUP_BY)
COMMANDS = _counter("redis_client_commands_total", "Commands the group's clients ran "
                    "(tot-cmds)." + _TRAFFIC, GROUP_BY)
# One family per field of the group record (pipeline/groups.py: GroupMeasures), same tuples.
GROUP_FAMILIES = {
    "connections": CONNECTIONS,
    "idle": IDLE_CONNECTIONS,
    "memory_bytes": GROUP_MEMORY,
    "output_buffer_bytes": GROUP_OUTPUT_BUFFER,
    "query_buffer_bytes": GROUP_QUERY_BUFFER,
    "connections_opened": OPENED,
    "connections_closed": CLOSED,
    "network_input_bytes": NET_INPUT,
    "network_output_bytes": NET_OUTPUT,
    "commands": COMMANDS,
}
HISTOGRAMS = {
    "idle_seconds": Family("redis_client_idle_seconds", "histogram",
                           "Seconds since each client's last command." + _SNAPSHOT + " "
                           + _LAST_LIST),
    "age_seconds": Family("redis_client_age_seconds", "histogram",
                          "Age of each client connection in seconds." + _SNAPSHOT + " "
                          + _LAST_LIST),
    "query_buffer_bytes": Family("redis_client_query_buffer_bytes", "histogram",
                                 "Query buffer of each client (qbuf)." + _SNAPSHOT + " "
                                 + _LAST_LIST),
    "output_buffer_bytes": Family("redis_client_output_buffer_bytes", "histogram",
                                  "Output buffer memory of each client (omem)." + _SNAPSHOT
                                  + " " + _LAST_LIST),
    "memory_bytes": Family("redis_client_memory_bytes", "histogram",
                           "Total memory of each client (tot-mem, Redis 6.0.9+)." + _SNAPSHOT
                           + " " + _LAST_LIST),
}

_SELF = "redis_connection_exporter_"
POOL_CONNECTIONS = _gauge(_SELF + "pool_connections", "Connections in the target's pool by "
                          "state, as of the last poll.", "state")
POOL_MAX = _gauge(_SELF + "pool_max_connections", "Size limit of the target's pool: the one "
                  "held poll connection.")
POOL_CREATED = _counter(_SELF + "pool_connections_created_total", "Poll connections opened to "
                        "the target (reconnects included).")
TARGET_INFO = _gauge(_SELF + "target_info", "Where a target comes from, always 1: source "
                     "(static, dynamic, cluster or sentinel), the address the exporter "
                     "connects to (never credentials); for cluster and Sentinel nodes the "
                     "entry that found it (parent; <entry>/<master> for a Sentinel group's "
                     "data nodes), CLUSTER MYID (node_id), CLUSTER MYSHARDID (shard, 7.2+) "
                     "and the topology's view (health: online, pfail, fail); empty where a "
                     "field does not apply.", "source", "parent", "address", "node_id",
                     "shard", "health")
LAST_DURATION = _gauge(_SELF + "last_poll_duration_seconds", "Duration of the last poll step "
                       f"({_listed(STEPS)}) for the target.", "step")
POLL_ERRORS = _counter(_SELF + "poll_errors_total", "Failed poll steps by kind "
                       f"({_listed(ERROR_KINDS)}).", "step", "kind")
LAST_SUCCESS = _gauge(_SELF + "last_poll_success_timestamp_seconds", "Unix time of the last "
                      "successful poll step: alert on time() minus this.", "step")
PROBE_SUCCESS = _gauge(_SELF + "connect_probe_success", "1 if a new client could connect, "
                       "authenticate and PING on the last connect probe (inferred at "
                       "maxclients without connecting), else 0.")
PROBE_DURATION = _gauge(_SELF + "connect_probe_duration_seconds", "Duration of the last "
                        "connect probe.")
CLIENT_LIST_BYTES = _gauge(_SELF + "client_list_bytes", "Size of the last CLIENT LIST reply.")
CLIENT_LIST_INTERVAL = _gauge(_SELF + "client_list_interval_seconds", "Current CLIENT LIST "
                              "interval of the target; longer than configured while backed off.")
CAPABILITY = _gauge(_SELF + "target_capability", "1 if the target allows the capability "
                    f"({_listed(CAPABILITIES)}), 0 if it was found missing.", "capability")

TARGET_FAMILIES: tuple[Family, ...] = (
    UP,
    INSTANCE_INFO,
    START_TIME,
    *(item.family for item in INFO_FIELDS),
    *IO_THREAD_FAMILIES.values(),
    MAX_CLIENTS,
    SATURATION,
    HEADROOM,
    *GROUP_FAMILIES.values(),
    *HISTOGRAMS.values(),
    TARGET_INFO,
    POOL_CONNECTIONS,
    POOL_MAX,
    POOL_CREATED,
    LAST_DURATION,
    POLL_ERRORS,
    LAST_SUCCESS,
    PROBE_SUCCESS,
    PROBE_DURATION,
    CLIENT_LIST_BYTES,
    CLIENT_LIST_INTERVAL,
    CAPABILITY,
)

# Global self metrics: rendered by expose/selfmetrics.py on a prometheus-client registry.
POLL_DURATION = Family(_SELF + "poll_duration_seconds", "histogram", "Duration of poll steps "
                       f"({_listed(STEPS)}) across all targets.", ("step",))
BUILD_INFO = Family(_SELF + "build_info", "gauge", "Version of the exporter and its runtime, "
                    "always 1.", ("version", "python_version", "redis_py_version"))
RELOAD_OK = Family(_SELF + "config_last_reload_successful", "gauge", "1 if the last "
                   "configuration load succeeded.", ())
WEB_RELOAD_OK = Family(_SELF + "web_config_last_reload_successful", "gauge", "1 if the last "
                       "load of --web.config.file and its certificate files succeeded (1 "
                       "without the flag); 0 keeps the last good TLS and basic auth settings.",
                       ())
DYNAMIC_REJECTIONS = Family(_SELF + "dynamic_target_rejections_total", "counter", "/scrape "
                            "requests for a discovered target that were refused, by reason "
                            f"({_listed(REJECTIONS)}).", ("reason",))
DISCOVERY_ERRORS = Family(_SELF + "discovery_errors_total", "counter", "Topology reads of a "
                          "cluster or Sentinel entry (parent) that failed, one per source "
                          "(seed, node or Sentinel) asked, by error kind; when every source "
                          "fails the last good topology stays.", ("parent", "kind"))
FAILOVERS = Family(_SELF + "failovers_total", "counter", "Failovers seen in a topology: a "
                   "cluster replica that became master, or a Sentinel master whose "
                   "config-epoch rose (parent: the entry, <entry>/<master> for Sentinel).",
                   ("parent",))
TARGETS = Family(_SELF + "targets", "gauge", "Configured targets by the state of their last "
                 "poll (not yet polled targets are not counted).", ("state",))

GLOBAL_FAMILIES: tuple[Family, ...] = (POLL_DURATION, BUILD_INFO, RELOAD_OK, WEB_RELOAD_OK,
                                       DYNAMIC_REJECTIONS, DISCOVERY_ERRORS, FAILOVERS,
                                       TARGETS)

# Library mode (exporter/pools): an application's own redis-py pools, in its own registry.
_POOL = ("pool",)
LIBRARY_POOL_CONNECTIONS = Family(
    "redis_pool_connections", "gauge", "Connection objects of the application's redis-py pool "
    "by state (idle, in_use), from the pool's get_connection_count(): pooled objects, not "
    "sockets (an idle one may have no socket).", ("pool", "state"))
LIBRARY_POOL_MAX = Family("redis_pool_max_connections", "gauge", "The pool's max_connections.",
                          _POOL)
LIBRARY_POOL_WAIT = Family(
    "redis_pool_wait_seconds", "histogram", "Time in the pool's get_connection: waiting for a "
    "free connection, and connecting a new one; timeouts included.", _POOL)
LIBRARY_POOL_TIMEOUTS = Family(
    "redis_pool_wait_timeouts_total", "counter", "get_connection calls that found no connection: "
    "a BlockingConnectionPool's timeout ('No connection available.') or a ConnectionPool at "
    "max_connections ('Too many connections'); a refused server is not counted.", _POOL)
LIBRARY_POOL_CREATED = Family(
    "redis_pool_connections_created_total", "counter", "Connections the pool created "
    "(make_connection).", _POOL)
LIBRARY_POOL_INFO = Family(
    "redis_pool_info", "gauge", "The pool's client name and server (host:port or socket path, "
    "spelled as redis_connection_exporter_target_info's address), always 1: join on them.",
    ("pool", "client_name", "server"))
LIBRARY_POOL_FAMILIES: tuple[Family, ...] = (
    LIBRARY_POOL_CONNECTIONS, LIBRARY_POOL_MAX, LIBRARY_POOL_WAIT, LIBRARY_POOL_TIMEOUTS,
    LIBRARY_POOL_CREATED, LIBRARY_POOL_INFO)
