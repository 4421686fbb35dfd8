"""Deep mutual learning: peers trained together, each learning from the others' predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mutual_losses(logits: list[torch.Tensor], y: torch.Tensor, temperature: float = 1.0) -> list[torch.Tensor]:
    """The loss of each peer in "Deep Mutual Learning", Zhang, Xiang, Hospedales and Lu, 2018
    (arXiv 1706.00384).

    For ``K >= 2`` peers with logits ``z_k``::

        loss_k = CE(z_k, y) + T^2 * mean_{j != k} KL(softmax(z_j.detach()/T) || softmax(z_k/T))

    CE and KL are averaged over the batch. The other peers' predictions are detached, so
    ``sum(loss_k)`` can be minimised in one backward pass and each peer still only receives its own
    loss's gradient (the paper alternates peer updates; with one optimizer over all peers, summing is
    the common simultaneous variant). The paper uses ``T = 1``; the mean over the ``K - 1`` others is
    its multi-peer form (eq. 10). With ``T = 1`` the ``T^2`` factor is 1.

    Raises:
        ValueError: fewer than 2 peers or ``temperature <= 0``.
    """
    if len(logits) < 2:
        raise ValueError(f"mutual learning needs at least 2 peers, got {len(logits)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    T = float(temperature)
    zs = [z.float() for z in logits]
    targets = [F.log_softmax(z.detach() / T, dim=1) for z in zs]
    losses = []
    for k, z in enumerate(zs):
        log_pk = F.log_softmax(z / T, dim=1)
        kls = [F.kl_div(log_pk, targets[j], reduction="batchmean", log_target=True) for j in range(len(zs)) if j != k]
        losses.append(F.cross_entropy(z, y) + T * T * torch.stack(kls).mean())
    return losses


def peer_loss(temperature: float = 1.0):
    """The online peers' loss in deep mutual learning, for :class:`distill.engine.loop.Teachers`:
    ``peer_loss(peer_logits, student_logits, y)`` is the sum of each peer's :func:`mutual_losses`
    term with the student as one more peer (the student's own term is the training loss's)."""

    def loss(peer_logits: list[torch.Tensor], s_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(mutual_losses([*peer_logits, s_logits], y, temperature)[:-1])

    return loss
