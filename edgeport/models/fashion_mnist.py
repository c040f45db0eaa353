"""Zoo models trained by edgeport on Fashion-MNIST (scripts/train_fashion_mnist.py), shipped as fp16
checkpoints so accuracy and int8 parity can be measured on a real, trained network offline."""

from edgeport.data.preprocess import FASHION_MNIST
from edgeport.models.mobilenet_v2 import mobilenet_v2
from edgeport.models.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from edgeport.models.shufflenet_v1 import shufflenet_v1
from edgeport.models.shufflenet_v2 import shufflenet_v2_x0_5
from edgeport.registry import register_model

register_model(
    "fmnist_mobilenet_v2_x0_5", mobilenet_v2, family="fashion_mnist", input_size=64,
    preprocess=FASHION_MNIST, weights="weights/fmnist_mobilenet_v2_x0_5.pt",
    description="MobileNetV2 width 0.5 trained on Fashion-MNIST (64x64, 3 channels, [-1, 1])",
    width_mult=0.5, num_classes=10,
)
register_model(
    "fmnist_shufflenet_v2_x0_5", shufflenet_v2_x0_5, family="fashion_mnist", input_size=64,
    preprocess=FASHION_MNIST, weights="weights/fmnist_shufflenet_v2_x0_5.pt",
    description="ShuffleNetV2 0.5x trained on Fashion-MNIST (64x64, 3 channels, [-1, 1])",
    num_classes=10,
)
register_model(
    "fmnist_mobilenet_v3_small", mobilenet_v3_small, family="fashion_mnist", input_size=64,
    preprocess=FASHION_MNIST, weights="weights/fmnist_mobilenet_v3_small.pt",
    description="MobileNetV3-Small 1.0 trained on Fashion-MNIST (64x64, 3 channels, [-1, 1])",
    num_classes=10,
)
register_model(
    "fmnist_mobilenet_v3_large_x0_5", mobilenet_v3_large, family="fashion_mnist", input_size=64,
    preprocess=FASHION_MNIST, weights="weights/fmnist_mobilenet_v3_large_x0_5.pt",
    description="MobileNetV3-Large width 0.5 trained on Fashion-MNIST (64x64, 3 channels, [-1, 1])",
    width_mult=0.5, num_classes=10,
)
register_model(
    "fmnist_shufflenet_v1_g3_x0_5", shufflenet_v1, family="fashion_mnist", input_size=64,
    preprocess=FASHION_MNIST, weights="weights/fmnist_shufflenet_v1_g3_x0_5.pt",
    description="ShuffleNetV1 0.5x, g=3, trained on Fashion-MNIST (64x64, 3 channels, [-1, 1])",
    groups=3, scale=0.5, num_classes=10,
)
