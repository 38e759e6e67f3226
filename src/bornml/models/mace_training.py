"""Training loop of the MACE heads: Adam, mini-batches of frames, ReduceLROnPlateau, early
stopping on the validation RMSE of Z (e), best weights restored at the end.

Loss of a batch: mean over tensor elements of (Z − Z_DFT)² (ASR-corrected targets, e²) plus
``charge_regularisation`` × mean over atoms of (q'_i − tr(Z_i^DFT)/3)² for charge heads.
"""

import copy
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import keys
from .mace_bec import born_charges, collate


def batch_loss(net, batch, fixed_charges, charge_regularisation, create_graph=True):
    """(loss tensor, summed squared Z error, number of Z elements) of one batch."""
    out = born_charges(net, batch, fixed_charges, create_graph=create_graph)
    err = out[keys.BEC] - batch.targets
    sq = (err ** 2).sum()
    loss = sq / err.numel()
    if charge_regularisation and net.q_readout is not None:
        target_q = torch.diagonal(batch.targets, dim1=1, dim2=2).sum(-1) / 3.0
        loss = loss + charge_regularisation * ((out[keys.CHARGES] - target_q) ** 2).mean()
    return loss, float(sq.detach()), err.numel()


def rmse(net, graphs, fixed_charges, batch_size):
    """RMSE of Z (e) over ``graphs`` (no parameter graph kept)."""
    total, count = 0.0, 0
    for start in range(0, len(graphs), batch_size):
        _, sq, n = batch_loss(net, collate(graphs[start:start + batch_size]), fixed_charges,
                              0.0, create_graph=False)
        total, count = total + sq, count + n
    return math.sqrt(total / count)


def train(net, train_graphs, val_graphs, *, fixed_charges=None, max_epochs=200,
          learning_rate=5e-3, batch_size=4, patience=30, charge_regularisation=0.0,
          weight_decay=0.0, max_time=None, seed=0, progress=False, log=None):
    """Train ``net`` in place; returns a JSON-ready summary (epochs, best validation RMSE,
    seconds, stop reason, per-epoch history). Without validation frames the training RMSE of
    the epoch is used for the schedule and early stopping."""
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                 amsgrad=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, factor=0.5, patience=max(1, patience // 3), min_lr=learning_rate * 1e-3)
    best = (math.inf, copy.deepcopy(net.state_dict()), 0)
    history, stop, start = [], "max_epochs", time.perf_counter()
    bar = tqdm(range(1, max_epochs + 1), desc="fit: epochs",
               disable=None if progress else True)  # no bar when stderr is not a terminal
    epoch = 0
    for epoch in bar:
        net.train()
        order = rng.permutation(len(train_graphs))
        total, count = 0.0, 0
        for b in range(0, len(order), batch_size):
            batch = collate([train_graphs[k] for k in order[b:b + batch_size]])
            optimiser.zero_grad(set_to_none=True)
            loss, sq, n = batch_loss(net, batch, fixed_charges, charge_regularisation)
            loss.backward()
            optimiser.step()
            total, count = total + sq, count + n
        train_rmse = math.sqrt(total / count)
        net.eval()
        val_rmse = rmse(net, val_graphs, fixed_charges, batch_size) if val_graphs else train_rmse
        scheduler.step(val_rmse)
        lr = optimiser.param_groups[0]["lr"]
        history.append({"epoch": epoch, "train_rmse": train_rmse, "val_rmse": val_rmse,
                        "lr": lr})
        if val_rmse < best[0]:
            best = (val_rmse, copy.deepcopy(net.state_dict()), epoch)
        bar.set_postfix(train=f"{train_rmse:.4f}", val=f"{val_rmse:.4f}", lr=f"{lr:.1e}")
        if log is not None:
            log(f"epoch {epoch}: train RMSE {train_rmse:.5f} e, validation RMSE "
                f"{val_rmse:.5f} e, lr {lr:.2e}")
        if epoch - best[2] >= patience:
            stop = "early_stopping"
            break
        if max_time is not None and time.perf_counter() - start > max_time:
            stop = "max_time"
            break
    net.load_state_dict(best[1])
    net.eval()
    return {"epochs": epoch, "best_epoch": best[2], "best_val_rmse": best[0],
            "stop_reason": stop, "seconds": time.perf_counter() - start, "history": history}
