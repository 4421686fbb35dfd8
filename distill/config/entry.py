"""Hydra plumbing every stage shares: the user's overrides, composing another stage's config, and the
``@hydra.main`` wrapper that turns a user error into one line and exit code 2."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill import config_dir
from distill.engine.runs import RunDir
from distill.errors import Diverged, UserError
from distill.io import atomic_write

# The overrides of a run started through distill.api.run (on the command line, Hydra keeps them).
API_OVERRIDES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("api_overrides", default=None)


def given_overrides() -> list[str]:
    """The overrides the user gave for this run: those given to ``distill.api.run``, or Hydra's record
    of the command line."""
    if API_OVERRIDES.get() is not None:
        return list(API_OVERRIDES.get())
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        pass
    return []


def compose_stage(name: str, overrides: list[str]) -> DictConfig:
    """Composes another stage's primary config, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=name, overrides=overrides)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def hydra_entry(stage: str, run_fn: Any, metric: str | None = None) -> Any:
    """The few-line ``@hydra.main`` wrapper of a stage: user errors become one line and exit code 2.

    Returns ``summary[metric]`` so that Hydra sweepers (e.g. Optuna) can optimise it.
    """
    import sys

    import hydra

    @hydra.main(config_path=config_dir(), config_name=stage, version_base="1.3")
    def main(cfg: DictConfig) -> Any:
        from distill.engine.state import Interrupted
        from distill.models.user import trusting

        try:
            with trusting(cfg):
                summary = run_fn(cfg)
        except Diverged as e:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.get().mode != RunMode.MULTIRUN:
                print(f"distill {stage}: error: {e}", file=sys.stderr)
                sys.exit(2)
            print(f"distill {stage}: error: {e}; this member of the sweep failed, the sweep goes on", file=sys.stderr)
            if "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower():
                raise RuntimeError(str(e)) from None  # Optuna records a failed trial (max_failure_rate)
            return float("nan") if metric else None
        except UserError as e:
            _mark_failed(cfg, e)
            print(f"distill {stage}: error: {e}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            import yaml

            try:  # the run that stopped may be a step of another stage (chain): resume that run
                ran = (yaml.safe_load(RunDir(e.run_dir).config.read_text()) or {}).get("stage", stage)
            except (OSError, yaml.YAMLError):
                ran = stage
            if (e.run_dir / ".hydra" / "overrides.yaml").is_file():
                from distill.models.user import trust_setting

                named = sorted(trust_setting(cfg)[0])  # the user's own code must be named again
                trust = f" trust_code=[{','.join(named)}]" if named else ""
                how = f"Continue with: distill {ran} resume={e.run_dir}{trust}"
            elif (stage, ran) == ("train", "teacher"):  # the teacher train trains for itself
                how = "Run the same command again: it continues this teacher run, then trains the student."
            else:
                how = "It was started inside another stage (a chain step) and is not resumable on its own."
            print(f"distill {stage}: stopped by {e} after a finished step; the state is saved. {how}", file=sys.stderr)
            sys.exit(e.exit_code)
        return summary.get(metric) if metric and isinstance(summary, dict) else None

    return main


def _mark_failed(cfg: DictConfig, error: Exception) -> None:
    """A run that stops on an error after its folder was made keeps its log and says it failed
    (``failed.json``), so nobody takes it for a finished run; never raises (the disk may be full)."""
    import json
    import time

    folder = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not folder or not Path(str(folder)).is_dir() or RunDir(str(folder)).finished:
        return
    try:
        info = {"status": "failed", "error": str(error), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(RunDir(str(folder)).failed, json.dumps(info, indent=2))
    except (OSError, UserError):
        pass
