"""Knowledge distillation from several teachers at once."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method

MODES = ("weighted", "average")


def _kl(log_ps: torch.Tensor, log_pt: torch.Tensor) -> torch.Tensor:
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)


class MultiTeacherKD(Method):
    """Logit distillation from ``n`` teachers: "Learning from Multiple Teacher Networks", You, Xu,
    Xu and Tao, KDD 2017 (soft targets of several teachers combined), and the ensemble soft targets of
    "Distilling the Knowledge in a Neural Network", Hinton, Vinyals and Dean, 2015 (arXiv 1503.02531).

    With teacher logits ``t_i`` (``b.t_logits`` is a list; one tensor counts as one teacher)::

        weighted: multi_kd = sum_i w_i * T_i^2 * KL(softmax(t_i/T_i) || softmax(s/T_i)),  w normalised to sum 1
        average:  multi_kd = T^2 * KL(mean_i softmax(t_i/T) || softmax(s/T))

    KL is averaged over the batch. ``weights`` default to equal; ``temperatures`` (one per teacher)
    default to ``temperature`` for all. ``weighted`` averages the per-teacher losses (You et al.'s
    equal-weight combination is ``weights = None``); ``average`` distils the ensemble's mean
    prediction, as Hinton et al. distil an ensemble.
    """

    def __init__(
        self,
        temperatures: list[float] | None = None,
        weights: list[float] | None = None,
        mode: Literal["weighted", "average"] = "weighted",
        temperature: float = 4.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if temperature <= 0 or any(t <= 0 for t in temperatures or []):
            raise ValueError(f"temperatures must be > 0, got {temperatures or temperature}")
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        self.temperatures = None if temperatures is None else [float(t) for t in temperatures]
        self.weights = None if weights is None else [float(w) for w in weights]
        self.mode = mode
        self.temperature = float(temperature)

    def advice(self, num_teachers: int) -> list[str]:
        if num_teachers == 1:
            return ["distill=multi_teacher with one teacher is plain KD: add distill.teachers=[RUN_DIR,...]"]
        return []

    def check(self, num_teachers: int) -> list[str]:
        return [
            f"{key} has {len(values)} values for {num_teachers} teacher(s) (the teacher config's and distill.teachers)"
            for key, values in (("weights", self.weights), ("temperatures", self.temperatures))
            if values is not None and len(values) != num_teachers
        ]

    def _per_teacher(self, values: list[float] | None, n: int, default: float, what: str) -> list[float]:
        if values is None:
            return [default] * n
        if len(values) != n:
            raise ValueError(f"{what} has {len(values)} values for {n} teachers")
        return values

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        teachers = b.t_logits if isinstance(b.t_logits, list) else [b.t_logits]
        if not teachers or any(t is None for t in teachers):
            raise ValueError("MultiTeacherKD needs teacher logits")
        teachers = [t.detach().float() for t in teachers]
        s = b.s_logits.float()
        n = len(teachers)
        if self.mode == "average":
            T = self.temperature
            mean_pt = torch.stack([F.softmax(t / T, dim=1) for t in teachers]).mean(dim=0)
            loss = F.kl_div(F.log_softmax(s / T, dim=1), mean_pt, reduction="batchmean") * T * T
            return {"multi_kd": loss}
        temps = self._per_teacher(self.temperatures, n, self.temperature, "temperatures")
        weights = self._per_teacher(self.weights, n, 1.0, "weights")
        total = sum(weights)
        loss = s.new_zeros(())
        for t, T, w in zip(teachers, temps, weights):
            loss = loss + (w / total) * T * T * _kl(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1))
        return {"multi_kd": loss}
