"""Static checks of the deployment files (no Docker, no network).

What is checked, against the code rather than a hand-kept list:

* every program the compose file or the Dockerfile runs resolves (through the image's
  entrypoint dispatcher) to a console script declared in pyproject.toml, and its
  arguments parse with that program's own argparse parser;
* every file the compose file mounts (volumes, configs, secrets, build context) and
  every file the Dockerfile copies exists in the repo; the mounted TOML configs and
  the LMK file load with the programs' own settings loaders;
* every Prometheus scrape target is ``<compose service>:<port the service exposes>``;
* every metric a Grafana panel queries is exported by the programs: the names are
  collected by instantiating the programs' metrics classes on a fresh
  CollectorRegistry (counters as ``_total``, histograms as ``_bucket/_sum/_count``);
* HAProxy's binary health check is byte-for-byte the echo ``posp-healthcheck`` sends,
  and its servers are the compose switch services, each with a unique node id.

The dashboard check is a SUBSET of Grafana's dashboard JSON schema, the essentials
Grafana needs to load and lay out the file: top-level ``uid``, ``title``,
``schemaVersion`` (int), ``panels`` (list); per panel ``id`` (unique int), ``type``,
``title``, ``datasource`` (naming the provisioned datasource uid), ``gridPos`` with
int ``h``/``w``/``x``/``y`` inside the 24-column grid and no two panels overlapping,
and ``targets`` each with a non-empty ``expr``.  It does not validate field config,
options, or panel-type-specific keys, nor PromQL syntax (the slow topology test runs
every panel query against a real Prometheus).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency (pyproject [test])")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "posp.json"
GRID_COLUMNS = 24


# --- loading ---------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load_compose()["services"]
    return result


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project["scripts"]
    return scripts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """A Dockerfile JSON (exec) form, or a shell form split like a shell would."""
    args = args.strip()
    if args.startswith("["):
        parsed: list[str] = json.loads(args)
        return parsed
    return shlex.split(args)


def dispatcher_posp_commands() -> set[str]:
    """The first arguments the image entrypoint hands to ``posp``."""
    match = re.search(r"^\s*([a-z|-]+)\)\s*\n\s*exec posp \"\$@\"", ENTRYPOINT.read_text(), re.M)
    assert match, 'entrypoint.sh must dispatch posp subcommands with `exec posp "$@"`'
    return set(match.group(1).split("|"))


def resolve_program(argv: list[str]) -> list[str]:
    """The command line the entrypoint dispatcher finally executes."""
    if not argv:
        argv = ["serve"]
    return ["posp", *argv] if argv[0] in dispatcher_posp_commands() else argv


def parse_with_program(argv: list[str]) -> None:
    """Parse ``argv[1:]`` with the program's own argparse parser (raises on bad args)."""
    program, args = argv[0], argv[1:]
    if program == "posp":
        from posp.cli import build_parser as posp_parser

        posp_parser().parse_args(args)
    elif program == "hsm-sim":
        from hsm_sim.cli import build_parser as hsm_parser

        hsm_parser().parse_args(args)
    elif program == "issuer-sim":
        from issuer_sim.cli import build_parser as issuer_parser

        issuer_parser().parse_args(args)
    elif program == "posp-fleet":
        from terminals.fleet_cli import build_parser as fleet_parser

        fleet_parser().parse_args(args)
    elif program == "posp-healthcheck":
        from posp.healthcheck import build_parser as health_parser

        health_parser().parse_args(args)


def posp_image_services() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in services().items():
        if str(service.get("image", "")).startswith("posp") or "build" in service:
            yield name, service


# --- programs --------------------------------------------------------------------------


def test_every_compose_program_is_a_console_script_and_its_arguments_parse() -> None:
    scripts = console_scripts()
    seen = set()
    for name, service in posp_image_services():
        argv = resolve_program(list(service.get("command", [])))
        assert argv[0] in scripts, f"service {name} runs {argv[0]!r}, not a console script"
        parse_with_program(argv)
        seen.add(argv[0])
    assert {"posp", "hsm-sim", "issuer-sim", "posp-fleet"} <= seen


def test_dispatcher_only_forwards_real_posp_subcommands() -> None:
    from posp.cli import build_parser

    for command in dispatcher_posp_commands():
        with pytest.raises(SystemExit) as exited:  # --help of a real subcommand exits 0
            build_parser().parse_args([command, "--help"])
        assert exited.value.code == 0, command


def test_dockerfile_runs_console_scripts_as_non_root_with_healthcheck_and_sigterm() -> None:
    instructions = dockerfile_instructions()
    scripts = console_scripts()
    by_kind: dict[str, list[str]] = {}
    for kind, args in instructions:
        by_kind.setdefault(kind, []).append(args)
    froms = by_kind["FROM"]
    assert len(froms) >= 2 and froms[-1].startswith("python:3.11-slim"), "multi-stage build"
    assert by_kind["STOPSIGNAL"] == ["SIGTERM"]
    assert by_kind["USER"][-1] not in ("root", "0"), "the runtime runs as non-root"
    health = by_kind["HEALTHCHECK"][-1]
    health_argv = exec_form(health.split("CMD", 1)[1])
    assert health_argv[0] in scripts
    parse_with_program(health_argv)
    cmd = resolve_program(exec_form(by_kind["CMD"][-1]))
    assert cmd[0] in scripts
    parse_with_program(cmd)
    exposed = {port for args in by_kind["EXPOSE"] for port in args.split()}
    assert {"5800", "9100", "1500", "9102", "9583", "9103"} <= exposed


def test_dockerfile_copies_only_files_that_exist() -> None:
    for kind, args in dockerfile_instructions():
        if kind != "COPY" or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_dockerignore_lets_every_copied_source_into_the_build_context() -> None:
    """.dockerignore excludes everything, then re-includes exactly what COPY needs."""
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    included = {rule[1:].removesuffix("/**") for rule in rules if rule.startswith("!")}
    assert rules[0] == "**"
    for kind, args in dockerfile_instructions():
        if kind == "COPY" and "--from=" not in args:
            for source in [p for p in args.split() if not p.startswith("--")][:-1]:
                assert source.rstrip("/").removeprefix("./") in included, source


# --- mounted files -----------------------------------------------------------------------


def mounted_host_paths() -> Iterator[tuple[str, Path]]:
    compose = load_compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                yield name, DEPLOY / source
        build = service.get("build")
        if isinstance(build, dict):
            context = DEPLOY / build.get("context", ".")
            yield name, context
            yield name, context / build.get("dockerfile", "Dockerfile")
    for section in ("configs", "secrets"):
        for key, entry in compose.get(section, {}).items():
            yield f"{section}.{key}", DEPLOY / entry["file"]


def test_every_mounted_file_exists_in_the_repo() -> None:
    paths = list(mounted_host_paths())
    assert len(paths) >= 8
    for owner, path in paths:
        assert path.exists(), f"{owner} mounts {path.relative_to(REPO)}, which does not exist"


def test_mounted_configs_load_with_the_programs_own_loaders() -> None:
    from hsm_sim.lmk import LmkSet
    from hsm_sim.settings import load_settings as hsm_settings
    from issuer_sim.settings import load_settings as issuer_settings
    from posp.settings import load_settings as switch_settings

    files = {k: DEPLOY / v["file"] for k, v in load_compose()["configs"].items()}
    switch = switch_settings(files["switch_toml"], store_url="postgresql://u@postgres/posp")
    assert switch.network.host in services() and switch.hsm_url.startswith("tcp://hsm:")
    assert hsm_settings(files["hsm_toml"]).port == 1500
    assert issuer_settings(files["issuer_toml"]).hsm.startswith("tcp://hsm:")
    lmk_file = DEPLOY / load_compose()["secrets"]["lmk"]["file"]
    assert "TEST" in lmk_file.name and LmkSet.load(lmk_file) == LmkSet.test_set()


def test_switch_instances_share_one_postgresql_store_with_unique_node_ids() -> None:
    switches = {
        name: s["environment"]
        for name, s in posp_image_services()
        if resolve_program(list(s.get("command", [])))[:2] == ["posp", "serve"]
    }
    assert len(switches) >= 2
    urls = {env["POSP_STORE_URL"] for env in switches.values()}
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql://")
    node_ids = [env["POSP_NODE_ID"] for env in switches.values()]
    assert len(set(node_ids)) == len(node_ids), f"duplicate node ids {node_ids}"


# --- Prometheus ----------------------------------------------------------------------------


def service_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def test_every_prometheus_target_is_a_compose_service_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    all_services = services()
    targets = [
        t
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for t in group["targets"]
    ]
    assert len(targets) >= 5
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in all_services, f"scrape target {target}: no service {host}"
        assert int(port) in service_ports(all_services[host]), f"{host} does not expose {port}"


# --- Grafana ---------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every series name the programs' metrics classes register, from the code."""
    from prometheus_client import CollectorRegistry

    from hsm_sim.metrics import HsmSimMetrics
    from issuer_sim.server import IssuerMetrics
    from posp.metrics import SwitchMetrics
    from posp.network.metrics import LinkMetrics

    registry = CollectorRegistry()
    SwitchMetrics(registry)
    LinkMetrics(registry)
    HsmSimMetrics(registry)
    IssuerMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def metric_names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or values (label matchers, ranges and groupings are removed first)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", stripped)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        word = match.group(0)
        if word.lower() in _PROMQL_WORDS or stripped[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def test_promql_name_extraction_skips_functions_labels_and_groupings() -> None:
    expr = 'histogram_quantile(0.9, sum by (le, x) (rate(a_bucket{b="c d"}[$__rate_interval])))'
    assert metric_names_in(expr) == {"a_bucket"}
    assert metric_names_in("max(g) / sum without (i) (h_total)") == {"g", "h_total"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_every_dashboard_query_names_an_exported_metric() -> None:
    exported = exported_metric_names()
    assert "posp_requests_total" in exported and "posp_request_seconds_bucket" in exported
    queried = set()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
            unknown = names - exported
            assert not unknown, f"panel {panel['title']!r} queries unexported {sorted(unknown)}"
            queried |= names
    assert len(queried) >= 15


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboard_has_grafanas_essential_structure() -> None:
    board = dashboard()
    for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        assert isinstance(board.get(key), kind), f"dashboard.{key} must be {kind.__name__}"
    datasource_uids = {
        d["uid"]
        for d in yaml.safe_load(
            (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
        )["datasources"]
    }
    ids = []
    for panel in board["panels"]:
        for key in ("id", "type", "title", "datasource", "gridPos", "targets"):
            assert key in panel, f"panel {panel.get('title')!r} lacks {key}"
        ids.append(panel["id"])
        assert panel["datasource"]["uid"] in datasource_uids
        grid = panel["gridPos"]
        assert all(isinstance(grid.get(k), int) for k in "hwxy"), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"{panel['title']!r} exceeds the grid"
        assert panel["targets"] and all(t.get("expr") for t in panel["targets"])
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    grids = [(p["title"], p["gridPos"]) for p in board["panels"]]
    for i, (title_a, a) in enumerate(grids):
        for title_b, b in grids[i + 1 :]:
            assert not _overlap(a, b), f"panels {title_a!r} and {title_b!r} overlap"


def test_dashboard_covers_the_operations_topics() -> None:
    """The panels the operators asked for are all there (by the metrics they query)."""
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    queried = {name for expr in exprs for name in metric_names_in(expr)}
    required = {
        "posp_requests_total", "posp_request_seconds_bucket", "posp_in_flight",
        "posp_shed_total", "posp_connections", "posp_signed_in_terminals",
        "posp_hsm_seconds_bucket", "posp_hsm_errors_total", "posp_network_link_up",
        "posp_network_saf_depth", "posp_store_seconds_bucket",
        "posp_recovery_resolved_total", "posp_recovery_unresolved_total",
        "posp_recovery_sweeps_total", "posp_recovery_in_doubt_entries",
        "posp_journal_pending_entries", "posp_journal_open_rows",
        "posp_recovery_last_success_timestamp_seconds",
    }  # fmt: skip
    assert required <= queried, sorted(required - queried)


# --- HAProxy -----------------------------------------------------------------------------------


def test_haproxy_checks_switch_readiness_on_the_metrics_port_of_compose_switches() -> None:
    """HAProxy takes a switch out of rotation on GET /ready != 200 (store, HSM or network
    down), asked on the port the switch serves /ready on; servers are compose services."""
    from posp.settings import load_settings

    cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert re.search(r"^\s*option httpchk GET /ready$", cfg, re.M)
    assert re.search(r"^\s*http-check expect status 200$", cfg, re.M)
    assert "0830" not in cfg.split("backend switches")[1], "no echo accepting any 0830"
    metrics_port = load_settings(DEPLOY / "config" / "switch.toml").metrics_port
    all_services = services()
    servers = re.findall(r"^\s*server \S+ (\S+):(\d+) check port (\d+)", cfg, re.M)
    assert len(servers) >= 2
    for host, port, check_port in servers:
        assert int(check_port) == metrics_port
        assert host in all_services and int(port) in service_ports(all_services[host])
