"""Stage 1 engine: the training loop, evaluation, DDP helpers and the run directory."""

from nolb.engine.evaluate import evaluate
from nolb.engine.load import load_trained
from nolb.engine.run_dir import RunDir
from nolb.engine.schedules import EpochSchedule, schedule_from_config
from nolb.engine.trainer import RunResult, config_of_run, report_summary, train

__all__ = ["EpochSchedule", "RunDir", "RunResult", "config_of_run", "evaluate", "load_trained", "report_summary",
           "schedule_from_config", "train"]
