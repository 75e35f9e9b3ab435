"""timm/<name> backbones: nolb's model contract, timm state dicts through the safe loader, config names."""

from __future__ import annotations

import pytest
import torch

from nolb.errors import NolbError

timm = pytest.importorskip("timm")


def test_timm_model_follows_the_nolb_contract_and_loads_timm_weights(tmp_path):
    from nolb.models import build_model, save_weights

    reference = timm.create_model("resnet10t", pretrained=False, num_classes=7, in_chans=1).eval()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "timm.pth")
    model = build_model("timm/resnet10t", 7, in_channels=1, weights=str(tmp_path / "timm.pth")).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))  # same network, same weights
        features = model.forward_features(x)
        assert features.shape == (3, model.feature_dim) == (3, reference.num_features)
        torch.testing.assert_close(model.classifier(features), model(x))
        torch.testing.assert_close(features, reference.forward_head(reference.forward_features(x), pre_logits=True))
    assert isinstance(model.classifier, torch.nn.Linear)
    save_weights(tmp_path / "nolb.safetensors", model)  # nolb's own format round-trips too
    again = build_model("timm/resnet10t", 7, in_channels=1, weights=str(tmp_path / "nolb.safetensors")).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_cosine_head_and_a_nested_timm_classifier():
    from nolb.models import NormedLinear, build_model

    model = build_model("timm/test_convnext", 5, head="cosine")  # timm's classifier is head.fc
    assert isinstance(model.classifier, NormedLinear) and model.foreign_key_renames["head.fc."] == "classifier."
    assert model.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, model.feature_dim)


def test_bad_timm_names_and_other_architectures_weights_are_one_line_errors(tmp_path):
    from nolb.models import build_model

    with pytest.raises(NolbError, match="not a timm architecture"):
        build_model("timm/no_such_net", 10)
    with pytest.raises(NolbError, match="unknown model"):
        build_model("resnet10t", 10)
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(NolbError, match="r18.pth: checkpoint is for another architecture"):
        build_model("timm/resnet10t", 10, weights=str(tmp_path / "r18.pth"))


def test_config_accepts_timm_names_and_still_rejects_unknown_ones():
    from nolb.config import load_config

    config = load_config("digits_lt", ["model.name=timm/resnet10t", "model.options={}"])
    assert config.model.name == "timm/resnet10t"
    with pytest.raises(NolbError, match="model.name"):
        load_config("digits_lt", ["model.name=resnet10t"])
