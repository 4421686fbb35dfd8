"""Experiment trackers a run reports to besides its own files: TensorBoard, MLflow and Weights & Biases.

``metrics.jsonl`` and ``summary.json`` are always written (the ``csv`` logger); the trackers are
optional extras, imported only when asked for. Each gets the resolved config (as parameters), every
epoch's metrics, the summary's numbers, and the weights as artifacts.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from distill.engine.runs import flatten
from distill.errors import UserError

# logger name -> (module it needs, the extra that installs it)
NEEDS = {
    "csv": (None, None),
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


def check_available(names: list[str]) -> list[str]:
    """One problem per unknown or uninstalled logger."""
    problems = []
    for name in names:
        if name not in NEEDS:
            problems.append(f"unknown logger {name!r}; choose from {', '.join(NEEDS)}")
            continue
        module, extra = NEEDS[name]
        if module and importlib.util.find_spec(module) is None:
            problems.append(f"logger={name} needs the {module} package: pip install 'distill[{extra}]'")
    return problems


def _numbers(d: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flatten(d).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    """Scalars under ``<run>/tensorboard`` (``tensorboard --logdir`` a run or a whole sweep folder)."""

    def __init__(self, run_dir: Path, settings: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(
            log_dir=str(run_dir / "tensorboard"), flush_secs=int(settings.get("flush_secs", 30))
        )

    def start(self, config: dict) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in sorted(flatten(config).items()))
        self.writer.add_text("config", text)

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        for k, v in _numbers(row).items():
            if k != "epoch":
                self.writer.add_scalar(k, v, step)

    def finish(self, summary: dict, artifacts: list[Path]) -> dict:
        for k, v in _numbers(summary).items():
            self.writer.add_scalar(f"summary/{k}", v, 0)
        self.writer.close()
        return {"tensorboard_dir": self.writer.log_dir}


class MLflow:
    """A run in an MLflow tracking store (default: SQLite ``<paths.root>/mlflow.db``); members of
    one sweep share an experiment named after the sweep."""

    def __init__(self, run_dir: Path, settings: dict, root: Path, experiment: str, run_name: str) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = settings.get("tracking_uri") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
        self.client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        self.uri = uri
        name = settings.get("experiment") or experiment
        found = self.client.get_experiment_by_name(name)
        # artifacts beside the store, not in ./mlruns of whatever folder the run started from
        where = (root / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        exp_id = found.experiment_id if found else self.client.create_experiment(name, artifact_location=where)
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags={"run_dir": str(run_dir)}).info.run_id

    def start(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in sorted(flatten(config).items())]
        for i in range(0, len(params), 100):  # the store takes at most 100 per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        step = int(row["epoch"])
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _numbers(row).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, summary: dict, artifacts: list[Path], status: str = "FINISHED") -> dict:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"summary.{k}", v, now, 0) for k, v in _numbers(summary).items()]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        for path in artifacts:
            if path.exists():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status)
        return {"mlflow": {"tracking_uri": self.uri, "run_id": self.run_id}}


class WandB:
    """A run in Weights & Biases, its files under ``<run>/wandb`` (with ``WANDB_MODE=offline`` or
    ``logger.wandb.mode=offline``, ``wandb sync <run>/wandb/offline-run-*`` uploads it later); the
    members of one sweep share a group named after the sweep, and ``job_type`` is the stage."""

    def __init__(self, run_dir: Path, settings: dict, run_name: str, group: str | None) -> None:
        import wandb

        self.wandb, self.settings, self.run_dir, self.run_name, self.group = wandb, settings, run_dir, run_name, group
        self.run = None

    def start(self, config: dict) -> None:
        s = self.settings
        self.run = self.wandb.init(
            project=s.get("project") or "distill",
            entity=s.get("entity"),
            group=self.group,
            name=self.run_name,
            job_type=str(config.get("stage", "")) or None,
            tags=[str(t) for t in s.get("tags") or []],
            config=config,
            dir=str(self.run_dir),
            mode=s.get("mode"),
            # distill's own log is <stage>.log; wandb's capture of the console would wrap the progress bar's
            settings=self.wandb.Settings(console="off"),
        )

    def epoch(self, row: dict) -> None:
        self.run.log({k: v for k, v in _numbers(row).items() if k != "epoch"}, step=int(row["epoch"]))

    def finish(self, summary: dict, artifacts: list[Path], exit_code: int = 0) -> dict:
        run = self.run
        run.summary.update(_numbers(summary))
        if self.settings.get("log_model") and exit_code == 0:
            model = self.wandb.Artifact(f"model-{run.id}", type="model")
            for path in artifacts:
                if path.exists():
                    model.add_file(str(path))
            run.log_artifact(model)
        info = {"project": run.project, "run_id": run.id, "group": self.group, "offline": bool(run.offline)}
        run.finish(exit_code=exit_code)
        return {"wandb": info}


class Loggers:
    """The trackers of one run, called by the stage: ``start``, ``epoch`` per epoch, ``finish``."""

    def __init__(self, trackers: list) -> None:
        self.trackers = trackers

    @classmethod
    def build(
        cls,
        names: list[str],
        settings: dict,
        run_dir: Path,
        root: Path,
        experiment: str,
        run_name: str,
        group: str | None = None,
    ) -> Loggers:
        """``experiment``: the MLflow experiment; ``group``: the sweep a member belongs to (W&B's group)."""
        problems = check_available(names)
        if problems:
            raise UserError(problems[0])
        trackers: list = []
        for name in names:
            if name == "tensorboard":
                trackers.append(TensorBoard(run_dir, settings.get(name) or {}))
            elif name == "mlflow":
                trackers.append(MLflow(run_dir, settings.get(name) or {}, root, experiment, run_name))
            elif name == "wandb":
                trackers.append(WandB(run_dir, settings.get(name) or {}, run_name, group))
        return cls(trackers)

    def start(self, config: dict) -> None:
        for t in self.trackers:
            t.start(config)

    def epoch(self, row: dict) -> None:
        for t in self.trackers:
            t.epoch(row)

    def finish(self, summary: dict, artifacts: list[Path]) -> dict:
        """Returns what the summary should record about the trackers (MLflow run id, folders)."""
        info: dict = {}
        for t in self.trackers:
            info.update(t.finish(summary, artifacts))
        return info

    def fail(self) -> None:
        for t in self.trackers:
            if isinstance(t, MLflow):
                t.client.set_terminated(t.run_id, status="FAILED")
            elif isinstance(t, TensorBoard):
                t.writer.close()
            elif isinstance(t, WandB) and t.run is not None:
                t.run.finish(exit_code=1)


def log_artifact_to(summary_file: Path, artifact: Path) -> bool:
    """Attaches ``artifact`` (an exported ONNX file) to the MLflow run a finished run logged to."""
    try:
        info = json.loads(summary_file.read_text()).get("loggers", {}).get("mlflow")
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(info, dict) or importlib.util.find_spec("mlflow") is None:
        return False
    # the URI comes from a file: the exported model goes only to a local store, never to a server it names
    uri = str(info.get("tracking_uri", ""))
    if uri.partition(":")[0] not in ("file", "sqlite") or not isinstance(info.get("run_id"), str):
        return False
    import mlflow

    mlflow.tracking.MlflowClient(tracking_uri=info["tracking_uri"]).log_artifact(info["run_id"], str(artifact))
    return True
