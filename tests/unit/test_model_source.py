import torch

from edgeport.models import source as model_source


def test_zoo_model_without_weights_is_the_same_network_in_every_command():
    a = model_source.load("mobilenet_v1_x0_25", input_shape=(1, 3, 32, 32)).module.state_dict()
    torch.manual_seed(1234)  # whatever the global RNG state is
    b = model_source.load("mobilenet_v1_x0_25", input_shape=(1, 3, 32, 32)).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_metadata_supplies_builder_kwargs_shape_and_preprocessing(tmp_path):
    from edgeport.data.preprocess import FASHION_MNIST

    model = model_source.load("shufflenet_v2_x0_5", num_classes=10, input_shape=(1, 3, 64, 64)).module
    ckpt = tmp_path / "fm.pt"
    torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
                "edgeport": {"kwargs": {"num_classes": 10}, "input_shape": [1, 3, 64, 64],
                             "preprocess": FASHION_MNIST.to_dict()}}, ckpt)
    loaded = model_source.load("shufflenet_v2_x0_5", weights=ckpt)
    assert loaded.input_shape == (1, 3, 64, 64)
    assert loaded.data_preprocess() == FASHION_MNIST
    assert loaded.module.fc.out_features == 10 and not loaded.random_weights
    assert next(loaded.module.parameters()).dtype == torch.float32  # fp16 checkpoint loaded into fp32


def test_parse_shape():
    import pytest

    from edgeport.errors import UsageError

    assert model_source.parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert model_source.parse_shape("1x3x64x64") == (1, 3, 64, 64)
    for bad in ("1,3,0,4", "a,b", "7"):
        with pytest.raises(UsageError):
            model_source.parse_shape(bad)
