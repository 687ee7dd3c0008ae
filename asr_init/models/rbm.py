"""Restricted Boltzmann machines trained with contrastive divergence (CD-k).

The weights are kept transposed, Wt of shape (n_visible, n_hidden): on the CPU the
products v Wt and V^T H then run at the best speed of the BLAS. `W` is the
(n_hidden, n_visible) view that nn.Linear uses, and checkpoints store W, so a trained
layer drops straight into the DNN. Visible units are Gaussian with unit variance
("gauss": mean-field linear reconstruction, for N(0, 1) inputs) or Bernoulli; hidden
units are Bernoulli. Hidden states are sampled for the reconstruction, probabilities are
used for the statistics (Hinton 2010, "A practical guide to training RBMs").

The update follows Kaldi's nnet1 `Rbm::Update`: with lr' = lr * (1 - momentum),

    dW <- momentum * dW + lr'/B * (h0^T v0 - hk^T vk) - lr' * l2 * W;   W <- W + dW

and the same for the biases (no L2). Weights and biases share one block (see `RBM`), so
the products add the biases and one product [v0 1; vk 1]^T [h0 1; -hk -1] gives all
three gradients; the textbook form is checked against it in the tests.

Hidden states are sampled against uniforms from a `UniformSource`: on the CPU, 16-bit
uniforms cut from the 64-bit words of numpy's PCG64 (0.2 ms for 256x1024 against 1.0 ms
for torch.rand's Mersenne twister); on a GPU, torch's generator. A resolution of 2^-16
biases a sample's probability by less than 1.6e-5.

Two guards keep training in a useful region. The Gaussian guard is Kaldi's: a
reconstruction whose spread runs away gets the weights scaled back. The saturation guard
is this project's counterpart for the hidden units, the idea of the initialisation kept
up during training: when more than `sat_limit` of the hidden probabilities of a
mini-batch lie within 0.05 of 0 or 1 (|net| > 2.94, where CD's gradient h0 - hk vanishes
and a unit stops learning), the update is skipped, the weights and hidden biases are
scaled so that the root-mean-square net input is D* again, and the momentum is reset; the
caller lowers the learning rate. Why it is needed: the input of a layer above the first
is a vector of sigmoid outputs with mean ~0.5, not N(0, 1). One CD update moves a hidden
unit's net input along that mean direction by about lr (1 - momentum) sum_i E[v_i^2]
(h0 - hk): with 1024 inputs sum_i E[v_i^2] is ~320, and at Kaldi's lr 0.4 every unit is
pushed past |net| = 3 within ten mini-batches, after which h0 = hk and it never returns.
`cd_step_reference` is the same update written one formula per line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from asr_init.models.config import VISIBLE_TYPES
from asr_init.models.optimal_spread import optimal_d

SATURATION_MARGIN = 0.05  # a probability within this of 0 or 1 is saturated (|net| > 2.944)

# What a guard firing does to the learning rate: Kaldi lowers it by 0.9 after a rescale of a
# Gaussian layer; a saturated layer needs a real cut (0.4 -> 0.05 takes three firings).
GUARD_LR_FACTOR = {"recon_std": 0.9, "saturation": 0.5}


class UniformSource:
    """Seeded uniforms in [0, 1) for Bernoulli sampling, with a saveable state."""

    def __init__(self, seed: int, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        if self.device.type == "cpu":
            self._rng = np.random.Generator(np.random.PCG64(seed))
        else:
            self._gen = torch.Generator(device=self.device).manual_seed(seed)

    def fill_(self, out: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            # random_raw: the bit generator's 64-bit words straight into an array, cut into
            # four 16-bit integers each (Generator.bytes goes through bounded integers, 3x slower).
            words = self._rng.bit_generator.random_raw(-(-out.numel() // 4))
            raw = words.view(np.uint16)[: out.numel()].reshape(out.shape)
            np.multiply(raw, np.float32(1.0 / 65536.0), out=out.numpy(), casting="unsafe")
            return out
        return out.uniform_(generator=self._gen)

    def state_dict(self):
        return self._rng.bit_generator.state if self.device.type == "cpu" else self._gen.get_state()

    def load_state_dict(self, state) -> None:
        if self.device.type == "cpu":
            self._rng.bit_generator.state = state
        else:
            self._gen.set_state(state)


@dataclass
class StepResult:
    """One CD update: squared reconstruction error summed over the batch, and guard info."""

    error_sum: torch.Tensor  # scalar tensor, sum over frames of sum_i (v_i - v^_i)^2
    saturated: torch.Tensor | None = None  # scalar tensor, share of saturated h0 (when watched)
    skipped: bool = False  # a guard rejected the update
    guard_scale: float = 1.0
    guard: str = ""  # which guard: "recon_std" (Gaussian) or "saturation"


@dataclass
class BatchPart:
    """This process's share of a global mini-batch split over several processes: its rows
    are [start, start + B_r) of `size`, and `all_reduce_` sums a tensor over the processes
    in place (`Dist.all_reduce_`)."""

    start: int
    size: int
    all_reduce_: Callable[[torch.Tensor], torch.Tensor]


def _row_length(n: int) -> int:
    """Row length for an n-column buffer: a multiple of 16 floats, so every row starts on a
    64-byte boundary (odd row lengths cost the BLAS ~10 % at these shapes)."""
    return -(-n // 16) * 16


class _Work:
    """Preallocated buffers of a CD step for one batch size B, each with the constant
    column last, and the views the step uses (made once: a view costs microseconds):
    V = [v0 1; vk 1] (2B, n_visible + 1), H = [h0 .; hk .] (2B, n_hidden + 1) in rows of
    aligned length, hs = [samples 1] (B, n_hidden + 1), diff = vk - v0."""

    def __init__(self, batch: int, nv: int, nh: int, device, dtype):
        kw = {"device": device, "dtype": dtype}
        self.batch = batch
        self.V = torch.empty(2 * batch, nv + 1, **kw)
        self.V[:, nv] = 1
        self.H = torch.empty(2 * batch, _row_length(nh + 1), **kw)[:, : nh + 1]
        self.hs = torch.empty(batch, _row_length(nh + 1), **kw)[:, : nh + 1]
        self.hs[:, nh] = 1
        self.diff = torch.empty(batch, nv + 1, **kw)
        self.V_t, self.rows, self.diff_flat = self.V.T, self.V.view(2, -1), self.diff.view(-1)
        self.v0, self.vk, self.v0_units, self.vk_const = (
            self.V[:batch],
            self.V[batch:],
            self.V[:batch, :nv],
            self.V[batch:, nv],
        )
        self.h0, self.hk, self.H_const = self.H[:batch], self.H[batch:], self.H[:, nh]
        self.h0_units, self.hk_units, self.hs_units = self.h0[:, :nh], self.hk[:, :nh], self.hs[:, :nh]


class RBM:
    """An RBM with its momentum buffers; all tensors live on one device.

    The parameters live in one block, theta = [[Wt, vb], [hb, 0]] of shape
    (n_visible + 1, n_hidden + 1), and `Wt`, `hb`, `vb` are views into it. With a constant
    1 appended to each visible and hidden vector, the matrix products add the biases, and
    the gradient product [v0 1; vk 1]^T [h0 1; -hk -1] yields the weight and both bias
    gradients at once: a CD-1 step is four BLAS calls plus element-wise work. (The corner
    of the block multiplies only the constant columns, which are reset after each product.)
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        visible: str = "gauss",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if visible not in VISIBLE_TYPES:
            raise ValueError(f"unknown visible type {visible!r}; valid: {', '.join(VISIBLE_TYPES)}")
        self.visible = visible
        kw = {"device": device, "dtype": dtype}
        self._theta = torch.zeros(n_visible + 1, _row_length(n_hidden + 1), **kw)
        self._dtheta = torch.zeros_like(self._theta)
        self.theta = self._theta[:, : n_hidden + 1]
        self.dtheta = self._dtheta[:, : n_hidden + 1]
        self.Wt, self.vb, self.hb = self.theta[:-1, :-1], self.theta[:-1, -1], self.theta[-1, :-1]
        self.dWt, self.dvb, self.dhb = self.dtheta[:-1, :-1], self.dtheta[:-1, -1], self.dtheta[-1, :-1]
        self._theta_t = self.theta.T
        self._buffers: _Work | None = None
        self._global_uniforms: torch.Tensor | None = None  # (global batch, n_hidden), see _cd_step_part
        self._stats: torch.Tensor | None = None

    @property
    def W(self) -> torch.Tensor:
        """(n_hidden, n_visible) view of the weights, as nn.Linear stores them."""
        return self.Wt.T

    @property
    def n_visible(self) -> int:
        return self.Wt.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.Wt.shape[1]

    # --- the model -------------------------------------------------------------------

    def _mean_hiddens(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v) = sigmoid(v Wt + c): (B, n_visible) -> (B, n_hidden)."""
        return torch.addmm(self.hb, v, self.Wt).sigmoid_()

    def _mean_visibles(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: h Wt^T + b for Gaussian units (unit variance), sigmoid of it for Bernoulli."""
        v = torch.addmm(self.vb, h, self.Wt.T)
        return v.sigmoid_() if self.visible == "bernoulli" else v

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per frame: Gaussian 0.5||v - b||^2, Bernoulli -b.v; minus sum softplus(c + v Wt)."""
        hidden_term = torch.nn.functional.softplus(torch.addmm(self.hb, v, self.Wt)).sum(1)
        if self.visible == "gauss":
            return 0.5 * (v - self.vb).pow(2).sum(1) - hidden_term
        return -(v @ self.vb) - hidden_term

    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """Mean-field reconstruction through the hidden probabilities (for evaluation)."""
        return self._mean_visibles(self._mean_hiddens(v))

    # --- training --------------------------------------------------------------------

    def _work(self, batch: int) -> _Work:
        if self._buffers is None or self._buffers.batch != batch:
            self._buffers = _Work(batch, self.n_visible, self.n_hidden, self.theta.device, self.theta.dtype)
        return self._buffers

    def cd_step(
        self,
        v0: torch.Tensor,
        lr: float,
        momentum: float,
        l2: float,
        uniforms: UniformSource,
        k: int = 1,
        guard: bool = True,
        sat_limit: float = 0.0,
        part: BatchPart | None = None,
    ) -> StepResult:
        """One CD-k mini-batch update on v0 (B, n_visible); returns the reconstruction error.

        Gaussian guard (Kaldi, `guard`): if the reconstruction's std exceeds twice the
        data's, the update is skipped and the parameters are scaled by std(v0)/std(vk).
        Saturation guard (`sat_limit` > 0): if more than that share of p(h0 = 1) is
        saturated, the update is skipped and the weights and hidden biases are scaled so
        that the rms net input is D*. Either way the momentum buffers are reset and the
        caller lowers the learning rate. The saturated share is returned whenever
        `sat_limit` > 0.

        With `part`, v0 is this process's rows of a global mini-batch (see
        `_cd_step_part`): the update, the guards' decisions and the returned error are
        those of the global batch.
        """
        if part is not None:
            return self._cd_step_part(v0, lr, momentum, l2, uniforms, k, guard, sat_limit, part)
        w, theta, theta_t = self._work(v0.shape[0]), self.theta, self._theta_t
        w.v0_units.copy_(v0)
        torch.mm(w.v0, theta, out=w.h0).sigmoid_()  # last column: junk, overwritten below
        p = w.h0_units
        saturated = None
        if sat_limit > 0:  # |p - 1/2| > 1/2 - margin, counted in the sample buffer before it is filled
            torch.sub(p, 0.5, out=w.hs_units).abs_().gt_(0.5 - SATURATION_MARGIN)
            saturated = w.hs_units.sum() / p.numel()
        for _ in range(k):
            uniforms.fill_(w.hs_units).lt_(p)  # in place: 1.0 where u < p
            torch.mm(w.hs, theta_t, out=w.vk)
            if self.visible == "bernoulli":
                w.vk.sigmoid_()
            w.vk_const.fill_(1)
            torch.mm(w.vk, theta, out=w.hk).sigmoid_()
            p = w.hk_units
        # Squared error as one dot product (the constant columns cancel); the guard's
        # standard deviations from the Gram matrix and row sums of [v0; vk], one sync.
        torch.sub(w.vk, w.v0, out=w.diff)
        error_sum = torch.dot(w.diff_flat, w.diff_flat)
        if guard and self.visible == "gauss":
            X, B = w.rows, w.batch
            gram_sums = torch.cat([torch.mm(X, X.T).diagonal(), X.sum(1)]).double().tolist()
            pos_std, neg_std = (
                _std_from_sums(gram_sums[2 + i] - B, gram_sums[i] - B, B * self.n_visible) for i in (0, 1)
            )
            if neg_std > 2 * pos_std:
                scale = pos_std / neg_std
                theta.mul_(scale)
                self.dtheta.zero_()
                return StepResult(error_sum, saturated, skipped=True, guard_scale=scale, guard="recon_std")
        if saturated is not None and float(saturated) > sat_limit:
            rms = float(self._net_input(w).pow(2).mean().sqrt())
            scale = min(1.0, optimal_d("sigmoid") / rms) if rms > 0 else 1.0
            self.Wt.mul_(scale)
            self.hb.mul_(scale)
            self.dtheta.zero_()
            return StepResult(error_sum, saturated, skipped=True, guard_scale=scale, guard="saturation")
        step_lr = lr * (1.0 - momentum) / w.batch
        # dtheta <- m dtheta + step [v0 1; vk 1]^T [h0 1; -hk -1]: positive minus negative
        # statistics of weights and both biases in one BLAS call.
        w.H_const.fill_(1)
        w.hk.neg_()
        torch.addmm(self.dtheta, w.V_t, w.H, beta=momentum, alpha=step_lr, out=self.dtheta)
        if l2:
            self.dWt.add_(self.Wt, alpha=-step_lr * w.batch * l2)
        theta.add_(self.dtheta)
        return StepResult(error_sum, saturated)

    def _cd_step_part(
        self,
        v0: torch.Tensor,
        lr: float,
        momentum: float,
        l2: float,
        uniforms: UniformSource,
        k: int,
        guard: bool,
        sat_limit: float,
        part: BatchPart,
    ) -> StepResult:
        """`cd_step` on rows [start, start + B_r) of a global batch of B rows split over processes.

        The chain runs on this process's rows with the uniforms one process would use for
        them: every process draws the whole batch's (cheap beside the products) and takes
        its rows. Then the local statistics (the gradient product [v0 1; vk 1]^T [h0 1; -hk -1],
        the squared error, the saturated count, the guard's sums of v and v^2, the row count)
        are summed over the processes in one call; the guards decide on the sums and the
        update divides by B. Every process makes the same update, so the parameters stay
        equal, and they equal one process's to rounding (the products are summed in parts).
        """
        w, theta, theta_t = self._work(v0.shape[0]), self.theta, self._theta_t
        nv, nh = self.n_visible, self.n_hidden
        stats = self._part_stats()
        grad, extra = stats[: (nv + 1) * (nh + 1)].view(nv + 1, nh + 1), stats[(nv + 1) * (nh + 1) :]
        w.v0_units.copy_(v0)
        torch.mm(w.v0, theta, out=w.h0).sigmoid_()
        p = w.h0_units
        extra[1] = 0
        if sat_limit > 0:
            torch.sub(p, 0.5, out=w.hs_units).abs_().gt_(0.5 - SATURATION_MARGIN)
            extra[1] = w.hs_units.sum()
        batch_uniforms = self._batch_uniforms(part.size)
        mine = batch_uniforms[part.start : part.start + w.batch]
        for _ in range(k):
            uniforms.fill_(batch_uniforms)
            w.hs_units.copy_(mine).lt_(p)
            torch.mm(w.hs, theta_t, out=w.vk)
            if self.visible == "bernoulli":
                w.vk.sigmoid_()
            w.vk_const.fill_(1)
            torch.mm(w.vk, theta, out=w.hk).sigmoid_()
            p = w.hk_units
        torch.sub(w.vk, w.v0, out=w.diff)
        extra[0] = torch.dot(w.diff_flat, w.diff_flat)
        X = w.rows  # [v0 1] and [vk 1] flattened: their sums of squares and sums
        extra[2:4] = torch.mm(X, X.T).diagonal()
        extra[4:6] = X.sum(1)
        extra[6] = w.batch
        w.H_const.fill_(1)
        w.hk.neg_()
        torch.mm(w.V_t, w.H, out=grad)
        part.all_reduce_(stats)
        error_sum = extra[0].clone()
        sat_count, sq0, sqk, sum0, sumk, rows = extra[1:].double().tolist()  # one sync
        B = round(rows)
        saturated = torch.tensor(sat_count / (B * nh)) if sat_limit > 0 else None
        if guard and self.visible == "gauss":
            pos_std = _std_from_sums(sum0 - B, sq0 - B, B * nv)
            neg_std = _std_from_sums(sumk - B, sqk - B, B * nv)
            if neg_std > 2 * pos_std:
                scale = pos_std / neg_std
                theta.mul_(scale)
                self.dtheta.zero_()
                return StepResult(error_sum, saturated, skipped=True, guard_scale=scale, guard="recon_std")
        if saturated is not None and float(saturated) > sat_limit:
            squares = part.all_reduce_(self._net_input(w).pow(2).sum(dtype=torch.float64).reshape(1))
            rms = math.sqrt(float(squares) / (B * nh))
            scale = min(1.0, optimal_d("sigmoid") / rms) if rms > 0 else 1.0
            self.Wt.mul_(scale)
            self.hb.mul_(scale)
            self.dtheta.zero_()
            return StepResult(error_sum, saturated, skipped=True, guard_scale=scale, guard="saturation")
        step_lr = lr * (1.0 - momentum) / B
        self.dtheta.mul_(momentum).add_(grad, alpha=step_lr)
        if l2:
            self.dWt.add_(self.Wt, alpha=-step_lr * B * l2)
        theta.add_(self.dtheta)
        return StepResult(error_sum, saturated)

    def _net_input(self, w: _Work) -> torch.Tensor:
        """The hidden net inputs [v0 1] theta of the batch in `w`, computed into the sample
        buffer (free once the update is skipped) as the product the step started with:
        `DeviceCD` takes the same numbers before its sigmoid."""
        torch.mm(w.v0, self.theta, out=w.hs)
        net = w.hs_units.clone()
        w.hs[:, self.n_hidden] = 1
        return net

    def _batch_uniforms(self, size: int) -> torch.Tensor:
        """A (size, n_hidden) buffer laid out as one process's sample buffer (rows of aligned
        length), so that a generator fills it with the numbers it gives that buffer."""
        if self._global_uniforms is None or self._global_uniforms.shape[0] != size:
            kw = {"device": self.theta.device, "dtype": self.theta.dtype}
            self._global_uniforms = torch.empty(size, _row_length(self.n_hidden + 1), **kw)[:, : self.n_hidden]
        return self._global_uniforms

    def _part_stats(self) -> torch.Tensor:
        """The flat buffer that `_cd_step_part` sums over the processes: the gradient
        product ((n_visible + 1) x (n_hidden + 1)), then 7 numbers."""
        if self._stats is None:
            n = (self.n_visible + 1) * (self.n_hidden + 1) + 7
            self._stats = torch.empty(n, device=self.theta.device, dtype=self.theta.dtype)
        return self._stats

    def init_visible_bias_from_data(self, mean_input: torch.Tensor, clip: float = 1e-3) -> None:
        """Bernoulli visible biases = logit(mean input), clipped to [clip, 1 - clip]."""
        p = mean_input.clamp(clip, 1 - clip).to(self.vb)
        self.vb.copy_(torch.log(p / (1 - p)))

    def is_finite(self) -> bool:
        """No NaN or Inf in the parameters: one sum over the block (NaN and Inf propagate
        through a sum; it can also overflow, but only for weights that have exploded)."""
        return bool(torch.isfinite(self._theta.sum()))

    # --- persistence -----------------------------------------------------------------

    def state_dict(self) -> dict:
        """Weights as W (n_hidden, n_visible), momentum buffers likewise; compact copies."""

        def own(t: torch.Tensor) -> torch.Tensor:
            return t.detach().cpu().contiguous().clone()

        return {
            "visible": self.visible,
            "W": own(self.W),
            "hb": own(self.hb),
            "vb": own(self.vb),
            "dW": own(self.dWt.T),
            "dhb": own(self.dhb),
            "dvb": own(self.dvb),
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: str | torch.device = "cpu") -> RBM:
        rbm = cls(state["W"].shape[1], state["W"].shape[0], state["visible"], device)
        rbm.Wt.copy_(state["W"].T)
        rbm.dWt.copy_(state["dW"].T)
        for name in ("hb", "vb", "dhb", "dvb"):
            getattr(rbm, name).copy_(state[name])
        return rbm


def cd_step_reference(
    W: torch.Tensor,
    hb: torch.Tensor,
    vb: torch.Tensor,
    dW: torch.Tensor,
    dhb: torch.Tensor,
    dvb: torch.Tensor,
    v0: torch.Tensor,
    lr: float,
    momentum: float,
    l2: float,
    uniforms: UniformSource,
    k: int = 1,
    visible: str = "bernoulli",
):
    """Textbook CD-k (Hinton's guide; Kaldi nnet1's `Rbm::Update`), one formula per line.

    W is (n_hidden, n_visible), v0 (B, n_visible). The readable twin of `RBM.cd_step`
    without guards; the tests hold the fast step against it. Returns the new
    (W, hb, vb, dW, dhb, dvb) and the summed squared reconstruction error.
    """
    h0 = torch.sigmoid(v0 @ W.T + hb)  # p(h = 1 | v0), the positive statistics
    p = h0
    for _ in range(k):
        hs = (uniforms.fill_(torch.empty_like(p)) < p).float()  # sampled binary hidden states
        vk = hs @ W + vb  # E[v | h]: Gaussian units, unit variance
        if visible == "bernoulli":
            vk = torch.sigmoid(vk)
        hk = torch.sigmoid(vk @ W.T + hb)  # negative statistics from probabilities
        p = hk
    B, step = len(v0), lr * (1 - momentum)  # Kaldi: lr' = lr (1 - momentum), gradient / B
    dW = momentum * dW + step * ((h0.T @ v0 - hk.T @ vk) / B - l2 * W)
    dhb = momentum * dhb + step * (h0 - hk).sum(0) / B
    dvb = momentum * dvb + step * (v0 - vk).sum(0) / B
    return W + dW, hb + dhb, vb + dvb, dW, dhb, dvb, float(((v0 - vk) ** 2).sum())


def _std_from_sums(total: float, squares: float, n: int) -> float:
    """Standard deviation (n - 1) of n numbers from their sum and sum of squares."""
    return math.sqrt(max(squares - total * total / n, 0.0) / max(n - 1, 1))


def cd1_flops_per_frame(n_visible: int, n_hidden: int) -> float:
    """Multiply-adds x 2 of CD-1 per frame: v0W^T, h0W, v1W^T and the gradient product (2 x)."""
    return 10.0 * n_visible * n_hidden


def log_likelihood_gradient(rbm: RBM, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact d log p(data) / d(W, hb, vb) of a tiny Bernoulli-Bernoulli RBM by enumeration.

    Enumerates all 2^(n_visible) visible vectors; for checking CD on small models only.
    """
    nv = rbm.n_visible
    if rbm.visible != "bernoulli" or nv > 16:
        raise ValueError("exact gradients only for Bernoulli RBMs with at most 16 visible units")
    W, hb, vb = rbm.W.double(), rbm.hb.double(), rbm.vb.double()
    states = torch.tensor([[(i >> j) & 1 for j in range(nv)] for i in range(2**nv)], dtype=torch.float64)
    free = -(states @ vb) - torch.nn.functional.softplus(states @ W.T + hb).sum(1)
    p_model = torch.softmax(-free, 0)
    h_model = torch.sigmoid(states @ W.T + hb)
    d = data.double()
    h_data = torch.sigmoid(d @ W.T + hb)
    gW = h_data.T @ d / len(d) - (h_model * p_model[:, None]).T @ states
    ghb = h_data.mean(0) - (h_model * p_model[:, None]).sum(0)
    gvb = d.mean(0) - (states * p_model[:, None]).sum(0)
    return gW, ghb, gvb
