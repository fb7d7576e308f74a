"""Turning a run's numbers into the table, the verdict on each target, and the plot.

Ratios are taken against two baselines: the raw asyncio server (the speed limit), in
both variants (a write per event, and coalesced writes), and the hand-written
Tornado handler (what one writes without a library). The latency target is judged
against the better raw p99 of the two, so the verdict is never flattered.
Everything here is pure formatting, except :func:`plot`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

RAW = ("raw-asyncio", "raw-asyncio-coalesced")


# -- helpers ------------------------------------------------------------------------


def _by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in results["contenders"] if "full" in c}


def _rate(c: dict[str, Any] | None) -> float | None:
    return c["full"]["events_per_s"] if c and "full" in c else None


def _p99(c: dict[str, Any] | None) -> float | None:
    return c["rate"]["latency_ms"]["p99"] if c and "rate" in c else None


def _best_raw_p99(byname: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
    p99s = [(n, _p99(byname.get(n))) for n in RAW]
    valid = [(n, p) for n, p in p99s if p]
    return min(valid, key=lambda x: x[1]) if valid else None


def _k(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _pinning(env: dict[str, Any]) -> str:
    if not env["pinned"]:
        return ""
    return f"server on core {env.get('server_cpu', 0)}, client on core {env.get('client_cpu', 1)}"


def one_line(c: dict[str, Any]) -> str:
    """A contender's headline, printed as the run goes."""
    if "skipped" in c:
        return f"skipped ({c['skipped']})"
    if "error" in c and "full" not in c:
        return f"FAILED: {c['error']}"
    parts = [c.get("impl", "")]
    if "idle_bytes_per_connection" in c:
        parts.append(f"idle {c['idle_bytes_per_connection'] / 1024:.1f} KB/conn")
    if "full" in c:
        f = c["full"]
        parts.append(
            f"{_k(f['events_per_s'])} ev/s, lost {f['lost']}, server CPU "
            f"{_pct(f['server_cpu_percent'])}, client CPU {_pct(f['cpu_percent'])}"
        )
    if "rate" in c:
        lat = c["rate"]["latency_ms"]
        parts.append(f"p50 {_ms(lat['p50'])} ms, p99 {_ms(lat['p99'])} ms")
    if "error" in c:
        parts.append(f"FAILED: {c['error']}")
    return "; ".join(p for p in parts if p)


def hold_line(h: dict[str, Any]) -> str:
    """A hold test's headline."""
    if "error" in h:
        return f"FAILED ({h['errors']} errors): {h['error']}"
    return (
        f"{h['open_after_hold']}/{h['subscribers']} held, {h['errors']} errors, "
        f"connected in {h['connect']['seconds']:.1f} s, RSS {h['rss_mb']} MB "
        f"({h['idle_bytes_per_connection'] / 1024:.1f} KB/conn), "
        f"delivered {h['delivery']['delivered']}/{h['delivery']['expected']}"
    )


# -- targets ------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: what was measured, against what, met or not."""
    byname = _by_name(results)
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    # Both raw variants: the reference figure (~140-170k/s, client-bound) is
    # the one-write-per-event server; the coalescing one is the true speed limit.
    for name in ("tornadose-tornado", "tornadose-uvicorn"):
        rate = _rate(byname.get(name))
        for raw_name in RAW:
            raw = _rate(byname.get(raw_name))
            if rate and raw:
                add(
                    f"{name}: SSE events/s >= 0.7x {raw_name}",
                    f"{_k(rate)} vs {_k(raw)} = {rate / raw:.2f}x",
                    rate >= 0.7 * raw,
                )
    handler_ws = _rate(byname.get("tornado-handler-ws"))
    for name in ("tornadose-tornado-ws", "tornadose-uvicorn-ws"):
        rate = _rate(byname.get(name))
        if rate and handler_ws:
            add(
                f"{name}: WS events/s >= 2x Tornado WS handler",
                f"{_k(rate)} vs {_k(handler_ws)} = {rate / handler_ws:.2f}x",
                rate >= 2 * handler_ws,
            )
    raw_p99 = _best_raw_p99(byname)
    for name in ("tornadose-tornado", "tornadose-uvicorn"):
        p99 = _p99(byname.get(name))
        if p99 and raw_p99:
            add(
                f"{name}: p99 latency at the fixed rate <= 1.5x raw",
                f"{_ms(p99)} ms vs {raw_p99[0]} {_ms(raw_p99[1])} ms = {p99 / raw_p99[1]:.2f}x",
                p99 <= 1.5 * raw_p99[1],
            )
    for name, plain in (
        ("tornadose-tornado", "tornado-handler"),
        ("tornadose-uvicorn", "asgi-handler"),
    ):
        mine, theirs = byname.get(name), byname.get(plain)
        if mine and theirs:
            a, b = mine["idle_bytes_per_connection"], theirs["idle_bytes_per_connection"]
            add(
                f"{name}: idle memory/SSE connection <= {plain}",
                f"{a / 1024:.1f} KB vs {b / 1024:.1f} KB",
                a <= b,
            )
    for hold in results.get("hold", []):
        add(
            f"{hold['name']}: {hold['subscribers']} subscribers held without errors",
            f"{hold.get('open_after_hold', 0)} held, {hold['errors']} errors",
            hold["errors"] == 0 and "error" not in hold,
        )
    return out


# -- the table --------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    """The whole report as text: config, main table, hold test, targets, profiles."""
    config, env = results["config"], results["environment"]
    byname = _by_name(results)
    raw = byname.get("raw-asyncio")
    coalesced = byname.get("raw-asyncio-coalesced")
    raw_p99 = _best_raw_p99(byname)
    lines = [
        f"{config['subscribers']} subscribers, {config['messages']} messages x "
        f"{config['size']} B at full speed (bursts of {config['burst']}), "
        f"{config['rate']:g} msg/s for {config['duration']:g} s; "
        f"{env['cpu']}, {env['cores']} cores, "
        + (_pinning(env) or "unpinned")
        + f"; Python {env['python']}, commit {env['commit']}"
        + f"; other load before the run: {env.get('busy_cores_before')} cores",
        "",
    ]
    header = (
        "contender",
        "stack",
        "events/s",
        "x raw",
        "x raw+co",
        "x handler",
        "lost",
        "srv CPU",
        "cli CPU",
        "ev/srv-CPU-s",
        "p50 ms",
        "p99 ms",
        "p99 x raw",
        "fan-out ms",
        "idle KB/conn",
    )
    rows = [header]
    for c in results["contenders"]:
        if "full" not in c or "rate" not in c:
            reason = c.get("skipped") or c.get("error", "?")
            rows.append((c["name"], c["stack"], f"({reason[:60]})", *[""] * (len(header) - 3)))
            continue
        full, lat = c["full"], c["rate"]["latency_ms"]
        handler = byname.get("tornado-handler-ws" if c["transport"] == "ws" else "tornado-handler")
        is_sse = c["transport"] == "sse"
        lost = full["lost"] + c["rate"]["lost"]
        rows.append(
            (
                c["name"],
                c["stack"] + ("" if is_sse else " ws"),
                _k(full["events_per_s"]),
                _ratio(full["events_per_s"], _rate(raw)) if is_sse else "-",
                _ratio(full["events_per_s"], _rate(coalesced)) if is_sse else "-",
                _ratio(full["events_per_s"], _rate(handler)),
                str(lost),
                _pct(full["server_cpu_percent"]),
                _pct(full["cpu_percent"]),
                _k(full["events_per_server_cpu_s"]),
                _ms(lat["p50"]),
                _ms(lat["p99"]),
                _ratio(lat["p99"], raw_p99[1]) if raw_p99 and is_sse else "-",
                _ms(c["rate"].get("fanout_ms", {}).get("p50")),
                f"{c['idle_bytes_per_connection'] / 1024:.1f}",
            )
        )
    lines += _table(rows)
    impls = Counter(f"{c['name']}: {c['impl']}" for c in results["contenders"] if "impl" in c)
    lines += ["", "servers: " + "; ".join(impls)]
    lines += [
        "",
        "events/s: deliveries from the first publish to the last arrival; lost: both phases; "
        "srv/cli CPU: share of one core while messages flowed; p50/p99: publish->receive "
        f"at {config['rate']:g} msg/s; fan-out: median time for one message to reach every "
        "subscriber at that rate; x raw: against raw-asyncio (a write per event), "
        "x raw+co: against raw-asyncio-coalesced, x handler: the Tornado handler (SSE or WS).",
    ]
    if results.get("hold"):
        lines += ["", "hold test:"]
        rows = [("contender", "subscribers", "held", "errors", "connect s", "RSS MB", "KB/conn")]
        for h in results["hold"]:
            rows.append(
                (
                    h["name"],
                    str(h["subscribers"]),
                    str(h.get("open_after_hold", "-")),
                    str(h["errors"]),
                    f"{h['connect']['seconds']:.1f}" if "connect" in h else "-",
                    str(h.get("rss_mb", "-")),
                    f"{h['idle_bytes_per_connection'] / 1024:.1f}"
                    if "idle_bytes_per_connection" in h
                    else "-",
                )
            )
        lines += _table(rows)
        for h in results["hold"]:
            if "error" in h:
                lines.append(f"  {h['name']}: {h['error']}")
    if results.get("targets"):
        lines += ["", "targets:"]
        for t in results["targets"]:
            verdict = {True: "MET   ", False: "MISSED", None: "?     "}[t["met"]]
            lines.append(f"  {verdict} {t['target']}: {t['measured']}")
    for c in results["contenders"]:
        if "profile" in c:
            lines += ["", profile_text(c["name"], c["profile"])]
    lines += ["", f"run took {results.get('seconds', 0):.0f} s"]
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(widths[j + 2]) for j, cell in enumerate(row[2:])]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


# -- profiles ---------------------------------------------------------------------------


#: The repository's folder: a frame of its files is shown from there.
_REPOSITORY = f"{Path(__file__).resolve().parent.parent}/"
#: Folders whose frames keep their whole path: tornadose's (``adapters/`` and
#: ``schemas/`` in a checkout), whose modules live in layer folders, and this harness.
_OURS = {"tornadose", "adapters", "schemas", "benchmarks"}


def _short(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> ``name (folder/file.py)``; the frames of
    tornadose and of the harness keep their path (``tornadose/delivery/streams.py``)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", _REPOSITORY):
        if marker in path:
            path = path.split(marker, 1)[1]
    parts = path.split("/")
    if parts[0] in _OURS:
        return f"{name} ({path})"
    return f"{name} ({'/'.join(parts[-2:])})"


#: Where a function's code lives, by path fragment, for the per-package breakdown.
#: The adapters are ``adapters/`` in a checkout (editable install) and
#: ``tornadose/adapters/`` once installed: both come before the rest of tornadose.
PACKAGES = (
    ("tornadose/adapters/", "tornadose adapters"),
    ("adapters/", "tornadose adapters"),
    ("schemas/", "tornadose core"),
    ("tornadose/", "tornadose core"),
    ("tornado/", "tornado"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "h11"),
    ("httptools/", "httptools"),
    ("asyncio/", "asyncio"),
    ("benchmarks/", "benchmark harness"),
)


def _package(frame: str) -> str:
    for fragment, package in PACKAGES:
        if fragment in frame:
            return package
    return "other"


def profile_summary(path: Path, top: int = 8) -> dict[str, Any]:
    """The hottest functions of a py-spy raw profile (collapsed stacks).

    * ``self``: time in the function itself (what it calls in C, such as a
      socket's ``send()``, included), the hottest ``top``;
    * ``packages``: self time summed by package (tornadose, the framework, asyncio);
    * ``total``: time in tornadose's own functions, callees included.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            if _package(frame).startswith("tornadose"):
                total[frame] += count

    def share(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[f, round(100 * c / max(1, samples), 1)] for f, c in counter.most_common(n)]

    return {
        "samples": samples,
        "self": share(own, top),
        "packages": share(packages, len(PACKAGES) + 1),
        "total": share(total, top),
        "file": str(path),
    }


def profile_text(name: str, profile: dict[str, Any]) -> str:
    lines = [f"profile of {name} at full speed ({profile['samples']} samples, py-spy):"]
    lines.append(
        "  self time by package: " + ", ".join(f"{p} {v}%" for p, v in profile["packages"])
    )
    lines.append("  hottest functions, self time (C calls they make included):")
    lines += [f"    {pct:5.1f}%  {fn}" for fn, pct in profile["self"]]
    lines.append("  tornadose functions, total time (callees included):")
    lines += [f"    {pct:5.1f}%  {fn}" for fn, pct in profile["total"]]
    return "\n".join(lines)


# -- the plot ---------------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> Path:
    """Draw delivered events/s, latency, server efficiency and idle memory per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [c for c in results["contenders"] if "full" in c and "rate" in c]
    names = [c["name"] for c in done]
    colors = [
        "tab:blue" if c["tornadose"] else "dimgray" if c["name"] in RAW else "tab:orange"
        for c in done
    ]
    config = results["config"]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    y = range(len(done))

    def bars(ax: Any, values: list[float], title: str, fmt: str, log: bool = False) -> None:
        if log:  # rates span three orders of magnitude
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: _k(v).replace(".0k", "k"))
            )
        ax.barh(list(y), values, color=colors)
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.text(v, i, " " + fmt.format(v), va="center", fontsize=8)
        ax.margins(x=0.18)

    rates = [c["full"]["events_per_s"] for c in done]
    bars(axes[0][0], rates, "delivered events/s at full speed (log scale)", "{:,.0f}", log=True)
    byname = _by_name(results)
    for raw_name, label in zip(RAW, ("0.7x raw", "0.7x raw+co"), strict=True):
        raw_rate = _rate(byname.get(raw_name))
        if raw_rate:
            axes[0][0].axvline(0.7 * raw_rate, color="tab:red", linestyle="--", linewidth=1)
            axes[0][0].text(0.7 * raw_rate, len(done) - 0.4, label, color="tab:red", fontsize=8)
    efficiency = [c["full"]["events_per_server_cpu_s"] or 0 for c in done]
    bars(axes[0][1], efficiency, "events per server CPU-second (log scale)", "{:,.0f}", log=True)

    ax = axes[1][0]
    p50 = [c["rate"]["latency_ms"]["p50"] or 0 for c in done]
    p99 = [c["rate"]["latency_ms"]["p99"] or 0 for c in done]
    ax.barh([i + 0.2 for i in y], p99, height=0.4, color=colors, alpha=0.55, label="p99")
    ax.barh([i - 0.2 for i in y], p50, height=0.4, color=colors, label="p50")
    for i, (a, b) in enumerate(zip(p50, p99, strict=True)):
        ax.text(b, i + 0.2, f" p99 {b:.1f}", va="center", fontsize=8)
        ax.text(a, i - 0.2, f" p50 {a:.1f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.margins(x=0.25)
    ax.set_title(f"publish->receive latency, ms, at {config['rate']:g} msg/s (lower is better)")

    memory = [c["idle_bytes_per_connection"] / 1024 for c in done]
    bars(axes[1][1], memory, "idle server memory per connection, KB (lower is better)", "{:.1f}")

    env = results["environment"]
    fig.suptitle(
        f"tornadose fan-out: {config['subscribers']} subscribers, {config['size']}-byte messages"
        f" - blue: tornadose, gray: raw asyncio, orange: other baselines\n"
        f"{env['cpu']}, {env['cores']} cores"
        + (", " + _pinning(env) if env["pinned"] else "")
        + f", Python {env['python']}",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
