"""The report's plots (matplotlib), written next to docs/BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from bench.report.tables import (
    COLORS,
    RELAYS,
    SYSTEMS,
    _wrk_at,
)


def plots(res: dict, docs: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    conc = res["settings"]["concurrency"]
    made = []
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for name, label in SYSTEMS:
        rows = [_wrk_at(res, name, c) for c in conc]
        pts = [(c, r["rps"]) for c, r in zip(conc, rows, strict=False) if r]
        if pts:
            ax.plot(*zip(*pts, strict=False), marker="o", label=label, color=COLORS[name])
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="connections (wrk)",
        ylabel="requests/s (2xx)",
        title="Non-stream chat completions: requests/s",
    )
    ax.set_xticks(conc, [str(c) for c in conc])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    fig.savefig(docs / "bench-rps.png", dpi=110)
    plt.close(fig)
    made.append("bench-rps.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
        for name, label in RELAYS:
            pts = []
            for c in conc:
                row, base = _wrk_at(res, name, c), _wrk_at(res, "direct", c)
                if row and base:
                    # Log scale: an added latency at or below zero is drawn at 0.01 ms.
                    pts.append((c, max(row[key] - base[key], 0.01)))
            if pts:
                ax.plot(*zip(*pts, strict=False), marker="o", label=label, color=COLORS[name])
        ax.set(xscale="log", yscale="log", xlabel="connections (wrk)", title=f"added {title} latency over direct")
        ax.set_xticks(conc, [str(c) for c in conc])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms")
    axes[0].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(docs / "bench-latency.png", dpi=110)
    plt.close(fig)
    made.append("bench-latency.png")
    return made
