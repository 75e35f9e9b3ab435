import pytest
import torch
from torch import nn

import nolb
from nolb.errors import NolbError
from nolb.retrain.backbone import split_classifier

data_module = pytest.importorskip("nolb.data")
models = pytest.importorskip("nolb.models")


class PlainNet(nn.Module):
    """A torchvision-style classifier: no forward_features, the head is ``fc``."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


@pytest.fixture(scope="module")
def digits():
    return data_module.build_data("digits_lt", imbalance_ratio=20)


def test_split_classifier_matches_the_model_and_leaves_it_unchanged():
    model = PlainNet().eval()
    backbone, head = split_classifier(model, "fc")
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(head(backbone(x)), model(x))
    assert isinstance(model.fc, nn.Linear) and head is model.fc
    assert backbone(x).shape == (3, 8)
    with pytest.raises(NolbError, match="classifier"):
        split_classifier(model, "head")


def test_retrain_classifier_on_a_plain_pytorch_model(digits):
    torch.manual_seed(0)
    model = PlainNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = nolb.retrain_classifier(model, digits, classifier="fc", views=2, epochs=2, lr=0.1)
    assert isinstance(head, nn.Linear) and head.weight.shape == (10, 8)
    assert not torch.equal(head.weight, model.fc.weight)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is untouched
    details = nolb.retrain_classifier(model, digits, classifier="fc", loss="tau_norm", views=1, return_details=True)
    assert 0.0 <= details.details["tau"] <= 2.0 and details.val_score is not None


def test_online_mode_with_shift_bn_trains_a_head_without_touching_the_model(digits):
    torch.manual_seed(0)
    model = PlainNet().eval()
    running_mean = model.bn.running_mean.clone()
    head = nolb.retrain_classifier(model, digits, classifier="fc", mode="online", epochs=2, lr=0.1, shift_bn=True)
    assert isinstance(head, nn.Linear)
    assert torch.equal(model.bn.running_mean, running_mean)
    with pytest.raises(NolbError, match="cached"):
        nolb.retrain_classifier(model, digits, classifier="fc", mode="online", select_on_val=True)


def test_reestimated_batchnorm_statistics_equal_the_data_moments():
    from nolb.retrain.online import reestimate_batchnorm

    model = PlainNet()
    batches = [(torch.randn(16, 1, 8, 8) * 3 + 1, torch.zeros(16, dtype=torch.long)) for _ in range(3)]
    reestimate_batchnorm(model, batches)
    with torch.no_grad():
        activations = torch.cat([model.conv(x) for x, _ in batches])
    # cumulative average of per-batch means equals the overall mean for equal batch sizes
    assert torch.allclose(model.bn.running_mean, activations.mean((0, 2, 3)), atol=1e-5)
    assert not model.bn.training


def test_ensemble_save_and_load_round_trip(digits, tmp_path):
    from nolb.retrain.ensemble_io import load_ensemble, save_ensemble

    torch.manual_seed(0)
    model = models.build_model("small_cnn", 10, in_channels=1, width=8).eval()
    backbone, original = split_classifier(model)
    new_head = nn.Linear(model.feature_dim, 10)
    ensemble = nolb.Ensemble(backbone, original, new_head, t1=0.5, t2=2.0, space="log").eval()
    arch = {"model": "small_cnn", "num_classes": 10, "in_channels": 1, "head": "linear", "options": {"width": 8},
            "classifier": "classifier"}
    path = tmp_path / "ens.safetensors"
    save_ensemble(path, ensemble, arch)
    with pytest.raises(NolbError, match="exists"):
        save_ensemble(path, ensemble, arch)
    restored = load_ensemble(path)
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(restored(x), ensemble(x), atol=1e-6)
    assert (restored.t1, restored.t2, restored.space) == (0.5, 2.0, "log")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(NolbError, match="does not match"):
        load_ensemble(path)
