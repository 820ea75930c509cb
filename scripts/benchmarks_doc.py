"""Write docs/benchmarks.md from the recorded benchmark results.

Usage: ``python scripts/benchmarks_doc.py [--check]``. Reads every
``benchmarks/results/*.json`` (and ``benchmarks/forecast_abilene_results.json``), turns
each into a Markdown table of its headline figures, and writes ``docs/benchmarks.md``.
Every table carries the command that produced its file: the ``# command:`` line of the
matching ``.txt`` when the run recorded one, else the command in :data:`COMMANDS`.
``--check`` writes nothing and exits 1 when the page is out of date (a test runs it).
A results file this script has no table for still gets a section listing its scalar
figures, so a new benchmark never silently disappears from the page.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "benchmarks.md"
ENV = "VNSTITCH_DATA=/work/shared/data PYTHONPATH=src"

#: The command behind each results file whose ``.txt`` records none.
COMMANDS: dict[str, str] = {
    "routing_te": f"{ENV} python benchmarks/routing_te.py --json > "
                  "benchmarks/results/routing_te.json",
    "allocate_provider": f"{ENV} python benchmarks/allocate_provider.py --json > "
                         "benchmarks/results/allocate_provider.json",
    "allocate_hindsight_bandwidth": f"{ENV} python benchmarks/allocate_hindsight.py "
                                    "--resource bandwidth --ratio 10 --json",
    "allocate_hindsight_compute": f"{ENV} python benchmarks/allocate_hindsight.py "
                                  "--resource compute --ratio 5 --json",
}

Row = Sequence[object]


def _num(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if v is None:
        return "-"
    return str(v)


def md_table(columns: Sequence[str], rows: Iterable[Row]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_num(v) for v in r) + " |" for r in rows]
    return out


def _policies(pol: dict[str, Any]) -> list[Row]:
    return [(name, p["unserved_fraction"], p["slack"], p["changes_per_hour"],
             *(p["total_cost"][r] for r in ("1", "5", "10", "50")))
            for name, p in pol.items()]


POLICY_COLS = ["policy", "unserved", "slack", "changes/h", "cost r=1", "r=5", "r=10", "r=50"]


def allocate_eval(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name in ("bandwidth", "compute"):
        if name in d:
            out += [f"**{name}**", "", *md_table(POLICY_COLS, _policies(d[name]["policies"])),
                    ""]
    checks = d.get("checks", {})
    if checks:
        out += md_table(["acceptance check", "met", "figures"],
                        [(k, v["met"], v["detail"]) for k, v in checks.items()])
    return out


def allocate_hindsight(d: dict[str, Any]) -> list[str]:
    rows: list[Row] = [(s["setting"] + (" (hindsight best)" if s["setting"] ==
                                        d["hindsight_best"] else ""),
                        s["train_cost"], s["test_cost"], s["unserved_fraction"], s["slack"])
                       for s in d["settings"]]
    rows.append(("chosen on training", "-", d["chosen"]["test_cost"],
                 d["chosen"]["unserved_fraction"], d["chosen"]["slack"]))
    rows.append(("reactive (HPA)", "-", d["reactive"]["test_cost"],
                 d["reactive"]["unserved_fraction"], d["reactive"]["slack"]))
    return [f"{d['resource']}, cost ratio {d['ratio']:g}", "",
            *md_table(["error setting", "train cost", "test cost", "unserved", "slack"], rows)]


def allocate_provider(d: dict[str, Any]) -> list[str]:
    rows: list[Row] = []
    for scen, s in d["scenarios"].items():
        for name, p in s["policies"].items():
            bill = p.get("provider", {}).get("bill")
            rows.append((scen, name, p["unserved_fraction"], p["slack"],
                         p["total_cost"]["10"], bill))
    return md_table(["scenario", "policy", "unserved", "slack", "cost r=10", "bill"], rows)


def routing_te(d: dict[str, Any]) -> list[str]:
    cols = ["topology", "nodes", "links", "demands", "optimum MLU", "fast MLU",
            "Yen+LP MLU", "shortest MLU", "baseline s", "fast s", "speedup"]
    return md_table(cols, [(r["topology"], r["nodes"], r["links"], r["demands"],
                            r["lp_optimal_mlu"], r["fast_mlu"], r["yen_path_lp_mlu"],
                            r["shortest_mlu"], r["baseline_seconds"], r["fast_seconds"],
                            r["speedup"]) for r in d["results"]])


def routing_abilene(d: dict[str, Any]) -> list[str]:
    rows: list[Row] = [("static shortest path", d["static_shortest"]["intervals_over_100"],
                        d["static_shortest"]["intervals_over_80"],
                        d["static_shortest"]["max_mlu"], "-")]
    for run in d["reroute_on_congestion"]:
        r = run["reroute_on_congestion"]
        rows.append((f"reroute: {run['config']['label']}", r["intervals_over_100"],
                     r["intervals_over_80"], r["max_mlu"],
                     run["max_flows_changed_per_interval"]))
    o = d["per_interval_optimum"]
    rows.append(("per-interval optimum (oracle)", o["intervals_over_100"],
                 o["intervals_over_80"], o["max_mlu"], "-"))
    return [f"{d['intervals']} intervals x 5 min, {d['flows']} flows, demand x "
            f"{d['scale']:.3f}", "",
            *md_table(["policy", ">100%", ">80%", "max MLU", "max flows changed/interval"],
                      rows)]


def sp_scale(d: dict[str, Any]) -> list[str]:
    keys = ["rms", "topology", "nodes", "wall_s", "cpu_s", "events_per_s"]
    rows = [[r.get(k) for k in keys] for r in d["results"]]
    out = md_table(["RMs", "topology", "nodes", "wall s", "cpu s", "events/s"], rows)
    return [*out, "", *md_table(["target", "value"], list(d["targets"].items()))]


def forecast_abilene(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for h, entry in d["horizons"].items():
        rows = [(m, r["nmae"], r["mase"], r["pinball"], r["coverage_80"], r["fit_seconds"])
                for m, r in entry["all"].items()]
        out += [f"H={h}, all {d['series']} series", "",
                *md_table(["model", "NMAE", "MASE", "pinball", "cover80", "fit s"], rows), ""]
    return out


def sweep(d: dict[str, Any]) -> list[str]:
    rows = [(e["engine"], e["runs"], e["failed"], e["wall_s"], e["runs_per_s"],
             e["speedup_vs_serial"], e["same_summaries_as_serial"]) for e in d["engines"]]
    return [f"{d['runs']} runs, {d['workers']} workers on {d['cpus']} CPUs, load average "
            f"{d['load_average_1m']}", "",
            *md_table(["engine", "runs", "failed", "wall s", "runs/s", "speed-up vs serial",
                       "same summaries"], rows)]


def sim_vs_live(d: dict[str, Any]) -> list[str]:
    def show(v: object) -> object:
        if isinstance(v, dict):
            return ", ".join(f"{k} {x}" for k, x in v.items()) or "none"
        return v
    rows = [(r["metric"], show(r["sim"]), show(r["live"]), r["ratio"], r.get("points"),
             r["within"]) for r in d["rows"]]
    cost = [(name, d[name]["wall_s"], d[name]["peak_rss_mib"]) for name in ("sim", "live")]
    return [f"{d['scenario']} on {d['topology']} in {d['segments']} segments, load average "
            f"{d['load_average_1m']} on {d['cpus']} CPUs; bounds: times within 2x, "
            "delivered fractions within 5 points", "",
            *md_table(["metric", "sim", "live", "live/sim", "points", "within"], rows), "",
            *md_table(["run", "wall s", "peak RSS MiB"], cost)]


def lab_congestion(d: dict[str, Any]) -> list[str]:
    med, virt, damp = d["lab"]["median"], d["virtual"], d["dampening"]
    rows = [("onset -> congestion detected s", med["congestion_detected_s"],
             virt["congestion_detected_s"]),
            ("onset -> traffic on the new path s", med["reroute_seconds"], virt["reroute_s"]),
            ("moved via U", f"{d['lab']['moved_to_u']}/{d['runs']}", virt.get("path_after")),
            ("make-before-break (kernel)", f"{d['lab']['make_before_break']}/{d['runs']}", "-"),
            ("video loss in the move", med["video_loss_during_reroute"], "-"),
            ("video delivered (congestion)", med["video_delivered_fraction"], "-"),
            ("e-mail delivered (congestion)", med["email_delivered_fraction"], "-"),
            ("route metric stitched / substrate",
             f"{med['route_metric_stitched']} / {med['route_metric_substrate']}", "-")]
    out = [f"median of {d['runs']} lab runs, load average {d['load_average_1m']:.1f}", "",
           *md_table(["figure", "lab", "virtual time"], rows), "",
           *md_table(["oscillating load (60 s)", "moves"],
                     [("dampening", damp["dampened_moves"]),
                      ("control: dampening off", damp["undamped_moves"])])]
    if "link_cut" in d:
        cut = d["link_cut"]
        out += ["", *md_table(["link cut A-T", "value"],
                              [("median reroute_s", cut["median_reroute_s"]),
                               ("max reroute_s", cut["max_reroute_s"])])]
    return out


def forecast_engines(d: dict[str, Any]) -> list[str]:
    rows = [(e["engine"], e["wall_s"], e["speedup_vs_serial"], e["same_forecasts_as_serial"],
             *(e["nmae"][m] for m in d["models"])) if "error" not in e else
            (e["engine"], "failed", "-", "-", *(e["error"][:60] if m == d["models"][0] else "-"
                                                  for m in d["models"]))
            for e in d["engines"]]
    copies = d.get("copies", 1)
    what = f"{d['series']} series ({copies} scaled copies of the Abilene flows)" \
        if copies > 1 else f"{d['series']} Abilene flows"
    return [f"backtest of {', '.join(d['models'])} on {what}, "
            f"{d['days']} days (last scored), H={d['horizon']}, {d['workers']} workers on "
            f"{d['cpus']} CPUs, load average {d['load_average_1m']}", "",
            *md_table(["engine", "wall s", "speed-up vs serial", "same forecasts",
                       *(f"NMAE {m}" for m in d["models"])], rows)]


def pra_loop_lag(d: dict[str, Any]) -> list[str]:
    rows = [(r["pool"], r.get("fits", "-"), r["lag_p99_ms_fit"], r["lag_p99_ms_no_fit"],
             r.get("lag_max_ms_fit"), r.get("lag_p99_ms_warmup"),
             r.get("step_seconds_p99")) for r in d["pools"]]
    load = d["load_average_1m"]
    return [f"event-loop lag (ms, probe every 10 ms) while the live PRA refits its LSTM, "
            f"{d['seconds_per_pool']:g} s per fit pool in one run, baseline "
            f"`{d['baseline']}`, load average {min(load):.1f}-{max(load):.1f} on "
            f"{d['cpus']} CPUs", "",
            *md_table(["pool", "fits", "p99 during a fit", "p99 without a fit",
                       "max during a fit", "p99 pool warm-up", "step p99 s"], rows)]


def pra_slack(d: dict[str, Any]) -> list[str]:
    rows = [(r["variant"], r["unserved_fraction"], r["slack"],
             r.get("slack_capacity_at_row_end"), r.get("unserved_capacity_at_row_end"),
             r.get("covered_at_row_start"), r.get("rises_above_capacity"),
             r.get("steps_before_first_fit")) for r in d["results"]]
    return [f"compute slack of the live PRA in fake time, {d['rows']} rows, {d['model']}, "
            f"start-up {d['lead_s']:g} s; baseline `{d['baseline']}`", "",
            *md_table(["variant", "unserved", "slack", "slack (row end)",
                       "unserved (row end)", "rises covered in time", "rises",
                       "steps before first fit"], rows)]


def tunnel_install(d: dict[str, Any]) -> list[str]:
    rows = [(name, r["up_ms_median"], r["up_ms_max"], r["down_ms_median"], r["down_ms_max"])
            for name, r in (("tunnel end", d["tunnel_end"]),
                            ("baseline: no WireGuard", d["baseline_no_wireguard"]))]
    return [f"one tunnel end's dataplane pass, {d['runs']} runs, load average "
            f"{d['load_average_1m_start']} -> {d['load_average_1m_end']}", "",
            *md_table(["pass", "up ms (median)", "up ms (max)", "down ms (median)",
                       "down ms (max)"], rows)]


def generic(d: dict[str, Any]) -> list[str]:
    return md_table(["figure", "value"], [(k, v) for k, v in d.items()
                                          if not isinstance(v, dict | list)])


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "allocate_eval": allocate_eval, "allocate_hindsight": allocate_hindsight,
    "allocate_provider": allocate_provider, "routing_te": routing_te,
    "routing_abilene": routing_abilene, "sp_scale": sp_scale,
    "forecast_abilene": forecast_abilene, "sweep": sweep, "sim_vs_live": sim_vs_live,
    "lab_congestion": lab_congestion,
    "forecast_engines": forecast_engines, "pra_loop_lag": pra_loop_lag,
    "pra_slack": pra_slack, "tunnel_install": tunnel_install,
}


def command_for(path: Path) -> str:
    txt = path.with_suffix(".txt")
    if txt.exists():
        for line in txt.read_text().splitlines()[:3]:
            if line.startswith("# command:"):
                return line[len("# command:"):].strip()
            if line.startswith("# ") and "python benchmarks/" in line:
                return line[2:].strip()
    if path.stem in COMMANDS:
        return f"{COMMANDS[path.stem]}   # reconstructed: the run recorded no command"
    return f"(not recorded: see python benchmarks/{path.stem.split('_results')[0]}.py --help)"


def renderer_for(stem: str) -> Callable[[dict[str, Any]], list[str]]:
    for prefix, fn in sorted(RENDERERS.items(), key=lambda kv: -len(kv[0])):
        if stem.startswith(prefix):
            return fn
    return generic


def results_files() -> list[Path]:
    files = sorted(RESULTS.glob("*.json"))
    extra = ROOT / "benchmarks" / "forecast_abilene_results.json"
    return files + ([extra] if extra.exists() else [])


def render() -> str:
    lines = ["# Benchmark results", "",
             "Generated by `python scripts/benchmarks_doc.py` from `benchmarks/results/*.json`; "
             "do not edit by hand. Each section names the command that produced its file. "
             "Runs were on a 2-core machine shared with other jobs, so wall times are upper "
             "bounds. `python benchmarks/run.py --list` describes every benchmark.", ""]
    for path in results_files():
        data = json.loads(path.read_text())
        lines += [f"## {path.stem}", "", f"File `{path.relative_to(ROOT)}`, made by:", "",
                  "```", command_for(path), "```", "",
                  *renderer_for(path.stem)(data), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if docs/benchmarks.md is out of date; write nothing")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python "
                  "scripts/benchmarks_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
