"""Real photos for the sweep: BatchNorm re-estimation of the random-init networks and edgeport's ``calib=``.

The scikit-image wheel ships 20 real photographs (people, animals, objects, textures, scenes, microscopy)
in ``skimage/data``; matplotlib (already in the environment) ships one more. They are read out of the wheel as
a zip (scikit-image is never installed). Each photo is written as it is plus two square crops (left/top and
right/bottom, the right one mirrored), so edgeport's folder loader (jpg/png, no sub-folders: unlabelled) sees
63 images and splits them ~31 calibration / ~32 held-out validation. Synthetic drawings in skimage/data
(chessboards, phantom, logo, colour chart, lfw 25x25 thumbnails) are left out.

    python -m benchmarks.third_party.photos <scikit_image-*.whl> <out folder>
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
                  "coffee.png", "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
                  "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg",
                  "text.png")


def _matplotlib_photo() -> tuple[str, bytes]:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return path.name, path.read_bytes()


def _views(img):
    """The photo, its left/top square crop and its right/bottom square crop mirrored."""
    from PIL import ImageOps

    w, h = img.size
    s = min(w, h)
    yield "full", img
    yield "a", img.crop((0, 0, s, s))
    yield "b", ImageOps.mirror(img.crop((w - s, h - s, w, h)))


def extract(wheel: Path, out: Path) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        blobs = [(n, z.read(f"skimage/data/{n}")) for n in SKIMAGE_PHOTOS]
    blobs.append(_matplotlib_photo())
    written = []
    for name, data in blobs:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        for tag, view in _views(img):
            path = out / f"{Path(name).stem}_{tag}.png"
            view.save(path)
            written.append(path)
    return written


def load_batch(folder: Path, size: int) -> np.ndarray:
    """All photos in ``folder`` as float32 NCHW (size x size), preprocessed the way edgeport preprocesses an
    nn.Module's calibration images (ImageNet mean/std, shorter side to size/0.875, centre crop)."""
    from PIL import Image

    from edgeport.data.preprocess import Preprocess

    pre = Preprocess(size=size, resize=round(size / 0.875))
    files = sorted(p for p in Path(folder).iterdir() if p.suffix == ".png")
    return np.concatenate([pre(np.asarray(Image.open(p).convert("RGB"))[None]) for p in files])


if __name__ == "__main__":
    paths = extract(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{len(paths)} images written to {sys.argv[2]}")
