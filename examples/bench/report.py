"""The bench's table (rich) and its one-line JSON summary."""

from __future__ import annotations

from typing import Any

import orjson
from flow_count import lines as flow_count_lines
from rich.console import Console
from rich.table import Table

Row = tuple[str, str, str, str, str]
NA = "—"


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _pcts(figures: dict[str, float], digits: int = 1) -> str:
    return " / ".join(f"{figures[p]:.{digits}f}" for p in ("p50", "p95", "p99"))


def _p1(r: dict[str, Any]) -> list[Row]:
    note = (
        f"worker/baseline {r['ratio']:.3f}; {r['leads']:,} leads, concurrency {r['concurrency']}, no latency"
    )
    return [("P1 overhead", "leads/s", _num(r["baseline_leads_s"]), _num(r["worker_leads_s"]), note),
            *_cpu("P1 overhead", r), *_eos("P1 overhead", r)]  # fmt: skip


def _p2(r: dict[str, Any]) -> list[Row]:
    latency_bound = _num(r["latency_bound_leads_s"], 0)
    note = (
        f"bound = min({r['concurrency']} / {r['partner_latency_ms']:g} ms = {latency_bound}, baseline) = "
        f"{_num(r['bound_leads_s'])}; worker/bound {r['ratio_to_bound']:.3f}; {r['leads']:,} leads"
    )
    return [("P2 latency 50 ms", "leads/s", _num(r["baseline_leads_s"]), _num(r["worker_leads_s"]), note),
            *_cpu("P2 latency 50 ms", r), *_eos("P2 latency 50 ms", r)]  # fmt: skip


def _cpu(scenario: str, r: dict[str, Any]) -> list[Row]:
    base, worker = r.get("baseline_cpu_us_per_lead"), r.get("worker_cpu_us_per_lead")
    if base is None or worker is None:
        return []
    note = f"worker/baseline {worker / base:.2f}; process CPU (all threads) while outputs came"
    return [(scenario, "CPU µs/lead", _num(base), _num(worker), note)]


def _eos(scenario: str, r: dict[str, Any]) -> list[Row]:
    """The worker under exactly-once (the worker column above is at-least-once)."""
    e = r.get("exactly_once")
    if e is None:
        return []
    alo, eos = e["at_least_once_received_to_visible_ms"], e["received_to_visible_ms"]
    return [
        (scenario, "exactly-once leads/s", NA, _num(e["leads_s"]),
         f"{e['ratio']:.3f}x the worker at-least-once ({_num(e['at_least_once_leads_s'])})"),
        (scenario, "received -> visible p50/p95/p99 ms", _pcts(alo), _pcts(eos),
         "worker at-least-once | exactly-once: the worker took the lead -> a read_committed reader "
         f"can read its output; p99 {e['added_p99_ms']:+.0f} ms"),
        (scenario, "written -> visible p50/p95/p99 ms", _pcts(e["at_least_once_written_to_visible_ms"]),
         _pcts(e["written_to_visible_ms"]), "output CreateTime -> readable: the wait for the commit"),
    ]  # fmt: skip


def exactly_once_lines(results: dict[str, Any]) -> list[str]:
    """One line per scenario with an exactly-once run, e.g.
    ``P1 exactly-once: 5,012 leads/s = 0.93x at-least-once; p99 +412 ms``."""
    lines = []
    for name in ("P1", "P2"):
        e = (results.get(name) or {}).get("exactly_once")
        if e:
            eos_p99, alo_p99 = (
                e["received_to_visible_ms"]["p99"],
                e["at_least_once_received_to_visible_ms"]["p99"],
            )
            lines.append(
                f"{name} exactly-once: {e['leads_s']:,.0f} leads/s = {e['ratio']:.2f}x at-least-once "
                f"({e['at_least_once_leads_s']:,.0f}); p99 {e['added_p99_ms']:+.0f} ms "
                f"(received -> visible p99 {eos_p99:.0f} vs {alo_p99:.0f} ms)"
            )
    return lines


def _p3(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key in ("one_worker", "two_workers"):
        run = r[key]
        label = f"P3 limit {r['limit']:g}/s, {run['workers']} worker(s)"
        note = (
            f"worker only (the baseline has no limiter); {run['leads']:,} leads over "
            f"{run['seconds']:g} s; partitions owned {run['owned_partitions']} of {run['partitions']}"
        )
        rows.append((label, "max requests in any 1 s", NA, str(run["max_1s"]), note))
        rows.append((label, "mean rate / limit", NA, f"{run['mean_over_limit']:.3f}",
                     f"mean {run['mean_rate']:.1f}/s; max/limit {run['max_over_limit']:.3f}"))  # fmt: skip
    return rows


def _p4(r: dict[str, Any]) -> list[Row]:
    b, w = r["baseline"], r["worker"]
    rates = f"paced at {b['rate']:.0f}/s (baseline), {w['rate']:.0f}/s (worker): {r['rate_basis']}"
    return [
        ("P4 latency", "e2e p50/p95/p99 ms", _pcts(b["e2e_ms"]), _pcts(w["e2e_ms"]), rates),
        ("P4 latency", "partner p50/p95/p99 ms", _pcts(b["partner_ms"], 3), _pcts(w["partner_ms"], 3),
         "time spent in the partner, measured there"),
        ("P4 latency", "added p50/p95/p99 ms", _pcts(b["added_ms"]), _pcts(w["added_ms"]),
         f"e2e - partner per lead; {b['leads']:,} / {w['leads']:,} leads; CreateTime has 1 ms resolution"),
    ]  # fmt: skip


def _p5(r: dict[str, Any]) -> list[Row]:
    b, w = r["baseline"], r["worker"]

    def flat(s: dict[str, Any]) -> str:
        verdict = "flat" if s["flat"] else "NOT flat"
        return f"{verdict} ({s['final_over_warm']:.2f}x of {s['warm_rss_mib']:.0f})"

    rows: list[Row] = [
        ("P5 memory", "warm RSS MiB", _num(b["warm_rss_mib"]), _num(w["warm_rss_mib"]),
         f"taken at {b['warmup_s']:g} s of {b['seconds']:g} s each, sampled every 0.5 s"),
        ("P5 memory", "peak RSS MiB", _num(b["peak_rss_mib"]), _num(w["peak_rss_mib"]), ""),
    ]  # fmt: skip
    if "after_large_rss_mib" in w and "after_large_rss_mib" in b:
        handled = f"{b['large_handled_s']} / {w['large_handled_s']} s"

        def both(key: str) -> tuple[str, str]:
            return _num(b[key]), _num(w[key])

        rows += [
            ("P5 memory", "before large RSS MiB", *both("before_large_rss_mib"),
             f"{w['large']} leads of 1-2 MB (half over the 1 MiB limit) in burst(s) at {w['bursts_at_s']} s"),
            ("P5 memory", "peak during large MiB", *both("large_peak_rss_mib"),
             f"publish to last output of a burst: {handled}"),
            ("P5 memory", "after large RSS MiB", *both("after_large_rss_mib"),
             f"5 s after a burst's last output (highest); x warm {b['after_large_over_warm']:.2f} / "
             f"{w['after_large_over_warm']:.2f}"),
        ]  # fmt: skip
    return [
        *rows,
        ("P5 memory", "final RSS MiB", _num(b["final_rss_mib"]), _num(w["final_rss_mib"]), ""),
        ("P5 memory", "flat (final within ±10 % of warm)", flat(b), flat(w), ""),
        ("P5 memory", "leads processed", _num(b["leads"]), _num(w["leads"]),
         f"published at {b['rate']:.0f}/s (baseline), {w['rate']:.0f}/s (worker): {r['rate_basis']}"),
    ]  # fmt: skip


def _f1(r: dict[str, Any]) -> list[Row]:
    counts = r["counts"]
    label = f"F1 {'/'.join(str(p['flows']) for p in counts)} flows per worker"
    window = f"idle window {counts[0]['window_s']:g} s after {r['settle_s']:g} s of rest"
    rows: list[Row] = [
        (label, "RSS MiB", NA, " / ".join(_num(p["rss_mib"]) for p in counts),
         f"one worker per count, each flow its own topics; median of 1 s samples, {window}"),
        (label, "idle CPU % of a core", NA,
         " / ".join(f"{p['cpu_pct']:.2f}" for p in counts),
         f"utime+stime over the window (one clock tick = {counts[0]['tick_pct']:.3f} %)"),
    ]  # fmt: skip
    if "rss_mib_per_flow" in r:
        rss_ok = r["rss_mib_per_flow"] <= r["goal_mib_per_flow"]
        cpu_ok = r["cpu_pct_per_flow"] < r["goal_cpu_pct_per_flow"]
        goals = (f"RSS {'ok' if rss_ok else 'MISSED'} (goal <= {r['goal_mib_per_flow']:g} MiB), idle CPU "
                 f"{'ok' if cpu_ok else 'MISSED'} (goal < {r['goal_cpu_pct_per_flow']:g} %)")  # fmt: skip
        slope = f"{r['rss_mib_per_flow']:+.2f} / {r['cpu_pct_per_flow']:+.4f}"
        rows.append((label, "per added flow: MiB / CPU %", NA, slope, goals))
    return rows


ROWS = {"P1": _p1, "P2": _p2, "P3": _p3, "P4": _p4, "P5": _p5, "F1": _f1}


def table(results: dict[str, Any]) -> Table:
    title = "leadstreams bench: hand-written baseline vs leadstreams worker (at-least-once unless a row says)"
    out = Table(title=title, show_lines=True)
    for column, justify in (("scenario", "left"), ("figure", "left"), ("baseline", "right"),
                            ("worker", "right"), ("notes", "left")):  # fmt: skip
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, rows in ROWS.items():
        result = results.get(name)
        if result is None:
            continue
        if "error" in result:
            out.add_row(name, "FAILED", NA, NA, str(result["error"]).splitlines()[0][:200])
            continue
        for row in rows(result):
            out.add_row(*row)
    return out


def print_report(console: Console, results: dict[str, Any]) -> None:
    console.print(table(results))
    for line in exactly_once_lines(results):
        print(line, flush=True)
    if "counts" in (results.get("F1") or {}):
        for line in flow_count_lines(results["F1"]):
            print(line, flush=True)
    # The last line of stdout: every figure, one JSON document (not wrapped by rich).
    print(orjson.dumps(results).decode(), flush=True)
