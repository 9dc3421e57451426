"""Render the reliability suite's figures into docs/RELIABILITY.md.

The suite (tests/integration/test_tenant_isolation.py, test_fuzz.py, test_faults.py, test_soak.py,
test_gateway_resilience.py, test_learning_loop.py, test_trainer_service.py) records what it
measured in bench/results/reliability.json through tests/helpers/figures.py; this script replaces
the block between the figure markers of docs/RELIABILITY.md with tables of those numbers.

    python -m bench.reliability
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "reliability.json"
DOC = ROOT / "docs" / "RELIABILITY.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
FAULTS = [
    "fault_gateway_kill9",
    "fault_engine_kill9",
    "fault_trainer_kill9",
    "fault_trainer_kill9_shared",
    "fault_worker_kill9_cycle",
    "fault_postgres_outage",
    "fault_redis_outage",
    "fault_redis_kill9",
]


CYCLE_FAULTS = [
    "fault_gateway_kill9_during_cycle",
    "fault_worker_kill9_during_cycle",
    "fault_trainer_kill9_during_cycle",
    "fault_engine_kill9_during_cycle",
]
"""tests/reliability/test_cycle_fault_matrix.py: each process killed while a cycle trains."""


def _get(data: dict[str, Any], section: str, key: str, default: str = "not run") -> Any:
    return data.get(section, {}).get(key, default)


def render(data: dict[str, Any]) -> str:
    lines = ["| figure | value | measured |", "|---|---|---|"]
    iso, fuzz, soak = data.get("isolation", {}), data.get("fuzz", {}), data.get("soak", {})
    lines.append(
        f"| tenant-isolation attack cases tried / refused as expected | "
        f"{iso.get('cases', 'not run')} / {iso.get('refused', 'not run')} | "
        f"{iso.get('measured_at', '')} |"
    )
    lines.append(
        f"| fuzz cases run (operations x identities) / failures / server errors | "
        f"{fuzz.get('cases', 'not run')} ({fuzz.get('operations', '?')} x "
        f"{len(fuzz.get('identities', []))}) / {fuzz.get('failures', '?')} / "
        f"{fuzz.get('server_errors', '?')} | {fuzz.get('measured_at', '')} |"
    )
    if fuzz.get("statuses"):
        statuses = ", ".join(f"{k}: {v}" for k, v in fuzz["statuses"].items())
        lines.append(f"| fuzz responses by status | {statuses} | |")
    lines.append(
        f"| soak: seconds, tenants, requests served, errors, lost, duplicated, versions "
        f"published, learning cycles run | {soak.get('seconds', 'not run')} s, "
        f"{soak.get('tenants', '?')}, {soak.get('requests_ok', '?')} "
        f"({soak.get('requests_per_s', '?')}/s), {soak.get('errors', '?')}, "
        f"{soak.get('lost', '?')}, {soak.get('duplicated', '?')}, "
        f"{soak.get('versions_published', '?')}, {soak.get('cycles_run', '?')} "
        f"{soak.get('cycle_outcomes', '')} | {soak.get('measured_at', '')} |"
    )
    if soak:
        lines.append(
            f"| soak: resident memory min-max (MiB), growth last vs middle third (MiB) | "
            f"{soak.get('rss_mib_min_max')}; growth {soak.get('rss_growth_last_vs_middle_third_mib')}"
            " | |"
        )
    lines += [
        "",
        "| fault | served | failed while down | accepted lost | duplicated | recovery | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for section in FAULTS:
        f = data.get(section)
        if not f:
            lines.append(f"| {section} | not run | | | | | |")
            continue
        recovery = f.get("recovery_s", f.get("recovery_after_engine_ready_s", ""))
        extra = f" (engine restart {f['engine_restart_s']} s)" if "engine_restart_s" in f else ""
        served = f.get("served_ok", f.get("steps", f.get("cycle_final_status", "")))
        failed = f.get("failed_while_down", f.get("failed", ""))
        lost = f.get("accepted_lost", f.get("examples_lost", f.get("steps_lost", "")))
        dup = f.get("duplicated", f.get("steps_applied_twice", ""))
        lines.append(
            f"| {f['fault']} | {served} | {failed} | {lost} | {dup} | "
            f"{recovery}{' s' if recovery != '' else ''}{extra} | {f['measured_at']} |"
        )
    lines += [
        "",
        "| fault during a learning cycle, feedback arriving | cycle | corrections accepted "
        "(during the fault) | "
        "lost or duplicated | chats accepted | client failures | versions failing checksum | "
        "down | recovery | measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for section in CYCLE_FAULTS:
        f = data.get(section)
        if not f:
            lines.append(f"| {section} | not run | | | | | | | | |")
            continue
        resumed = f" (resumed {f['cycle_resumed']}x)" if f.get("cycle_resumed") else ""
        if f.get("cycle_evaluation_retries"):
            resumed += f" (evaluation waited for the engine {f['cycle_evaluation_retries']}x)"
        during = (
            f" ({f['corrections_accepted_during_fault']})"
            if ("corrections_accepted_during_fault" in f)
            else ""
        )
        lines.append(
            f"| {f['fault']} | {f['cycle_final_status']}{resumed} | {f['corrections_accepted']}"
            f"{during} "
            f"| {f['corrections_lost_or_duplicated']} | {f['chats_accepted']} | "
            f"{f['client_failures_during_fault']} | {f['versions_failing_checksum']} | "
            f"{f['down_s']} s | {f['recovery_s']} s | {f['measured_at']} |"
        )
    return "\n".join(lines)


def main() -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    doc = DOC.read_text()
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{render(data)}\n{END}{tail}")
    print(render(data))


if __name__ == "__main__":
    main()
