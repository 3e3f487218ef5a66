"""The text ``bench_runtime.py`` prints: plain tables, the README's table of modes, and the
goals read off a run's rows."""

from __future__ import annotations


def table(rows: list[dict], cols: list[str], title: str) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    lines = [f"\n## {title}", " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def markdown_modes(results: dict) -> str:
    """The README's table of modes from a run's JSON (``end_to_end`` rows)."""
    lines = ["| mode (`evopose-infer` flags) | model file | flip | detect every | dev_val AP, "
             "detector boxes | fps | x reference | ms/frame: decode / detect / crops / pose / "
             "decode+NMS / track+smooth | peak RSS MiB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in results.get("end_to_end", []):
        if "fps" not in r:
            continue
        ms = " / ".join(f"{r[k]:.1f}" if k in r else "-" for k in (
            "decode_ms", "detect_ms", "preprocess_ms", "pose_ms", "postprocess_ms"))
        ms += f" / {r['track_ms'] + r.get('smooth_ms', 0.0):.1f}" if "track_ms" in r else " / -"
        name = f"**{r['mode']}** (`{r['cli'].replace('evopose-infer VIDEO', '').strip() or 'no flags'}`)" \
            if "mode" in r else r["pipeline"]
        ap = f"{r['AP_detector_boxes']:.3f}" if "AP_detector_boxes" in r else "-"
        lines.append(f"| {name} | {r.get('file', r.get('model', ''))} | "
                     f"{'on' if r.get('flip') else 'off'} | {r.get('detect_every', 1)} | {ap} | "
                     f"{r['fps']:.1f} | {r.get('fps_vs_reference', 1.0):.2f} | {ms} | "
                     f"{r.get('peak_rss_mib', 0.0):.0f} |")
    return "\n".join(lines)


def issue13_goals(results: dict) -> dict:
    """The issue-13 targets read off this run's rows (None where a section was skipped)."""
    rows = {r.get("mode") or r.get("pipeline"): r for r in results.get("end_to_end", [])}
    ref = rows.get("SSD + MoveNet Thunder (reference)")
    out: dict = {}
    if "default" in rows and ref:
        d = rows["default"]
        out["default_fps_vs_reference"] = d["fps"] / ref["fps"]
        out["default_ap_detector_boxes"] = d.get("AP_detector_boxes")
        out["default_ok"] = out["default_fps_vs_reference"] >= 1.0
    if "fast" in rows:
        f = rows["fast"]
        out.update(fast_fps=f["fps"], fast_ap_detector_boxes=f.get("AP_detector_boxes"),
                   fast_ok=f["fps"] >= 40.0)
    mem = results.get("cli_memory")
    if mem and ref:
        files_mib = sum(results.get("cli_model_files", {}).values()) / 2**20
        peak = max(m["peak_rss_mib"] for m in mem)
        out.update(cli_peak_rss_mib=peak, reference_peak_rss_mib=ref["peak_rss_mib"],
                   model_files_mib=files_mib,
                   memory_limit_mib=ref["peak_rss_mib"] + files_mib,
                   memory_ok=peak <= ref["peak_rss_mib"] + files_mib,
                   cli_peak_growth_mib=mem[-1]["peak_rss_mib"] - mem[0]["peak_rss_mib"])
    return out
