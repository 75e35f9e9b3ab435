"""From a trained run to predictions: the self-describing model file, prediction, export.

    module, description = nolb.load_model("runs/demo")      # a run dir or a model file
    path = nolb.deploy.package_run("runs/demo")             # RUN/model/model.safetensors + MODEL_CARD.md

See :mod:`nolb.deploy.model_file` (format), :mod:`nolb.deploy.predict` (``nolb predict``) and
:mod:`nolb.deploy.export` (``nolb export``: ONNX, torch.export).
"""

from nolb.deploy.classifier import DeployedClassifier
from nolb.deploy.description import ModelDescription, Preprocessing
from nolb.deploy.final_model import FinalModel, final_model_of
from nolb.deploy.model_file import load_model, read_description, save_model_file
from nolb.deploy.package import package_run

__all__ = ["DeployedClassifier", "FinalModel", "ModelDescription", "Preprocessing", "final_model_of", "load_model",
           "package_run", "read_description", "save_model_file"]
