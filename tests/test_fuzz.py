"""Fuzzed input, small and seeded: corrupted images and videos (truncations, bit flips, wrong
headers, zero or huge dimensions, wrong extensions...) through the API and the CLI give a
result or a clear error, never an escaping exception, and leave no file behind.

The cases and checks are :mod:`evopose_sdk.fuzz`'s, as in ``benchmarks/fuzz_inputs.py`` (the
long version, which also runs each case in a worker process to catch crashes)."""

from __future__ import annotations

import pytest
from _video_helpers import REPO, SAMPLES, sample

from evopose_sdk import fuzz

N_IMAGES = 2 * len(fuzz.IMAGE_MUTATIONS)  # every mutation twice
N_VIDEOS = len(fuzz.VIDEO_MUTATIONS)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    for name in ("bus.jpg", "zidane.jpg", "demo.mp4"):
        sample(name)
    return fuzz.make_cases(seed=0, n_images=N_IMAGES, n_videos=N_VIDEOS,
                           dest=tmp_path_factory.mktemp("fuzz"), samples=SAMPLES)


def test_fuzzed_files_give_results_or_clear_errors_through_api_and_cli(cases, tmp_path):
    est = fuzz.make_estimator()
    rows = [{**case, **fuzz.check_api(est, case), **fuzz.check_cli(case, tmp_path)}
            for case in cases]
    failures = [r for r in rows if "FAIL" in (r["api"], r["cli"])]
    assert not failures, "\n".join(
        f"{r['mutation']} {r['path']}: {r.get('api_message', '')} | {r.get('cli_message', '')}"
        for r in failures)
    # the set is not trivially all-good or all-bad: both outcomes occur on both sides
    for side in ("api", "cli"):
        outcomes = {r[side] for r in rows}
        assert outcomes == {"ok", "error"}, (side, outcomes)
    assert len(rows) == N_IMAGES + N_VIDEOS


@pytest.mark.parametrize("mutation", ["truncate", "header"])
def test_fuzzed_video_through_a_real_cli_process(cases, tmp_path, mutation):
    case = next(c for c in cases if c["kind"] == "video" and c["mutation"] == mutation)
    row = fuzz.check_cli_subprocess(case, tmp_path, cwd=REPO)
    assert row["subprocess"] == "ok", row


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
@pytest.mark.parametrize("dims", [(100000, 100000), (65535, 65535), (0, 0)])
def test_header_claiming_huge_or_zero_dims_is_a_clear_error(tmp_path, ext, dims):
    import cv2

    from evopose_sdk.errors import InputError
    from evopose_sdk.io import read_image

    ok, buf = cv2.imencode(ext, cv2.imread(str(sample("bus.jpg")))[::8, ::8])
    path = tmp_path / f"patched{ext}"
    path.write_bytes(fuzz._with_dims(buf.tobytes(), ext, *dims))
    with pytest.raises(InputError, match="cannot decode image|truncated"):
        read_image(path)
