"""The sweep's architectures: torchvision and timm builders with random weights (nothing is downloaded), each
with the input it is exported at and what it exercises. Dense-prediction models are wrapped so the exported
module returns tensors: torchvision's segmentation models return ``{"out": ...}``; the SSDLite detector is cut
before anchor decoding and NMS (backbone + head, raw box regressions and class logits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from benchmarks.third_party.thirdparty_import import import_vision


@dataclass(frozen=True)
class Spec:
    name: str
    family: str  # "cnn" | "hybrid" | "segmentation" | "detection"
    source: str  # "torchvision" | "timm"
    build: Callable[[], torch.nn.Module]
    size: int = 224
    note: str = ""


class SegmentationOut(torch.nn.Module):
    """torchvision segmentation model -> its 'out' logits (N, classes, H, W)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


class DetectionHead(torch.nn.Module):
    """SSD/SSDLite backbone + head without anchors, box decoding or NMS: (bbox_regression, cls_logits), or with
    ``concat`` one tensor (N, anchors, 4 + classes), the single-output form edge deployments usually take."""

    def __init__(self, model, concat: bool = False):
        super().__init__()
        self.backbone, self.head, self.concat = model.backbone, model.head, concat

    def forward(self, x):
        features = list(self.backbone(x).values())
        out = self.head(features)
        if self.concat:
            return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)
        return out["bbox_regression"], out["cls_logits"]


def _tv(name: str, **kw):
    return lambda: import_vision()[0].models.get_model(name, weights=None, **kw)


def _timm(name: str, reparameterize: bool = False):
    def build():
        timm = import_vision()[1]
        model = timm.create_model(name, pretrained=False)
        if reparameterize:  # the deploy form timm's docs export (MobileOne/FastViT branches folded)
            model = timm.utils.model.reparameterize_model(model.eval())
        return model

    return build


def _segmentation(name: str):
    return lambda: SegmentationOut(_tv(name, weights_backbone=None)())


def _ssdlite(concat: bool = False):
    def build():
        tv = import_vision()[0]
        return DetectionHead(tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None), concat)

    return build


SPECS = (
    Spec("mobilenet_v2", "cnn", "torchvision", _tv("mobilenet_v2")),
    Spec("mobilenet_v3_small", "cnn", "torchvision", _tv("mobilenet_v3_small"), note="h-swish, SE"),
    Spec("mobilenet_v3_large", "cnn", "torchvision", _tv("mobilenet_v3_large"), note="h-swish, SE"),
    Spec("shufflenet_v2_x1_0", "cnn", "torchvision", _tv("shufflenet_v2_x1_0"), note="channel shuffle"),
    Spec("mnasnet1_0", "cnn", "torchvision", _tv("mnasnet1_0")),
    Spec("efficientnet_b0", "cnn", "torchvision", _tv("efficientnet_b0"), note="SiLU, SE"),
    Spec("regnet_x_400mf", "cnn", "torchvision", _tv("regnet_x_400mf"), note="group conv"),
    Spec("squeezenet1_1", "cnn", "torchvision", _tv("squeezenet1_1"), note="ceil-mode max-pool, concat"),
    Spec("ghostnet_100", "cnn", "timm", _timm("ghostnet_100"), note="ghost modules, SE with hard-sigmoid"),
    Spec("mobilenetv4_conv_small", "cnn", "timm", _timm("mobilenetv4_conv_small")),
    Spec("tf_mobilenetv3_large_100", "cnn", "timm", _timm("tf_mobilenetv3_large_100"), note="TF 'same' padding"),
    Spec("mobileone_s0", "cnn", "timm", _timm("mobileone_s0", reparameterize=True), note="reparameterized"),
    Spec("lcnet_050", "cnn", "timm", _timm("lcnet_050"), note="h-swish, SE"),
    Spec("hardcorenas_a", "cnn", "timm", _timm("hardcorenas_a")),
    Spec("efficientnet_lite0", "cnn", "timm", _timm("efficientnet_lite0"), note="ReLU6"),
    Spec("repvgg_a0", "cnn", "timm", _timm("repvgg_a0"), note="training-form branches (not reparameterized)"),
    Spec("mobilevit_xxs", "hybrid", "timm", _timm("mobilevit_xxs"), note="MobileViT attention"),
    Spec("mobilevitv2_050", "hybrid", "timm", _timm("mobilevitv2_050"), note="separable linear attention"),
    Spec("efficientvit_b0", "hybrid", "timm", _timm("efficientvit_b0"), note="ReLU linear attention with DIV"),
    Spec("edgenext_xx_small", "hybrid", "timm", _timm("edgenext_xx_small"), note="GELU, transposed attention"),
    Spec("fastvit_t8", "hybrid", "timm", _timm("fastvit_t8", reparameterize=True), note="GELU, reparameterized"),
    Spec("levit_128s", "hybrid", "timm", _timm("levit_128s"), note="attention with bias, h-swish"),
    Spec("lraspp_mobilenet_v3_large", "segmentation", "torchvision", _segmentation("lraspp_mobilenet_v3_large"),
         note="21-class logits at input size"),
    Spec("deeplabv3_mobilenet_v3_large", "segmentation", "torchvision",
         _segmentation("deeplabv3_mobilenet_v3_large"), note="ASPP, dilated convs"),
    Spec("ssdlite320_mobilenet_v3_large", "detection", "torchvision", _ssdlite(), size=320,
         note="backbone + head, 2 outputs, no NMS"),
    Spec("ssdlite320_mobilenet_v3_large_cat", "detection", "torchvision", _ssdlite(concat=True), size=320,
         note="the same, boxes and scores in one output tensor"),
)
BY_NAME = {s.name: s for s in SPECS}


@torch.no_grad()
def reestimate_bn(model: torch.nn.Module, photos: torch.Tensor, passes: int = 2) -> int:
    """BatchNorm running statistics re-estimated on real photos (cumulative average: momentum=None), then eval.
    A random-init network with its init statistics (mean 0, var 1) gives nearly input-independent logits, so
    int8 ranges and parity would say little. Returns how many BatchNorm layers were re-estimated."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for _ in range(passes):
        for chunk in photos.split(16):
            model(chunk)
    return len(bns)
