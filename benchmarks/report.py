"""Turning a run's numbers into tables, the verdict on each target, and the plot.

Every ratio compares like with like (see ``benchmarks/README.md``):

* a **per-event** row (one publish per loop turn) against the per-event run of the
  raw server that writes each event (``raw-asyncio``; ``raw-asyncio-ws`` for
  WebSocket) and against the per-event run of the same framework's hand-written
  handler (:data:`HANDLERS`);
* a **batch** row (k publishes per loop turn) against the batch run of the raw
  server that joins a loop turn's events into one write per connection
  (``raw-asyncio-coalesced``; ``raw-asyncio-ws-coalesced``) and against the batch run
  of the same handler;
* latency at the fixed rate (one publish per loop turn, far apart: nothing
  coalesces) against the raw server that writes each event; idle memory against the
  framework's hand-written handler.

Everything here is pure formatting, except :func:`plot`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

#: The raw baseline of each (transport, regime): the speed limit of like servers.
RAW = {
    ("sse", "per-event"): "raw-asyncio",
    ("sse", "batch"): "raw-asyncio-coalesced",
    ("ws", "per-event"): "raw-asyncio-ws",
    ("ws", "batch"): "raw-asyncio-ws-coalesced",
}
#: The raw baseline of the fixed-rate latency, per transport (a write per event).
RAW_LATENCY = {"sse": "raw-asyncio", "ws": "raw-asyncio-ws"}
#: The hand-written handler of each (transport, framework): the "plain handler".
HANDLERS = {
    ("sse", "tornado"): "tornado-handler",
    ("sse", "uvicorn"): "starlette-handler",
    ("ws", "tornado"): "tornado-handler-ws",
    ("ws", "uvicorn"): "starlette-handler-ws",
}
#: Every raw baseline (gray in the plot).
RAW_NAMES = frozenset(RAW.values())


# -- helpers ------------------------------------------------------------------------


def _by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in results["contenders"]}


def _phase(c: dict[str, Any] | None, regime: str) -> dict[str, Any] | None:
    if c is None:
        return None
    phase: dict[str, Any] | None = c.get("throughput", {}).get(regime)
    return phase


def _rate(c: dict[str, Any] | None, regime: str) -> float | None:
    phase = _phase(c, regime)
    return phase["events_per_s"] if phase else None


def _p99(c: dict[str, Any] | None) -> float | None:
    return c["rate"]["latency_ms"]["p99"] if c and "rate" in c else None


def _idle(c: dict[str, Any] | None) -> int | None:
    return c.get("idle_bytes_per_connection") if c else None


def _k(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _x(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _kb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f}"


def _pinning(env: dict[str, Any]) -> str:
    if not env["pinned"]:
        return ""
    return f"server on core {env.get('server_cpu', 0)}, client on core {env.get('client_cpu', 1)}"


def _labels(results: dict[str, Any]) -> dict[str, str]:
    config = results["config"]
    labels: dict[str, str] = config.get("regime_labels") or {}
    return labels or {r: r for r in config.get("regimes", ())}


def _why_missing(c: dict[str, Any], phase: str) -> str:
    """Why contender ``c`` has no result for ``phase`` (a regime or "rate")."""
    if "skipped" in c:
        return f"skipped: {c['skipped']}"
    reason: str | None = c.get("skipped_phases", {}).get(phase)
    if reason:
        return f"skipped: {reason}"
    if "error" in c:
        return f"FAILED: {c['error']}"
    return "not measured"


def one_line(c: dict[str, Any]) -> str:
    """A contender's headline, printed as the run goes."""
    if "skipped" in c:
        return f"skipped ({c['skipped']})"
    parts = [c.get("impl", "")]
    if "idle_bytes_per_connection" in c:
        parts.append(f"idle {_kb(c['idle_bytes_per_connection'])} KB/conn")
    for regime, f in c.get("throughput", {}).items():
        parts.append(
            f"{f.get('regime', regime)}: {_k(f['events_per_s'])} ev/s, lost {f['lost']}, "
            f"server CPU {_pct(f['server_cpu_percent'])}, client CPU {_pct(f['cpu_percent'])}"
        )
    if "rate" in c:
        lat = c["rate"]["latency_ms"]
        parts.append(f"p50 {_ms(lat['p50'])} ms, p99 {_ms(lat['p99'])} ms")
    parts += [f"{phase} skipped" for phase in c.get("skipped_phases", {})]
    parts.append(f"{c.get('seconds', 0):.0f} s")
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
        f"({_kb(h['idle_bytes_per_connection'])} KB/conn), "
        f"delivered {h['delivery']['delivered']}/{h['delivery']['expected']}"
    )


# -- rows: every number with its regime and its baselines ------------------------------


def throughput_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per contender and full-speed regime, with its like-for-like ratios.

    ``x_raw`` is against :data:`RAW` of the row's transport and regime, ``x_handler``
    against :data:`HANDLERS` of its transport and framework in the same regime; both
    name their baseline (``raw``, ``handler``). A phase that did not run is a row with
    ``missing`` saying why.
    """
    byname = _by_name(results)
    labels = _labels(results)
    rows: list[dict[str, Any]] = []
    for regime, label in labels.items():
        for c in results["contenders"]:
            transport = c["transport"]
            raw = RAW[transport, regime]
            handler = HANDLERS.get((transport, c["stack"]))
            row: dict[str, Any] = {
                "name": c["name"],
                "regime": label,
                "regime_key": regime,
                "transport": transport,
                "backend": c.get("backend", "memory"),
                "stack": c["stack"],
                "raw": raw,
                "handler": handler,
            }
            phase = _phase(c, regime)
            if phase is None:
                row["missing"] = _why_missing(c, regime)
                rows.append(row)
                continue
            rate = phase["events_per_s"]
            row |= {
                "events_per_s": rate,
                "x_raw": _x(rate, _rate(byname.get(raw), regime)),
                "x_handler": _x(rate, _rate(byname.get(handler), regime)) if handler else None,
                "lost": phase["lost"],
                "paced": phase.get("paced"),
                "server_cpu_percent": phase["server_cpu_percent"],
                "client_cpu_percent": phase["cpu_percent"],
                "events_per_server_cpu_s": phase["events_per_server_cpu_s"],
            }
            rows.append(row)
    return rows


def latency_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per contender: fixed-rate latency against the raw server that writes
    each event (:data:`RAW_LATENCY`), and idle memory against the framework's
    handler (:data:`HANDLERS`)."""
    byname = _by_name(results)
    rate = results["config"]["rate"]
    rows: list[dict[str, Any]] = []
    for c in results["contenders"]:
        transport = c["transport"]
        raw = RAW_LATENCY[transport]
        handler = HANDLERS.get((transport, c["stack"]))
        row: dict[str, Any] = {
            "name": c["name"],
            "regime": f"per-event, {rate:g} msg/s",
            "transport": transport,
            "backend": c.get("backend", "memory"),
            "stack": c["stack"],
            "raw": raw,
            "handler": handler,
            "idle_bytes_per_connection": _idle(c),
            "idle_x_handler": _x(_idle(c), _idle(byname.get(handler))) if handler else None,
        }
        if "rate" not in c:
            row["missing"] = _why_missing(c, "rate")
            rows.append(row)
            continue
        latency = c["rate"]["latency_ms"]
        row |= {
            "p50_ms": latency["p50"],
            "p99_ms": latency["p99"],
            "p99_x_raw": _x(latency["p99"], _p99(byname.get(raw))),
            "fanout_ms": c["rate"].get("fanout_ms", {}).get("p50"),
            "lost": c["rate"]["lost"],
        }
        rows.append(row)
    return rows


# -- targets ------------------------------------------------------------------------

#: Each SSE contender of the targets and its framework's plain handler.
_SSE_TARGETS = (
    ("tornadose-tornado", "tornado-handler"),
    ("tornadose-uvicorn", "starlette-handler"),
)
#: Each WebSocket contender, its framework's plain handler and the factor to reach.
_WS_TARGETS = (
    ("tornadose-tornado-ws", "tornado-handler-ws", 3.0),
    ("tornadose-uvicorn-ws", "starlette-handler-ws", 2.0),
)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 14: what was measured against what, met or not, and for a
    miss how far it is. A target whose contender or baseline did not run is listed as
    not judged (``met`` is ``None``); so is a figure printed for information only."""
    byname = _by_name(results)
    labels = _labels(results)
    out: list[dict[str, Any]] = []

    def at_least(
        name: str, what: str, baseline: str, regime: str, factor: float, info: bool = False
    ) -> None:
        label = labels.get(regime, regime)
        target = f"{name} [{label}]: {what} >= {factor:g}x {baseline} [{label}]"
        if info:
            target = f"{name} [{label}]: {what} against {baseline} [{label}], for information"
        if regime not in labels:
            out.append({"target": target, "measured": f"{label} not run", "met": None})
            return
        mine, theirs = _rate(byname.get(name), regime), _rate(byname.get(baseline), regime)
        if not mine or not theirs:
            absent = ", ".join(n for n, r in ((name, mine), (baseline, theirs)) if not r)
            out.append({"target": target, "measured": f"not measured: {absent}", "met": None})
            return
        ratio = mine / theirs
        measured = f"{_k(mine)} vs {_k(theirs)} = {ratio:.2f}x"
        lost = (_phase(byname.get(name), regime) or {}).get("lost", 0)
        met = ratio >= factor and not lost
        if lost:  # fast but not every message arrived: not a speed to judge
            measured += f", but {lost} messages lost"
        entry: dict[str, Any] = {"target": target, "measured": measured, "met": met}
        entry |= {"ratio": round(ratio, 3), "goal": factor, "regime": label}
        if info:
            entry["met"] = None
            entry["info"] = True
        elif not met and not lost:
            entry["distance"] = (
                f"{ratio / factor:.0%} of the target: needs {factor / ratio:.2f}x its events/s"
            )
        out.append(entry)

    for name, handler in _SSE_TARGETS:
        at_least(name, "SSE events/s", "raw-asyncio", "per-event", 0.7)
        at_least(name, "SSE events/s", handler, "per-event", 3.0)
    for name, handler, factor in _WS_TARGETS:
        at_least(name, "WS events/s", handler, "per-event", factor)
    at_least("tornadose-uvicorn-ws", "WS events/s", "tornado-handler-ws", "per-event", 2.0, True)
    for name, _ in _SSE_TARGETS:
        at_least(name, "SSE events/s", "raw-asyncio-coalesced", "batch", 0.5)

    rate = results["config"]["rate"]
    raw_p99 = _p99(byname.get("raw-asyncio"))
    for name, _ in _SSE_TARGETS:
        target = f"{name}: p99 latency at {rate:g} msg/s <= 1.5x raw-asyncio's"
        p99 = _p99(byname.get(name))
        if not p99 or not raw_p99:
            absent = ", ".join(n for n, v in ((name, p99), ("raw-asyncio", raw_p99)) if not v)
            out.append({"target": target, "measured": f"not measured: {absent}", "met": None})
            continue
        ratio = p99 / raw_p99
        entry = {
            "target": target,
            "measured": f"{_ms(p99)} ms vs {_ms(raw_p99)} ms = {ratio:.2f}x",
            "met": ratio <= 1.5,
            "ratio": round(ratio, 3),
            "goal": 1.5,
        }
        if ratio > 1.5:
            entry["distance"] = (
                f"{ratio / 1.5 - 1:.0%} over: p99 must fall to {1.5 * raw_p99:.1f} ms"
            )
        out.append(entry)

    for name, handler in _SSE_TARGETS:
        target = f"{name}: idle memory per SSE connection <= {handler}'s"
        mine, theirs = _idle(byname.get(name)), _idle(byname.get(handler))
        if mine is None or theirs is None:
            absent = ", ".join(n for n, v in ((name, mine), (handler, theirs)) if v is None)
            out.append({"target": target, "measured": f"not measured: {absent}", "met": None})
            continue
        entry = {
            "target": target,
            "measured": f"{_kb(mine)} KB vs {_kb(theirs)} KB",
            "met": mine <= theirs,
        }
        if mine > theirs:
            entry["distance"] = f"{_kb(mine - theirs)} KB per connection over"
        out.append(entry)

    for hold in results.get("hold", []):
        entry = {
            "target": f"{hold['name']}: {hold['subscribers']} subscribers held without errors",
            "measured": f"{hold.get('open_after_hold', 0)} held, {hold['errors']} errors",
            "met": hold["errors"] == 0 and "error" not in hold,
        }
        if not entry["met"]:
            entry["distance"] = hold.get("error", f"{hold['errors']} errors")
        out.append(entry)
    return out


def verdict(t: dict[str, Any]) -> str:
    """``MET``, ``MISSED``, ``INFO`` (a figure shown beside the targets) or ``NOT
    JUDGED`` (a contender or baseline did not run)."""
    if t["met"] is None:
        return "INFO" if t.get("info") else "NOT JUDGED"
    return "MET" if t["met"] else "MISSED"


# -- the tables -------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    """The whole report as text: config, a throughput table per regime, latency and
    memory, hold test, targets, profiles."""
    config, env = results["config"], results["environment"]
    labels = _labels(results)
    lines = [
        f"{config['subscribers']} subscribers, {config['messages']} messages x "
        f"{config['size']} B at full speed per regime ({', '.join(labels.values())}; "
        f"the publisher waits while more than {config.get('backlog', '?')} messages per "
        f"subscriber wait in the server), {config['rate']:g} msg/s for "
        f"{config['duration']:g} s; {env['cpu']}, {env['cores']} cores, "
        + (_pinning(env) or "unpinned")
        + f"; Python {env['python']}, commit {env['commit']}"
        + f"; other load before the run: {env.get('busy_cores_before')} cores",
    ]
    rows = throughput_rows(results)
    for regime, label in labels.items():
        raws = f"{RAW['sse', regime]} (SSE) / {RAW['ws', regime]} (WS)"
        lines += [
            "",
            f"full speed, {label}: "
            + (
                "one publish per event-loop turn"
                if regime == "per-event"
                else f"{config['burst']} publishes per event-loop turn"
            )
            + f"; x raw: against {raws}, x handler: against the same framework's "
            f"hand-written handler, both {label}",
        ]
        header = (
            "contender",
            "regime",
            "transport",
            "backend",
            "stack",
            "events/s",
            f"x raw ({label})",
            f"x handler ({label})",
            "handler",
            "lost",
            "srv CPU",
            "cli CPU",
            "ev/srv-CPU-s",
        )
        table: list[tuple[str, ...]] = [header]
        notes: list[str] = []
        for r in rows:
            if r["regime_key"] != regime:
                continue
            head = (r["name"], r["regime"], r["transport"].upper(), r["backend"], r["stack"])
            if "missing" in r:
                table.append((*head, *["-"] * (len(header) - 5)))
                notes.append(f"  {r['name']} [{label}]: {r['missing']}")
                continue
            table.append(
                (
                    *head,
                    _k(r["events_per_s"]),
                    _ratio(r["x_raw"]),
                    _ratio(r["x_handler"]),
                    r["handler"] or "-",
                    str(r["lost"]),
                    _pct(r["server_cpu_percent"]),
                    _pct(r["client_cpu_percent"]),
                    _k(r["events_per_server_cpu_s"]),
                )
            )
        lines += _table(table, left=5) + notes
    lines += [
        "",
        f"latency at {config['rate']:g} msg/s (per-event: one publish per loop turn, "
        "nothing coalesces) and idle memory; p99 x raw: against raw-asyncio (SSE) / "
        "raw-asyncio-ws (WS); idle x handler: against the same framework's handler",
    ]
    latency_header = (
        "contender",
        "regime",
        "transport",
        "backend",
        "stack",
        "p50 ms",
        "p99 ms",
        "p99 x raw",
        "fan-out ms",
        "lost",
        "idle KB/conn",
        "idle x handler",
    )
    table = [latency_header]
    notes = []
    for r in latency_rows(results):
        head = (r["name"], r["regime"], r["transport"].upper(), r["backend"], r["stack"])
        idle = (_kb(r["idle_bytes_per_connection"]), _ratio(r["idle_x_handler"]))
        if "missing" in r:
            table.append((*head, "-", "-", "-", "-", "-", *idle))
            notes.append(f"  {r['name']} [{r['regime']}]: {r['missing']}")
            continue
        table.append(
            (
                *head,
                _ms(r["p50_ms"]),
                _ms(r["p99_ms"]),
                _ratio(r["p99_x_raw"]),
                _ms(r["fanout_ms"]),
                str(r["lost"]),
                *idle,
            )
        )
    lines += _table(table, left=5) + notes
    impls = Counter(f"{c['name']}: {c['impl']}" for c in results["contenders"] if "impl" in c)
    lines += ["", "servers: " + "; ".join(impls)]
    lines += [
        "",
        "events/s: deliveries from the first publish to the last arrival; lost: messages "
        "a subscriber did not get; srv/cli CPU: share of one core while messages flowed "
        "(a client near 100% means the row is the client's limit); p50/p99: "
        "publish->receive; fan-out: median time for one message to reach every subscriber.",
    ]
    if results.get("hold"):
        lines += ["", "hold test:"]
        table = [("contender", "subscribers", "held", "errors", "connect s", "RSS MB", "KB/conn")]
        for h in results["hold"]:
            table.append(
                (
                    h["name"],
                    str(h["subscribers"]),
                    str(h.get("open_after_hold", "-")),
                    str(h["errors"]),
                    f"{h['connect']['seconds']:.1f}" if "connect" in h else "-",
                    str(h.get("rss_mb", "-")),
                    _kb(h.get("idle_bytes_per_connection")),
                )
            )
        lines += _table(table, left=1)
        for h in results["hold"]:
            if "error" in h:
                lines.append(f"  {h['name']}: {h['error']}")
    if results.get("targets"):
        lines += ["", "targets (issue 14):"]
        for t in results["targets"]:
            text = f"  {verdict(t):10} {t['target']}: {t['measured']}"
            if "distance" in t:
                text += f" ({t['distance']})"
            lines.append(text)
    for c in results["contenders"]:
        for regime, profile in c.get("profile", {}).items():
            lines += ["", profile_text(f"{c['name']} [{labels.get(regime, regime)}]", profile)]
    lines += ["", f"run took {results.get('seconds', 0):.0f} s"]
    return "\n".join(lines)


def text_chart(results: dict[str, Any], width: int = 40) -> str:
    """Full-speed events/s of every SSE and WebSocket row as text bars, one block per
    regime, on one linear scale (the plot for places that show only text: the
    README, a terminal). ``#`` bars are tornadose, ``=`` bars the baselines."""
    rows = [r for r in throughput_rows(results) if "events_per_s" in r]
    if not rows:
        return ""
    top = max(r["events_per_s"] for r in rows)
    tornadose = {c["name"] for c in results["contenders"] if c.get("tornadose")}
    name_width = max(len(r["name"]) for r in rows)
    lines = [f"events/s at full speed (one scale: the longest bar is {_k(top)})"]
    for label in _labels(results).values():
        lines += ["", f"{label}:"]
        for r in (r for r in rows if r["regime"] == label):
            mark = "#" if r["name"] in tornadose else "="
            bar = mark * max(1, round(width * r["events_per_s"] / top))
            lines.append(f"  {r['name']:{name_width}}  {bar} {_k(r['events_per_s'])}")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Aligned columns: the first ``left`` to the left, the others to the right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, row in enumerate(rows):
        cells = [cell.ljust(widths[j]) for j, cell in enumerate(row[:left])]
        cells += [cell.rjust(widths[j + left]) for j, cell in enumerate(row[left:])]
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
    """Draw, per contender, delivered events/s and events per server CPU-second in
    both regimes (a bar each), latency at the fixed rate, and idle memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    labels = _labels(results)
    done = [c for c in results["contenders"] if c.get("throughput") or "rate" in c]
    names = [f"{c['name']} ({c['backend']})" if c["tornadose"] else c["name"] for c in done]
    colors = [
        "tab:blue" if c["tornadose"] else "dimgray" if c["name"] in RAW_NAMES else "tab:orange"
        for c in done
    ]
    config = results["config"]
    fig, axes = plt.subplots(2, 2, figsize=(15, 11))
    y = list(range(len(done)))
    #: Each regime's bar: offset in its row, look.
    looks = {"per-event": (-0.2, 1.0, ""), "batch": (0.2, 0.5, "//")}

    def log_axis(ax: Any) -> None:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: _k(v).replace(".0k", "k"))
        )

    def rows(ax: Any, title: str) -> None:
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.margins(x=0.2)

    def by_regime(ax: Any, key: str, title: str) -> None:
        log_axis(ax)
        for regime, label in labels.items():
            offset, alpha, hatch = looks[regime]
            values = [(_phase(c, regime) or {}).get(key) or 0 for c in done]
            ax.barh(
                [i + offset for i in y],
                values,
                height=0.4,
                color=colors,
                alpha=alpha,
                hatch=hatch,
                edgecolor="black" if hatch else None,
                linewidth=0,
                label=label,
            )
            for i, v in enumerate(values):
                if v:
                    ax.text(v, i + offset, f" {_k(v)} {label}", va="center", fontsize=7)
        rows(ax, title)
        ax.legend(loc="lower right", fontsize=7)

    byname = _by_name(results)
    by_regime(axes[0][0], "events_per_s", "delivered events/s at full speed, by regime (log)")
    drawn = (("per-event", "raw-asyncio", 0.7, "--"), ("batch", RAW["sse", "batch"], 0.5, ":"))
    for regime, raw, factor, style in drawn:
        raw_rate = _rate(byname.get(raw), regime)
        if regime in labels and raw_rate:
            axes[0][0].axvline(
                factor * raw_rate,
                color="tab:red",
                linestyle=style,
                linewidth=1,
                label=f"SSE target: {factor:g}x {raw} [{labels[regime]}]",
            )
    axes[0][0].legend(loc="lower right", fontsize=7)
    by_regime(
        axes[0][1], "events_per_server_cpu_s", "events per server CPU-second, by regime (log)"
    )

    ax = axes[1][0]
    p50 = [c["rate"]["latency_ms"]["p50"] or 0 if "rate" in c else 0 for c in done]
    p99 = [c["rate"]["latency_ms"]["p99"] or 0 if "rate" in c else 0 for c in done]
    ax.barh([i + 0.2 for i in y], p99, height=0.4, color=colors, alpha=0.55, label="p99")
    ax.barh([i - 0.2 for i in y], p50, height=0.4, color=colors, label="p50")
    for i, (a, b) in enumerate(zip(p50, p99, strict=True)):
        if b:
            ax.text(b, i + 0.2, f" p99 {b:.1f}", va="center", fontsize=7)
            ax.text(a, i - 0.2, f" p50 {a:.1f}", va="center", fontsize=7)
    rows(
        ax,
        f"publish->receive latency, ms, at {config['rate']:g} msg/s, per-event (lower is better)",
    )

    ax = axes[1][1]
    memory = [(c.get("idle_bytes_per_connection") or 0) / 1024 for c in done]
    ax.barh(y, memory, color=colors)
    for i, v in enumerate(memory):
        if v:
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=7)
    rows(ax, "idle server memory per connection, KB (lower is better)")

    env = results["environment"]
    fig.suptitle(
        f"tornadose fan-out: {config['subscribers']} subscribers, {config['size']}-byte messages;"
        f" regimes: {', '.join(labels.values())} (solid: per-event, hatched: batch)"
        " - blue: tornadose, gray: raw asyncio, orange: other baselines\n"
        f"{env['cpu']}, {env['cores']} cores"
        + (", " + _pinning(env) if env["pinned"] else "")
        + f", Python {env['python']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
