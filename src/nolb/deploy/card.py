"""The Markdown model card written next to every packaged final model.

Data and class counts, the base method, the stage-2/3 settings and how they were chosen,
why this candidate is the final model, the test metrics with their 95% bootstrap intervals,
the five worst classes and the commands that made the model.  Everything comes from files
of the run (``config.yaml``, ``run.json``, ``retrain/retrain.json``, ``final_model.json``,
the newest report's ``metrics.json``/``report.md``); nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nolb.deploy.description import ModelDescription
from nolb.io import read_json, write_text

METRICS = (("accuracy", "Top-1"), ("am", "AM"), ("hm", "HM"), ("gm", "GM"), ("lowest", "Lowest"))
MAX_COUNT_ROWS = 100


def _test_report(final: Any) -> tuple[dict | None, str]:
    """The final candidate's row in the newest report that has it (``nolb run``, ``retrain`` or
    ``ensemble`` may each have written one; the last one scored the run's current files)."""
    found = []
    for path, row in final.report:
        if Path(path).is_file():
            rows = read_json(path)
            if isinstance(rows.get(row), dict) and "per_class" in rows[row]:
                found.append((Path(path).stat().st_mtime, rows[row], f"{path} (row {row!r})"))
    if not found:
        return None, ""
    _, row, where = max(found, key=lambda item: item[0])
    return row, where


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _data_section(d: ModelDescription, data: Any) -> list[str]:
    info = getattr(data, "info", {}) or {}
    sizes = info.get("sizes", {})
    counts = d.train_counts
    lines = ["## Data", "",
             f"- dataset: {info.get('name', '?')}, {d.num_classes} classes, {sum(counts)} training images "
             f"(largest/smallest class {max(counts)}/{min(counts)}), validation {sizes.get('val', '?')}, "
             f"test {sizes.get('test', '?')} images",
             "", "| class | name | training images |", "| ---: | --- | ---: |"]
    for c in range(min(d.num_classes, MAX_COUNT_ROWS)):
        lines.append(f"| {c} | {d.class_names[c]} | {counts[c]} |")
    if d.num_classes > MAX_COUNT_ROWS:
        lines.append(f"| ... | {d.num_classes - MAX_COUNT_ROWS} more classes: see `train_counts` in the model file | |")
    return lines + [""]


def _method_section(d: ModelDescription, config: Any, final: Any, run: Path) -> list[str]:
    m, t, o = config.model, config.train, config.optim
    lines = ["## Method", "",
             f"- base model (stage 1): {m.name} ({m.head} head, options {dict(m.options)}), loss {config.loss.name}"
             f"{' ' + str(dict(config.loss.options)) if config.loss.options else ''}, {t.epochs} epochs, batch {t.batch_size}, lr {o.lr}, "
             f"sampler {config.data.sampler}; checkpoint chosen on validation {getattr(t, 'select_metric', '?')}"]
    if final.stage in ("retrain", "ensemble"):
        lines.append(_stage2_line(run, final.head_key))
    if d.kind == "ensemble":
        h = d.heads
        recorded = _recorded_temperature_note(final)
        how = f"as recorded in the report: \"{recorded}\"" if recorded else "how they were chosen is not recorded"
        lines.append(f"- stage 3: ensemble of the original and the re-trained head, T1 {h['original']['temperature']}, "
                     f"T2 {h['new']['temperature']}, {h.get('space', 'prob')}-space average ({how})")
    lines.append(_final_line(final))
    return lines + [""]


def _stage2_line(run: Path, key: str | None) -> str:
    """The stage-2 head: its settings and how they were chosen, from ``RUN/retrain/retrain.json``."""
    path = run / "retrain" / "retrain.json"
    record = read_json(path) if path.is_file() else {}
    head = (record.get("heads") or {}).get(key or "") or {}
    if not head:
        return f"- stage 2: re-trained head {key or '?'} (settings not recorded in {path})"
    criterion = head.get("selection_criterion")
    how = (f"chosen on the validation split by: {criterion}" if criterion
           else "the paper's fixed recipe, not tuned" if key == "paper" else "fixed settings, not tuned")
    epoch = f", best epoch {head['best_epoch']}" if head.get("best_epoch") is not None else ""
    return (f"- stage 2: re-trained head {key} ({how}; budget: {head.get('budget', 'not recorded')}); "
            f"settings: {head.get('settings')}{epoch}")


def _final_line(final: Any) -> str:
    """Why this candidate is the final model: ``final_model.json``'s reason and rule."""
    choice = final.choice
    if not choice:
        return (f"- final model: {final.candidate or final.stage} (the run declares none in final_model.json; "
                "default order: ensemble, nolb head, paper head, stage 1)")
    scores = "; ".join(f"{name} HM {_pct(v.get('hm'))} AM {_pct(v.get('am'))}"
                       for name, v in (choice.get("val") or {}).items())
    return (f"- final model: {choice.get('candidate')} ({choice.get('kind')}), chosen on the validation split among "
            f"the run's candidates: {choice.get('reason', 'reason not recorded')}; rule: {choice.get('rule', '?')}"
            + (f"; validation (percent): {scores}" if scores else ""))


def _recorded_temperature_note(final: Any) -> str | None:
    """The newest report's line saying how T1/T2 were set (fixed or chosen on validation), if any."""
    reports = sorted((Path(path).with_name("report.md") for path, _ in final.report),
                     key=lambda p: p.stat().st_mtime if p.is_file() else -1.0, reverse=True)
    for markdown in reports:
        if markdown.is_file():
            for line in markdown.read_text(encoding="utf-8").splitlines():
                if "T1" in line and "T2" in line:
                    return line.lstrip("- ").strip()
    return None


def _metrics_section(d: ModelDescription, report: dict | None, where: str) -> list[str]:
    if report is None:
        return ["## Test metrics", "", "No test report of this model was found in the run.", ""]
    intervals = report.get("intervals", {})
    head = "| " + " | ".join(label for _, label in METRICS) + " | #zero |"
    cells = []
    for key, _ in METRICS:
        low_high = intervals.get(key)
        ci = f" [{_pct(low_high[0])}, {_pct(low_high[1])}]" if low_high else ""
        cells.append(f"{_pct(report.get(key))}{ci}")
    lines = ["## Test metrics", "", f"Percent on {report.get('num_samples', '?')} test images, 95% stratified "
             f"bootstrap intervals over test images; from {where}.", "", head,
             "|" + " ---: |" * (len(METRICS) + 1), "| " + " | ".join(cells) + f" | {report.get('num_zero', '?')} |", "",
             "## Worst five classes", "", "| class | name | training images | test images | test recall |",
             "| ---: | --- | ---: | ---: | ---: |"]
    per_class = report["per_class"]
    test_counts = report.get("test_counts") or ["?"] * len(per_class)
    for c in sorted(range(len(per_class)), key=lambda i: (per_class[i], i))[:5]:
        lines.append(f"| {c} | {d.class_names[c]} | {d.train_counts[c]} | {test_counts[c]} | {_pct(per_class[c])} |")
    return lines + [""]


def model_card(description: ModelDescription, final: Any, config: Any, data: Any, run: Path) -> str:
    """The card's Markdown text."""
    d = description
    p = d.preprocessing
    steps = [f"convert to {p.color}"]
    if p.resize:
        steps.append(f"resize shorter side to {p.resize}")
    if p.center_crop:
        steps.append(f"center crop {p.center_crop}")
    steps += [f"{p.input_size}x{p.input_size} input", "/255", f"normalise mean {list(p.mean)} std {list(p.std)}"]
    report, where = _test_report(final)
    commands = d.provenance.get("commands") or []
    lines = [f"# Model card: {d.provenance.get('data', '')} {d.stage} model ({d.kind})", "",
             f"- file: `model.safetensors` (SHA-256 `{d.checksum}`), load with `nolb.load_model(path)`",
             f"- classes: {d.num_classes}; preprocessing: {', '.join(steps)}",
             f"- run: `{d.provenance.get('run_dir')}`, commit {d.provenance.get('commit')}"
             f"{' (uncommitted changes)' if d.provenance.get('dirty') else ''}", "",
             *_data_section(d, data), *_method_section(d, config, final, run), *_metrics_section(d, report, where),
             "## Commands", "", "```",
             *(commands or ["(stage-1 command not recorded)"]),
             *(["# stages 2/3 as recorded in the run's retrain/ and ensemble/ folders"] if d.stage != "stage1"
               and not any(" run " in f" {c} " for c in commands) else []),
             f"python -c \"import nolb.deploy; nolb.deploy.package_run('{run}')\"", "```", ""]
    return "\n".join(lines)


def write_model_card(path: str | Path, description: ModelDescription, final: Any, config: Any, data: Any,
                     run: Path) -> Path:
    """Write ``MODEL_CARD.md`` (atomically) and return its path."""
    write_text(path, model_card(description, final, config, data, run))
    return Path(path)
