"""Heads, the model registry, torchvision wrappers and nolb's safetensors checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision

from nolb.errors import NolbError
from nolb.models import MODEL_NAMES, NormedLinear, build_model, load_weights, save_weights


def test_normed_linear_is_cosine_similarity():
    torch.manual_seed(0)
    head = NormedLinear(5, 3)
    x = torch.randn(4, 5)
    expected = F.cosine_similarity(x[:, None, :], head.weight[None, :, :], dim=-1)
    torch.testing.assert_close(head(x), expected)
    assert head(x).abs().max() <= 1 + 1e-6
    head(x).sum().backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "small_cnn"])
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_small_models_expose_features_and_replaceable_classifier(name, head):
    channels, size = (1, 8) if name == "small_cnn" else (3, 32)
    model = build_model(name, 5, in_channels=channels, head=head)
    x = torch.randn(2, channels, size, size)
    features = model.forward_features(x)
    assert features.shape == (2, model.feature_dim)
    assert isinstance(model.classifier, NormedLinear if head == "cosine" else torch.nn.Linear)
    model.classifier = torch.nn.Linear(model.feature_dim, 9)
    assert model(x).shape == (2, 9)


def test_small_cnn_on_28x28():
    model = build_model("small_cnn", 10, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_torchvision_weights_from_a_local_file_only(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet50", 1000, weights=str(path)).eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert model.forward_features(x).shape == (1, 2048)
    # Another class count: backbone only, with one trainable block (Places-LT).
    places = build_model("resnet50", 7, weights=str(path), skip_classifier=True, trainable_blocks=1)
    assert torch.equal(places.conv1.weight, reference.conv1.weight)
    trainable = {n.split(".")[0] for n, p in places.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "classifier"}
    places.train()
    assert not places.layer3.training and places.layer4.training


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": resnet_state(), "hook": pickle.PickleError("x")}, path)
    with pytest.raises(NolbError, match="refused"):
        build_model("resnet20", 10, weights=str(path))


def resnet_state():
    return build_model("resnet20", 10).state_dict()


def test_safetensors_round_trip_and_errors(tmp_path):
    model = build_model("resnet20", 10)
    save_weights(tmp_path / "w.safetensors", model, metadata={"model": "resnet20"})
    other = build_model("resnet20", 10)
    assert load_weights(other, tmp_path / "w.safetensors")["model"] == "resnet20"
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    with pytest.raises(NolbError, match="10 classes, the model has 3"):
        load_weights(build_model("resnet20", 3), tmp_path / "w.safetensors")


def test_registry_rejects_unknown_names_and_options():
    assert {"resnet20", "resnet32", "small_cnn", "resnet50", "resnext50_32x4d", "resnet152"} <= set(MODEL_NAMES)
    with pytest.raises(NolbError, match="unknown model 'resnet33'"):
        build_model("resnet33", 10)
    with pytest.raises(NolbError, match="bad option"):
        build_model("resnet32", 10, width=3)
    with pytest.raises(NolbError, match="3-channel"):
        build_model("resnet50", 10, in_channels=1)


def test_small_cnn_depth_stacks_layers_per_stage():
    shallow = build_model("small_cnn", 10, in_channels=1)
    deep = build_model("small_cnn", 10, in_channels=1, depth=2)
    convs = [m for m in deep.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert "block1.0.weight" in shallow.state_dict()  # depth 1 keeps the earlier checkpoints' names
    x = torch.randn(2, 1, 28, 28)
    assert deep(x).shape == (2, 10) and deep.forward_features(x).shape == (2, 128) == shallow.forward_features(x).shape
    with pytest.raises(NolbError, match="depth"):
        build_model("small_cnn", 10, depth=0)
