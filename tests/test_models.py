import pytest
import torch
import torch.nn as nn

from lnlib.models import MODELS, create_model

ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout,
           nn.Linear, nn.Sequential)


@pytest.mark.parametrize("name, shape", [("small_cnn", (1, 28, 28)), ("small_cnn", (3, 32, 32)),
                                         ("wrn40_2", (3, 32, 32)), ("resnet18", (3, 32, 32)),
                                         ("mlp", (2,)), ("mlp", (1, 28, 28))])
def test_output_shape_features_and_linear_head(name, shape):
    model = create_model(name, shape, 10, dropout=0.3).eval()
    x = torch.randn(3, *shape)
    logits = model(x)
    assert logits.shape == (3, 10)
    assert isinstance(model.head, nn.Linear)
    assert torch.allclose(model.head(model.features(x)), logits)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_only_piecewise_affine_building_blocks(name):
    # Hein et al.'s theorem needs ReLU networks with a linear last layer: no other nonlinearity may appear.
    model = create_model(name, (3, 32, 32) if name != "mlp" else (2,), 10)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert all(isinstance(m, ALLOWED) for m in leaves), {type(m).__name__ for m in leaves}


def test_wrn40_2_has_the_papers_size():
    n = sum(p.numel() for p in create_model("wrn40_2", (3, 32, 32), 10).parameters())
    assert 2.2e6 < n < 2.3e6  # WRN-40-2: 2.2 M parameters


def test_unknown_model():
    with pytest.raises(ValueError, match="model='vgg'.*small_cnn"):
        create_model("vgg", (1, 28, 28), 10)
