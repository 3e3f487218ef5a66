"""Neuroevolution search: mutation rules, weight-transfer rules, and tiny real searches
(run, kill + resume, Ray vs sequential, report, CLI) on real photos of ../shared/data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from _search_helpers import lineage, needs_data, tiny_config  # noqa: E402
from _training_helpers import require_data  # noqa: E402

from evopose_sdk.training import genotype as gt  # noqa: E402
from evopose_sdk.training.search import (  # noqa: E402
    MutationSpace,
    Search,
    SearchConfig,
    SearchConfigError,
    SearchInterrupted,
    SearchStateError,
    fitness,
    mutate,
    run_search,
)
from evopose_sdk.training.search.mutation import GENES  # noqa: E402
from evopose_sdk.training.search.report import pareto_front  # noqa: E402

B0 = gt.EFFICIENTNET_B0
# eager test searches (SearchConfig.eager) make TensorFlow warn about tf.data, unused here
pytestmark = pytest.mark.filterwarnings("ignore:Even though the:UserWarning")


# ----------------------------------------------------------------------------- mutation


def _diff(a, b) -> list[tuple[int, int]]:
    return [(i, j) for i in range(7) for j in range(4) if a[i][j] != b[i][j]]


def test_mutation_changes_exactly_one_gene_within_bounds():
    space = MutationSpace()
    rng = np.random.default_rng(0)
    parent = B0
    genes_seen = set()
    for _ in range(400):
        child, mut = mutate(parent, space, rng)
        d = _diff(parent, child)
        assert len(d) == 1, (parent, child)
        i, j = d[0]
        assert (mut["block"], mut["gene"], mut["to"]) == (i + 1, GENES[j], child[i][j])
        genes_seen.add(GENES[j])
        k, r, f, s = child[i]
        assert k in (3, 5) and 1 <= r <= 4 and 1 <= f <= B0[i][2]
        if GENES[j] == "repeats":
            assert abs(r - parent[i][1]) == 1
        if GENES[j] == "stride":
            assert i >= 4, "stride mutated outside the last three blocks"
        assert gt.backbone_stride(child) in (16, 32)
        assert space.is_valid(child)
        parent = child if rng.random() < 0.5 else B0  # random walk inside the space
    assert genes_seen == set(GENES)


def test_mutation_is_deterministic_and_never_repeats_a_seen_network():
    space = MutationSpace()
    a = [mutate(B0, space, np.random.default_rng([7, 1]))[0] for _ in range(3)]
    b = [mutate(B0, space, np.random.default_rng([7, 1]))[0] for _ in range(3)]
    assert a == b
    # exhaust every one-gene child of B0: each appears once, then a clear error
    seen = {space.signature(B0)}
    rng = np.random.default_rng(1)
    n = len({space.signature(gt.validate(c)) for c in
             [mutate(B0, space, np.random.default_rng(s))[0] for s in range(300)]})
    children = []
    for _ in range(n):
        child, _ = mutate(B0, space, rng, seen)
        assert space.signature(child) not in seen
        seen.add(space.signature(child))
        children.append(gt.encode(child))
    assert len(set(children)) == n
    with pytest.raises(RuntimeError, match="already trained"):
        mutate(B0, space, rng, seen)


def test_mutation_stride_space_and_scaled_twins():
    space = MutationSpace()
    # B0: backbone stride 32; block 5 (stride 1) -> 2 would give 64: not offered
    strides = {(i, v) for i, g, v in space.candidates(B0) if g == "stride"}
    assert strides == {(5, 1)}  # block 6: 2 -> 1 gives stride 16
    s16 = [list(b) for b in B0]
    s16[5][3] = 1
    assert {(i, v) for i, g, v in space.candidates(s16) if g == "stride"} == {(4, 2), (5, 2),
                                                                             (6, 2)}
    # at 128x96 the builder scales depth by 0.40: repeats 1 and 2 build the same network
    cfg = SearchConfig(input_hw=[128, 96], ancestor_filter_scale=0.25)
    small = cfg.mutation_space()
    twin = [list(b) for b in cfg.ancestor]
    twin[0][1] = 2
    assert small.signature(twin) == small.signature(cfg.ancestor)
    rng = np.random.default_rng(0)
    for _ in range(50):
        child, _ = mutate(cfg.ancestor, small, rng)
        assert small.signature(child) != small.signature(cfg.ancestor)
    # without compound scaling every genotype change is a different network
    flat = SearchConfig(input_hw=[128, 96], ancestor_filter_scale=0.25,
                        train_overrides=["model.compound_scaling=false"]).mutation_space()
    assert flat.signature(twin) != flat.signature(cfg.ancestor)


def test_fitness_and_pareto_front():
    assert fitness(0.002, 5_000_000) == pytest.approx(0.002)
    assert fitness(0.002, 10_000_000) == pytest.approx(0.002 * 2 ** 0.07)
    assert fitness(1.0, 2_500_000, exponent=0.07) < 1.0
    with pytest.raises(ValueError, match="params"):
        fitness(1.0, 0)
    pts = [(1.0, 5.0), (2.0, 3.0), (2.5, 4.0), (3.0, 1.0), (0.5, 9.0)]
    assert pareto_front(pts) == [4, 0, 1, 3]


@pytest.mark.parametrize("fields, match", [
    ({"childern": 4}, "did you mean 'children'"),
    ({"parents": 8, "children": 4}, "cannot exceed"),
    ({"selection": "best"}, "comma or plus"),
    ({"input_hw": [100, 96]}, "divisible"),
    ({"ancestor": "k3r1"}, "parse"),
    ({"mutation": {"kernel": [3]}}, "unknown mutation"),
    ({"train_overrides": ["model.bogus=1"]}, "unknown config key"),
])
def test_search_config_errors(fields, match):
    with pytest.raises(SearchConfigError, match=match):
        SearchConfig.from_any(fields)


def test_state_errors(tmp_path):
    with pytest.raises(SearchStateError, match="no search"):
        Search.open(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "search.json").write_text("{not json")
    with pytest.raises(SearchStateError, match="corrupt"):
        Search.open(tmp_path / "bad")
    Search.create(tmp_path / "s", tiny_config())
    with pytest.raises(FileExistsError, match="resume"):
        Search.create(tmp_path / "s", tiny_config())


# ----------------------------------------------------------------------------- transfer rules


def test_transfer_rules_on_concrete_arrays():
    from evopose_sdk.training import transfer as tr
    # full copy where shapes match
    a = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    out, st = tr.transfer_array(a, np.zeros_like(a))
    assert st == "full" and np.array_equal(out, a)
    # 3x3 -> 5x5: centre embed, zero ring on the copied channels, extra channels kept
    k3 = np.arange(1, 3 * 3 * 2 * 1 + 1, dtype=np.float32).reshape(3, 3, 2, 1)
    dst = np.full((5, 5, 3, 1), 7.0, np.float32)
    out, st = tr.transfer_kernel(k3, dst)
    assert st == "partial"
    assert np.array_equal(out[1:4, 1:4, :2], k3)
    ring = out[:, :, :2].copy()
    ring[1:4, 1:4] = 0
    assert not ring.any()
    assert np.all(out[:, :, 2:] == 7.0)
    # 5x5 -> 3x3: centre crop
    k5 = np.arange(5 * 5, dtype=np.float32).reshape(5, 5, 1, 1)
    out, _ = tr.transfer_kernel(k5, np.zeros((3, 3, 1, 1), np.float32))
    assert np.array_equal(out, k5[1:4, 1:4])
    # channel slices of a 1x1 conv (fewer in, more out)
    w = np.random.default_rng(0).normal(size=(1, 1, 6, 4)).astype(np.float32)
    dst = np.full((1, 1, 4, 6), -1.0, np.float32)
    out, _ = tr.transfer_kernel(w, dst)
    assert np.array_equal(out[:, :, :4, :4], w[:, :, :4, :4])
    assert np.all(out[:, :, :, 4:] == -1.0)
    # BN statistics / SE bias: truncated, or overlap copied and the rest kept
    v = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out, st = tr.transfer_vector(v, np.zeros(2, np.float32))
    assert st == "partial" and out.tolist() == [1.0, 2.0]
    out, _ = tr.transfer_vector(v[:2], np.ones(4, np.float32))
    assert out.tolist() == [1.0, 2.0, 1.0, 1.0]
    # a new repeat block copies the last block of its stage
    parent = ["block3a_dwconv", "block3b_dwconv", "block4a_dwconv"]
    assert tr.source_layer_name("block3c_dwconv", parent) == "block3b_dwconv"
    assert tr.source_layer_name("block3b_dwconv", parent) == "block3b_dwconv"
    assert tr.source_layer_name("block5a_dwconv", parent) is None


# ----------------------------------------------------------------------------- real searches


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    """One uninterrupted tiny search: generation 0 + 2 generations of 4 children, 2 parents."""
    require_data("coco128")
    root = tmp_path_factory.mktemp("search") / "full"
    return run_search(root, tiny_config(generations=2))


@needs_data
def test_tiny_search_runs_selects_and_reports(tiny_search, tmp_path):
    s = tiny_search
    gens = s.state["generations"]
    assert s.state["status"] == "finished" and len(gens) == 3
    assert [len(g["children"]) for g in gens] == [1, 4, 4]
    kids = s.children()
    assert all(c["status"] == "done" for c in kids)
    space = s.config.mutation_space()
    assert len({space.signature(c["genotype"]) for c in kids}) == len(kids)
    for c in kids:
        assert (s.dir.child_dir(c["id"]) / "model.keras").is_file()
        assert c["params"] > 0 and c["macs"] > 0 and np.isfinite(c["val_loss"])
        assert c["fitness"] == pytest.approx(fitness(c["val_loss"], c["params"]))
        assert c["steps"] == 2
        if c["generation"]:
            p = s.dir.read_child(c["parent"])
            assert len(_diff(p["genotype"], c["genotype"])) == 1
            assert c["transfer"] and "from model.keras" in c["transfer"]
    # (mu, lambda): parents of generation g+1 are the 2 fittest children of generation g
    for g in (1, 2):
        ranked = sorted(s.children(g), key=lambda c: (c["fitness"], c["id"]))
        assert gens[g]["selected"] == [c["id"] for c in ranked[:2]]
    assert {c["parent"] for c in s.children(2)} == set(gens[1]["selected"])
    # report: table + two PNG plots
    r = subprocess.run([sys.executable, "-m", "evopose_sdk.training.search.cli", "report",
                        str(s.dir.root), "--out", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    best = s.best(1)[0]
    assert best["genotype_str"] in r.stdout and "| rank |" in r.stdout
    for name in ("fitness_by_generation.png", "params_vs_loss.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["best"] == best["id"] and len(rep["children"]) == 9


@needs_data
def test_killed_search_resumes_with_the_same_children(tiny_search, tmp_path):
    root = tmp_path / "killed"
    done_before = []

    def crash_after_third(rec):
        done_before.append(rec["id"])
        if len(done_before) == 3:
            raise SearchInterrupted("test: crash after the third child")

    with pytest.raises(SearchInterrupted):
        run_search(root, tiny_config(generations=1), on_child_done=crash_after_third)
    states = [c[3] for c in lineage(root)]
    assert states.count("done") == 3 and states.count("pending") == 2
    stamps = {cid: json.loads((root / "children" / cid / "child.json").read_text())
              ["finished_at"] for cid in done_before}
    r = subprocess.run([sys.executable, "-m", "evopose_sdk.training.search.cli", "resume",
                        str(root), "--executor", "sequential"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "best g" in r.stdout
    resumed = lineage(root)
    reference = [c for c in lineage(tiny_search.dir.root) if c[0] < "g002"]
    assert resumed == reference  # same ids, genotypes, parents; all done
    for cid, t in stamps.items():  # finished children were not trained again
        rec = json.loads((root / "children" / cid / "child.json").read_text())
        assert rec["finished_at"] == t
        log = (root / "children" / cid / "run" / "train_log.csv").read_text().splitlines()
        assert len(log) == 1 + 2
    # resuming a finished search trains nothing
    before = sorted(p.stat().st_mtime for p in root.rglob("model.keras"))
    run_search(root, resume=True)
    assert sorted(p.stat().st_mtime for p in root.rglob("model.keras")) == before


@needs_data
def test_ray_two_workers_match_sequential(tiny_search, tmp_path):
    from evopose_sdk.training.search.ray_runner import RayExecutor

    ex = RayExecutor(workers=2)
    try:
        s = run_search(tmp_path / "ray", tiny_config(generations=1), executor=ex)
    finally:
        ex.close()
    assert ex.slots == 2
    reference = [c for c in lineage(tiny_search.dir.root) if c[0] < "g002"]
    assert lineage(s.dir.root) == reference
    ref = {c["id"]: c for c in tiny_search.children()}
    for c in s.children():  # same architectures -> same sizes
        assert (c["params"], c["macs"]) == (ref[c["id"]]["params"], ref[c["id"]]["macs"])


def test_cli_errors(tmp_path):
    cli = [sys.executable, "-m", "evopose_sdk.training.search.cli"]
    r = subprocess.run(cli + ["resume", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "holds no search" in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"generation": 3}))
    r = subprocess.run(cli + ["run", "--config", str(cfg), str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "did you mean 'generations'" in r.stderr
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
    shutil.rmtree(tmp_path / "s", ignore_errors=True)
