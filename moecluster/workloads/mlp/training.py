"""The seed's synthetic, learnable classification task, and its training loop (`--train-epochs`).

Each of the output classes owns a group of input features; the label is the arg-max of
tanh(group · weights) plus a small sigmoid interaction term and noise. Reimplemented from
the seed's description so trained models see the same kind of data, not copied code.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def synthetic_classification(num_samples: int, input_dim: int, output_dim: int,
                             generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(X [n, input_dim], y [n]) with a label that a small MLP can learn."""
    x = torch.randn(num_samples, input_dim, generator=generator)
    group = input_dim // output_dim
    widest = group + input_dim % output_dim
    group_w = torch.randn(output_dim, widest, generator=generator)
    interaction = torch.randn(input_dim, output_dim, generator=generator) * 0.1
    scores = torch.empty(num_samples, output_dim)
    mixed = torch.sigmoid(x @ interaction) * 0.5
    for j in range(output_dim):
        lo, hi = j * group, (j + 1) * group if j < output_dim - 1 else input_dim
        scores[:, j] = torch.tanh(x[:, lo:hi] @ group_w[j, : hi - lo]) + mixed[:, j]
    scores += torch.randn(scores.shape, generator=generator) * 0.2
    return x, scores.argmax(dim=1)


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, batch_size: int = 128,
          lr: float = 1e-3, generator: torch.Generator) -> list[float]:
    """Adam + cross-entropy for `epochs` epochs, as the seed does; returns the accuracy per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    accuracy = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            batch = perm[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            out = model(x[batch])
            loss = loss_fn(out.float(), y[batch])
            loss.backward()
            opt.step()
            correct += int((out.argmax(dim=1) == y[batch]).sum())
        accuracy.append(correct / x.shape[0])
    model.eval()
    return accuracy
