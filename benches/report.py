"""The aggregator of vman's benchmarks.

Reads the JSON lines every bench program appends to ``VMAN_BENCH_OUT``
(``{"bench", "impl", "params", "unit", "samples"}``), computes per series the
median, p10/p90, min and n, then every target of issue 11 as a ratio (or a
difference) of medians *of the same run*, and writes:

- a table on stdout;
- ``--json`` (default benches/results/latest.json): the machine, every
  series, every target;
- ``--md`` (default benches/results/latest.md): Markdown for BENCHMARKS.md.

A series that is missing makes its target "not measured", never a failure.

  python benches/report.py RESULTS.jsonl [--json OUT] [--md OUT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMANS = ["vman-rust", "vman-python", "vman-c"]
MB = 1_000_000


def key(bench: str, impl: str, **params: Any) -> str:
    p = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{bench}[{impl}]{{{p}}}"


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Series:
    bench: str
    impl: str
    params: dict[str, Any]
    unit: str
    samples: list[float]

    @property
    def key(self) -> str:
        return key(self.bench, self.impl, **self.params)

    def stats(self) -> dict[str, Any]:
        xs = sorted(self.samples)
        return {
            "median": statistics.median(xs),
            "p10": quantile(xs, 0.10),
            "p90": quantile(xs, 0.90),
            "min": xs[0],
            "n": len(xs),
        }


def load(paths: list[str]) -> dict[str, Series]:
    """Every series; two lines of one series (a program run twice) merge."""
    out: dict[str, Series] = {}
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    s = Series(d["bench"], d["impl"], dict(d.get("params") or {}), d.get("unit", "s"), [float(x) for x in d["samples"]])
                except (ValueError, KeyError, TypeError) as e:
                    print(f"report: {path}:{n}: skipped ({e})", file=sys.stderr)
                    continue
                if not s.samples:
                    continue
                if s.key in out:
                    out[s.key].samples.extend(s.samples)
                else:
                    out[s.key] = s
    return out


@dataclass
class Target:
    name: str
    rule: str  # how it is computed, for people
    limit: str
    measured: Optional[float] = None
    shown: str = "not measured"
    ok: Optional[bool] = None

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.name, "rule": self.rule, "limit": self.limit, "measured": self.measured, "shown": self.shown, "pass": self.ok}


def targets(series: dict[str, Series]) -> list[Target]:
    def med(bench: str, impl: str, **params: Any) -> Optional[float]:
        s = series.get(key(bench, impl, **params))
        return s.stats()["median"] if s else None

    out: list[Target] = []

    def ratio(name: str, a: Optional[float], b: Optional[float], limit: float, rule: str, at_least: bool = False) -> None:
        t = Target(name, rule, (">= " if at_least else "<= ") + f"{limit:g}x")
        if a is not None and b is not None and b > 0:
            t.measured = a / b
            t.shown = f"{t.measured:.3f}x"
            t.ok = t.measured >= limit if at_least else t.measured <= limit
        out.append(t)

    def absolute(name: str, v: Optional[float], limit: float, unit: str, scale: float, rule: str) -> None:
        t = Target(name, rule, f"<= {limit * scale:g} {unit}")
        if v is not None:
            t.measured = v
            t.shown = f"{v * scale:.3f} {unit}"
            t.ok = v <= limit
        out.append(t)

    # "blank" (a blank boot disk) comes from benches/runtime.rs, vman-rust only.
    blank = any(s.bench == "compare/start" and s.params == {"disk": "blank"} for s in series.values())
    def impls_of(bench: str) -> tuple[str, ...]:
        """The vman implementations that measured `bench` (vman-rust when
        none did, so a missing series still shows as "not measured")."""
        found = tuple(i for i in VMANS if any(s.bench == bench and s.impl == i for s in series.values()))
        return found or ("vman-rust",)

    for disk in ("none", "linked") + (("blank",) if blank else ()):
        q = {"disk": disk}
        for impl in VMANS if disk != "blank" else ("vman-rust",):
            ratio(f"start {impl} / qemu (disk {disk})", med("compare/start", impl, **q), med("compare/start", "qemu", **q), 1.05,
                  "median compare/start vman ÷ raw QEMU spawn → QMP ready")
            ratio(f"libvirt / start {impl} (disk {disk})", med("compare/start", "libvirt", **q), med("compare/start", impl, **q), 5.0,
                  "median compare/start libvirt ÷ vman", at_least=True)
            ratio(f"force_stop {impl} / qemu (disk {disk})", med("compare/force_stop", impl, **q), med("compare/force_stop", "qemu", **q),
                  1.2, "median compare/force_stop vman ÷ raw QMP quit → exit")
            g, gq = med("compare/graceful_stop", impl, **q), med("compare/graceful_stop", "qemu", **q)
            absolute(f"graceful_stop {impl} - qemu (disk {disk})", None if g is None or gq is None else g - gq, 0.010, "ms", 1e3,
                     "median graceful_stop vman − raw system_powerdown → exit")
    absolute("list 10k vman-rust", med("scale/list", "vman-rust", n=10000), 0.025, "ms", 1e3, "median scale/list n=10000")
    absolute("list 10k vman-python", med("scale/list", "vman-python", n=10000), 0.060, "ms", 1e3, "median scale/list n=10000")
    ns = (0, 1000, 10000)

    def worst(bench: str, impl: str, minus: Optional[str] = None) -> tuple[Optional[float], str]:
        """The largest median over the store sizes measured (minus another
        implementation's median at the same size), and at which size."""
        best: Optional[tuple[float, int]] = None
        for n in ns:
            a = med(bench, impl, n=n)
            b = med(bench, minus, n=n) if minus else 0.0
            if a is not None and b is not None and (best is None or a - b > best[0]):
                best = (a - b, n)
        return (best[0], f" (worst: n={best[1]})") if best else (None, "")

    v, at = worst("scale/get", "vman-python")
    absolute("get vman-python" + at, v, 20e-6, "µs", 1e6, "largest median scale/get over n=0/1k/10k")
    for impl in ("vman-python", "vman-c"):
        v, at = worst("scale/get", impl, minus="vman-rust")
        absolute(f"get {impl} - vman-rust" + at, v, 2e-6, "µs", 1e6, "largest difference of median scale/get at the same n")
    for impl in VMANS:
        v, at = worst("scale/create", impl)
        absolute(f"create {impl}" + at, v, 1e-3, "ms", 1e3, "largest median scale/create over n=0/1k/10k")
    for impl in impls_of("scale/alloc"):
        ratio(f"alloc 99% / 0% {impl}", med("scale/alloc", impl, fill=99), med("scale/alloc", impl, fill=0), 2.0, "median scale/alloc fill=99 ÷ fill=0")
    for impl in impls_of("runtime/start") + ("qemu",):
        ratio(f"start with 30 running / 0 {impl}" + (" (reference: the host's own cost)" if impl == "qemu" else ""), med("runtime/start", impl, running=30), med("runtime/start", impl, running=0), 1.1,
              "median runtime/start running=30 ÷ running=0")
    for impl in impls_of("runtime/memory"):
        m30, m0 = med("runtime/memory", impl, running=30), med("runtime/memory", impl, running=0)
        absolute(f"memory per running VM {impl}", None if m30 is None or m0 is None else (m30 - m0) / 30, 1.0 * MB, "MB", 1 / MB,
                 "(runtime/memory running=30 − running=0) ÷ 30")
    return out


def run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemTotal:")), 0)
    except OSError:
        pass
    qemu = run(["qemu-system-x86_64", "--version"]).splitlines()
    version = ""
    try:
        with open(os.path.join(TOP, "Cargo.toml")) as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
            version = m.group(1) if m else ""
    except OSError:
        pass
    commit = run(["git", "-C", TOP, "rev-parse", "--short=12", "HEAD"])
    if commit and run(["git", "-C", TOP, "status", "--porcelain", "--untracked-files=no"]):
        commit += "-dirty"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "qemu": qemu[0] if qemu else "",
        "libvirt": run(["libvirtd", "--version"]),
        "vman": version,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "load": os.getloadavg()[0],
    }


def fmt(v: float, unit: str) -> str:
    if unit == "bytes":
        return f"{v / MB:.2f} MB"
    if v >= 1:
        return f"{v:.3f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.2f} ms"
    return f"{v * 1e6:.2f} µs"


IMPL_ORDER = ["qemu", "libvirt", *VMANS]


def order(s: Series) -> tuple[Any, ...]:
    """By bench, then parameters (numbers as numbers), then qemu, libvirt, vman-*."""
    params = tuple((k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))) for k, v in sorted(s.params.items()))
    impl = IMPL_ORDER.index(s.impl) if s.impl in IMPL_ORDER else len(IMPL_ORDER)
    return (s.bench, params, impl, s.impl)


def markdown(m: dict[str, Any], series: dict[str, Series], ts: list[Target]) -> str:
    lines = [
        f"Run of {m['date']} at commit `{m['commit']}` on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_bytes'] / 2**30:.1f} GiB), Linux {m['kernel']}, {m['qemu']}, {m['libvirt'] or 'libvirt not installed'}, "
        f"vman {m['vman']}; load average {m['load']:.2f} at the end.",
        "",
        "### Targets",
        "",
        "| Target | Measured | Limit | Result |",
        "|---|---:|---:|---|",
    ]
    for t in ts:
        res = "not measured" if t.ok is None else ("pass" if t.ok else "**FAIL**")
        lines.append(f"| {t.name} | {t.shown} | {t.limit} | {res} |")
    lines += ["", "### Series", "", "| Bench | Impl | Params | Median | p10 | p90 | Min | n |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for s in sorted(series.values(), key=order):
        st = s.stats()
        params = ", ".join(f"{k}={v}" for k, v in sorted(s.params.items()))
        lines.append(
            f"| {s.bench} | {s.impl} | {params} | {fmt(st['median'], s.unit)} | {fmt(st['p10'], s.unit)} | {fmt(st['p90'], s.unit)} "
            f"| {fmt(st['min'], s.unit)} | {st['n']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="JSON lines files")
    p.add_argument("--json", default=os.path.join(TOP, "benches", "results", "latest.json"))
    p.add_argument("--md", default=os.path.join(TOP, "benches", "results", "latest.md"))
    a = p.parse_args()
    series = load(a.inputs)
    ts = targets(series)
    m = machine()
    md = markdown(m, series, ts)
    for path in (a.json, a.md):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(a.json, "w") as f:
        doc = {
            "machine": m,
            "series": [{"bench": s.bench, "impl": s.impl, "params": s.params, "unit": s.unit, **s.stats(), "samples": s.samples} for s in series.values()],
            "targets": [t.as_dict() for t in ts],
        }
        json.dump(doc, f, separators=(",", ":"))  # compact: the samples make it large
        f.write("\n")
    with open(a.md, "w") as f:
        f.write(md)
    print(md)
    print(f"report: wrote {a.json} and {a.md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
