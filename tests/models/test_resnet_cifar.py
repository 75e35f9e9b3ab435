"""ResNet-20/32 (CIFAR variant): structure, option-A shortcut and the akamaster checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.io import safe_torch_load
from nolb.models import build_model, resnet20, resnet32
from nolb.models.resnet_cifar import PadShortcut

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("builder, blocks", [(resnet20, 3), (resnet32, 5)])
def test_depth_width_and_feature_size(builder, blocks):
    model = builder(7)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 * blocks + 1  # 6n + 2 weighted layers, minus the classifier
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [blocks] * 3
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels] == [16, 32, 64]
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (3, 64) and model.feature_dim == 64
    torch.testing.assert_close(model(x), model.classifier(features))


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(8)(x)
    expected = torch.zeros(2, 32, 4, 4)
    expected[:, 8:24] = x[:, :, ::2, ::2]
    assert torch.equal(out, expected)


@pytest.fixture(scope="module")
def cifar_sample(shared_data):
    """2,000 seeded test images of the shared (JPEG-degraded) CIFAR-10, normalised."""
    test = np.load(shared_data / "cifar10" / "test.npz")
    n = 2000
    idx = np.random.default_rng(0).choice(len(test["y"]), n, replace=False)
    x = torch.from_numpy(test["x"][idx]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(test["y"][idx].astype(np.int64))


@pytest.mark.parametrize("name, file, n", [("resnet32", "resnet32-d509ac18.th", 2000), ("resnet20", "resnet20-12fca82f.th", 500)])
def test_akamaster_checkpoint_loads_and_is_accurate(shared_data, cifar_sample, name, file, n):
    path = shared_data / "weights" / file
    model = build_model(name, 10, weights=str(path)).eval()
    # The weights are the file's, tensor by tensor (after `module.` and `linear.` renames).
    raw = safe_torch_load(path)["state_dict"]
    own = model.state_dict()
    for key, value in raw.items():
        key = key.removeprefix("module.").replace("linear.", "classifier.")
        assert torch.equal(own[key], value), key
    x, y = cifar_sample[0][:n], cifar_sample[1][:n]
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.80  # README: 83.0 % for resnet32 on this JPEG-degraded sample


def test_wrong_architecture_or_class_count_is_one_line_error(shared_data):
    weights = str(shared_data / "weights" / "resnet32-d509ac18.th")
    with pytest.raises(NolbError, match="another architecture") as err:
        build_model("resnet20", 10, weights=weights)
    assert "\n" not in str(err.value) and "resnet32-d509ac18.th" in str(err.value)
    with pytest.raises(NolbError, match="10 classes, the model has 100"):
        build_model("resnet32", 100, weights=weights)
    with pytest.raises(NolbError, match="another architecture"):
        build_model("small_cnn", 10, in_channels=3, weights=weights)
    # The backbone alone can initialise a 100-class model.
    model = build_model("resnet32", 100, weights=weights, skip_classifier=True)
    raw = safe_torch_load(shared_data / "weights" / "resnet32-d509ac18.th")["state_dict"]
    assert torch.equal(model.conv1.weight, raw["module.conv1.weight"])


def test_feature_map_matches_manual_forward():
    """forward_features = global average pool of the last stage, recomputed by hand."""
    torch.manual_seed(0)
    model = resnet20(4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = F.relu(model.bn1(model.conv1(x)))
        for block in [*model.layer1, *model.layer2, *model.layer3]:
            residual = block.shortcut(out)
            out = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(out))))) + residual)
        torch.testing.assert_close(model.forward_features(x), out.mean(dim=(2, 3)))
