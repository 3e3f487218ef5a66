"""Search report: a table of the best genotypes and two plots (matplotlib, Agg backend).

``write_report(search_dir, out_dir)`` writes ``report.md`` (table), ``report.json`` (every
child), ``fitness_by_generation.png`` and ``params_vs_loss.png`` (with the Pareto front of
children no other child beats in both parameters and loss).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
from evopose_sdk.training.search.runner import DONE, Search

log = logging.getLogger(__name__)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (x, y), both minimised; sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], float("inf")
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def table(children: Sequence[dict], top: int = 10) -> str:
    """Markdown table of the ``top`` children of lowest fitness."""
    rows = sorted((c for c in children if c["status"] == DONE),
                  key=lambda c: (c["fitness"], c["id"]))[:top]
    lines = ["| rank | child | gen | parent | mutation | genotype | params | MMACs | val loss "
             "| fitness |", "|---:|---|---:|---|---|---|---:|---:|---:|---:|"]
    for r, c in enumerate(rows, 1):
        m = c.get("mutation")
        mut = f"b{m['block']} {m['gene']} {m['from']}->{m['to']}" if m else "ancestor"
        lines.append(f"| {r} | {c['id']} | {c['generation']} | {c['parent'] or '-'} | {mut} | "
                     f"`{c['genotype_str']}` | {c['params']:,} | {c['macs'] / 1e6:.1f} | "
                     f"{c['val_loss']:.6f} | {c['fitness']:.6f} |")
    return "\n".join(lines)


def _save_png(fig, path: Path) -> None:
    import io  # noqa: PLC0415

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def write_report(search_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 top: int = 10) -> dict[str, Path]:
    """Write the report of the search in ``search_dir`` to ``out_dir`` (default: itself).

    Returns:
        ``{"markdown", "json", "fitness_plot", "pareto_plot"}`` -> written paths.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    search = Search.open(search_dir)
    out = Path(out_dir) if out_dir else search.dir.root
    out.mkdir(parents=True, exist_ok=True)
    children = search.children()
    done = [c for c in children if c["status"] == DONE]
    if not done:
        raise ValueError(f"the search in {search.dir.root} has no finished child yet")
    cfg = search.config
    paths = {"markdown": out / "report.md", "json": out / "report.json",
             "fitness_plot": out / "fitness_by_generation.png",
             "pareto_plot": out / "params_vs_loss.png"}

    # fitness by generation
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    gens = sorted({c["generation"] for c in done})
    ax.scatter([c["generation"] for c in done], [c["fitness"] for c in done], s=18,
               alpha=0.6, label="child")
    best = [min(c["fitness"] for c in done if c["generation"] == g) for g in gens]
    ax.plot(gens, best, "r-o", ms=4, label="best of generation")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"fitness = loss x (params/{cfg.target_params:.0e})^{cfg.fitness_exponent}")
    ax.set_xticks(gens)
    ax.set_title("fitness by generation (lower is better)")
    ax.legend()
    _save_png(fig, paths["fitness_plot"])
    plt.close(fig)

    # params vs loss with the Pareto front
    pts = [(c["params"] / 1e6, c["val_loss"]) for c in done]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[c["generation"] for c in done],
                    cmap="viridis", s=22)
    fig.colorbar(sc, ax=ax, label="generation", ticks=sorted({c["generation"] for c in done}))
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "r-", lw=1.2,
            label="Pareto front")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("validation loss (heatmap MSE)")
    ax.set_title("parameters vs validation loss")
    ax.legend()
    _save_png(fig, paths["pareto_plot"])
    plt.close(fig)

    best_c = min(done, key=lambda c: (c["fitness"], c["id"]))
    n_gen = len(search.state["generations"])
    md = [f"# Search report: {search.dir.root.name}", "",
          f"{len(done)} children trained ({len(children) - len(done)} pending) over {n_gen} "
          f"generations (status: {search.state.get('status')}); mu={cfg.parents}, "
          f"lambda={cfg.children}, {cfg.selection} selection, input {cfg.input_hw[0]}x"
          f"{cfg.input_hw[1]}, ancestor {cfg.ancestor_epochs} epochs, children "
          f"{cfg.child_epochs} epochs.", "",
          f"Best: `{best_c['genotype_str']}` ({best_c['id']}), {best_c['params']:,} params, "
          f"val loss {best_c['val_loss']:.6f}, fitness {best_c['fitness']:.6f}.", "",
          f"## Top {min(top, len(done))} by fitness", "", table(done, top), "",
          "## Plots", "", "![fitness by generation](fitness_by_generation.png)", "",
          "![params vs loss](params_vs_loss.png)", "",
          "Pareto front (params, loss): " + ", ".join(
              f"{done[i]['id']} ({done[i]['params']:,}, {done[i]['val_loss']:.6f})"
              for i in front), ""]
    atomic_write_text(paths["markdown"], "\n".join(md))
    keys = ("id", "generation", "parent", "mutation", "genotype_str", "params", "macs",
            "val_loss", "fitness", "train_seconds", "steps", "transfer")
    atomic_write_text(paths["json"], json.dumps(
        {"config": cfg.to_dict(), "best": best_c["id"],
         "pareto_front": [done[i]["id"] for i in front],
         "generations": [{"index": g["index"], "children": g["children"],
                          "selected": g["selected"]} for g in search.state["generations"]],
         "children": [{k: c.get(k) for k in keys} for c in done]}, indent=2) + "\n")
    log.info("report written to %s", out)
    return paths
