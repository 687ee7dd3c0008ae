"""Restricted Boltzmann machines trained with contrastive divergence (CD-k).

Visible units are Gaussian with unit variance ("gauss": mean-field linear reconstruction,
for N(0, 1) inputs) or Bernoulli; hidden units are Bernoulli. Hidden states are sampled for
the reconstruction, probabilities are used for the statistics (Hinton 2010, "A practical
guide to training RBMs"). The update is Kaldi nnet1's `Rbm::Update`: with lr' = lr (1 - momentum),

    dW <- momentum dW + lr'/B (h0^T v0 - hk^T vk) - lr' l2 W;   W <- W + dW

and the same for the biases (no L2). `cd_step_reference` writes it one formula per line;
`ContrastiveDivergence` is the step training runs, held against it in the tests.

Two guards keep training in a useful region. The Gaussian guard is Kaldi's: a
reconstruction whose spread is over twice the data's gets the parameters scaled back. The
saturation guard is this project's counterpart for the hidden units, the idea of the
initialisation kept up during training: when more than `sat_limit` of a batch's hidden
probabilities lie within 0.05 of 0 or 1 (|net| > 2.94, where h0 = hk and CD stops
learning), the weights and hidden biases are scaled so that the rms net input is D* again.
Either guard skips the update, resets the momentum and cuts the learning rate.

A step whose weights went NaN or infinite makes the next step's reconstruction error
non-finite (the reconstruction goes through them), so the error alone is checked per step;
`RBM.is_finite` checks the weights before a checkpoint is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from asr_init.models.config import VISIBLE_TYPES
from asr_init.models.optimal_spread import optimal_d

SATURATION_MARGIN = 0.05  # a probability within this of 0 or 1 is saturated (|net| > 2.944)
GUARDS = ("", "recon_std", "saturation")  # by code: 0 none, 1 Gaussian, 2 saturation
# The learning rate after a firing: Kaldi lowers it by 0.9 after a rescale of a Gaussian layer;
# a saturated layer needs a real cut (0.4 -> 0.05 takes three firings).
GUARD_LR_FACTOR = {"recon_std": 0.9, "saturation": 0.5}


class UniformSource:
    """Seeded uniforms in [0, 1) for Bernoulli sampling, with a state a checkpoint can hold.

    On the CPU, 16-bit uniforms cut from the 64-bit words of numpy's PCG64 (a resolution of
    2^-16 biases a sample's probability by less than 1.6e-5); on a GPU, torch's generator.
    The state names its generator: a run resumed on the other kind of device goes on with
    that device's generator, seeded from (seed, draws so far), so that it is still determined
    by the checkpoint."""

    def __init__(self, seed: int, device: str | torch.device = "cpu", draws: int = 0):
        self.device, self.seed, self.draws = torch.device(device), seed, draws
        self.kind = "pcg64" if self.device.type == "cpu" else "torch"
        key = seed if not draws else int(np.random.SeedSequence([seed, draws]).generate_state(1)[0])
        if self.kind == "pcg64":
            self._rng = np.random.Generator(np.random.PCG64(key))
        else:
            self._gen = torch.Generator(device=self.device).manual_seed(key)

    def fill_(self, out: torch.Tensor) -> torch.Tensor:
        self.draws += 1
        if self.kind == "torch":
            return out.uniform_(generator=self._gen)
        # random_raw: the bit generator's 64-bit words straight into an array, four 16-bit integers each.
        words = self._rng.bit_generator.random_raw(-(-out.numel() // 4))
        raw = words.view(np.uint16)[: out.numel()].reshape(out.shape)
        np.multiply(raw, np.float32(1.0 / 65536.0), out=out.numpy(), casting="unsafe")
        return out

    def state_dict(self) -> dict:
        native = self._rng.bit_generator.state if self.kind == "pcg64" else self._gen.get_state()
        return {"kind": self.kind, "seed": self.seed, "draws": self.draws, "state": native}

    @classmethod
    def from_state_dict(cls, state: dict, device: str | torch.device = "cpu") -> UniformSource:
        source = cls(state["seed"], device)
        if state["kind"] != source.kind:  # resumed on the other kind of device
            return cls(state["seed"], device, draws=state["draws"])
        source.draws = state["draws"]
        if source.kind == "pcg64":
            source._rng.bit_generator.state = state["state"]
        else:
            source._gen.set_state(state["state"])
        return source


def _row_length(n: int) -> int:
    """Row length for an n-column buffer: a multiple of 16 floats, so every row starts on a 64-byte boundary."""
    return -(-n // 16) * 16


class RBM:
    """An RBM's parameters and momentum buffers; all tensors live on one device.

    The parameters live in one block, theta = [[Wt, vb], [hb, 0]] of shape (n_visible + 1,
    n_hidden + 1), with Wt (n_visible, n_hidden) the transposed weights (the products v Wt and
    V^T H then run at the BLAS's best speed) and `hb`, `vb` views into it. With a constant 1
    appended to each visible and hidden vector the products add the biases, and the gradient
    product [v0 1; vk 1]^T [h0 1; -hk -1] gives the weight and both bias gradients at once.
    `W` is the (n_hidden, n_visible) view nn.Linear uses; checkpoints store W.
    """

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "gauss", device="cpu"):
        if visible not in VISIBLE_TYPES:
            raise ValueError(f"unknown visible type {visible!r}; valid: {', '.join(VISIBLE_TYPES)}")
        self.visible = visible
        self._theta = torch.zeros(n_visible + 1, _row_length(n_hidden + 1), device=device)
        self._dtheta = torch.zeros_like(self._theta)
        self.theta, self.dtheta = self._theta[:, : n_hidden + 1], self._dtheta[:, : n_hidden + 1]
        self.Wt, self.vb, self.hb = self.theta[:-1, :-1], self.theta[:-1, -1], self.theta[-1, :-1]
        self.dWt, self.dvb, self.dhb = self.dtheta[:-1, :-1], self.dtheta[:-1, -1], self.dtheta[-1, :-1]

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

    def init_visible_bias_from_data(self, mean_input: torch.Tensor, clip: float = 1e-3) -> None:
        """Bernoulli visible biases = logit(mean input), clipped to [clip, 1 - clip]."""
        p = mean_input.clamp(clip, 1 - clip).to(self.vb)
        self.vb.copy_(torch.log(p / (1 - p)))

    def is_finite(self) -> bool:
        """No NaN or Inf in the parameters (one sum over the block)."""
        return bool(torch.isfinite(self._theta.sum()))

    def state_dict(self) -> dict:
        """Weights as W (n_hidden, n_visible), momentum buffers likewise; compact copies."""
        names = {"W": self.W, "hb": self.hb, "vb": self.vb, "dW": self.dWt.T, "dhb": self.dhb, "dvb": self.dvb}
        return {"visible": self.visible} | {name: t.detach().cpu().contiguous().clone() for name, t in names.items()}

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu") -> RBM:
        rbm = cls(state["W"].shape[1], state["W"].shape[0], state["visible"], device)
        rbm.Wt.copy_(state["W"].T)
        rbm.dWt.copy_(state["dW"].T)
        for name in ("hb", "vb", "dhb", "dvb"):
            getattr(rbm, name).copy_(state[name])
        return rbm


@dataclass
class BatchPart:
    """This process's rows [start, start + B_r) of a global batch of `size` rows, and the sum
    over the processes (`Dist.all_reduce_`; None for a process that holds the whole batch)."""

    start: int
    size: int
    all_reduce_: Callable[[torch.Tensor], torch.Tensor] | None = None


class _Work:
    """Preallocated buffers of a CD step for B rows, each with the constant column last, and
    the views the step uses (made once: a view costs microseconds): V = [v0 1; vk 1]
    (2B, n_visible + 1), H = [h0 .; hk .] (2B, n_hidden + 1) in rows of aligned length,
    hs = [samples 1] (B, n_hidden + 1), diff = vk - v0; uniforms u (k, global batch, n_hidden)."""

    def __init__(self, batch: int, size: int, k: int, nv: int, nh: int, device):
        self.batch = batch
        self.V = torch.empty(2 * batch, nv + 1, device=device)
        self.V[:, nv] = 1
        self.H = torch.empty(2 * batch, _row_length(nh + 1), device=device)[:, : nh + 1]
        self.hs = torch.empty(batch, _row_length(nh + 1), device=device)[:, : nh + 1]
        self.hs[:, nh] = 1
        self.diff = torch.empty(batch, nv + 1, device=device)
        self.u = torch.empty(k, size, nh, device=device)
        self.V_t, self.rows, self.diff_flat = self.V.T, self.V.view(2, -1), self.diff.view(-1)
        self.v0, self.vk = self.V[:batch], self.V[batch:]
        self.v0_units, self.vk_const = self.V[:batch, :nv], self.V[batch:, nv]
        self.h0, self.hk, self.H_const = self.H[:batch], self.H[batch:], self.H[:, nh]
        self.h0_units, self.hk_units, self.hs_units = self.h0[:, :nh], self.hk[:, :nh], self.hs[:, :nh]


class _HostMath:
    """The tensor functions `_decide` uses, on Python floats: the same formulas as on the
    device, in the same float64 arithmetic, when the host reads the sums every step."""

    where = staticmethod(lambda c, a, b: a if c else b)
    zeros_like = staticmethod(lambda x: 0.0)
    sqrt = staticmethod(math.sqrt)
    clamp = staticmethod(lambda x, min=-math.inf, max=math.inf: min if x < min else max if x > max else x)  # noqa: A006


# The statistics after the gradient product in the buffer summed over the processes.
_ERR, _SAT, _SQ0, _SQK, _SUM0, _SUMK, _NET2 = range(7)


@dataclass
class GuardEvent:
    """A guard firing: the step (0-based, since the last read) and what it did."""

    step: int
    guard: str
    scale: float
    saturated: float | None
    lr: float  # the learning rate after the cut


@dataclass
class CDReport:
    """The figures of the steps since the last read."""

    error_sum: float = 0.0  # summed squared reconstruction error
    saturated_sum: float = 0.0  # sum over steps of saturated share x batch rows (0 when not watched)
    steps: int = 0
    lr: float = 0.0  # the learning rate now
    bad_step: int | None = None  # the first step whose reconstruction error was not finite
    bad_error: float = 0.0
    events: list[GuardEvent] = field(default_factory=list)

    def lr_before(self, step: int, lr_at_read: float) -> float:
        """The learning rate `step` trained with: the rate at the last read cut by the firings before it."""
        for event in self.events:
            if event.step < step:
                lr_at_read *= GUARD_LR_FACTOR[event.guard]
        return lr_at_read


class ContrastiveDivergence:
    """CD-k updates of `rbm`, with the guards; one path for one or many processes and any device.

    A step computes this process's statistics, sums them over the processes (`part`; nothing to
    sum for one process), decides the guards on the sums (`_decide`) and updates. With
    `read_every` 1 (the CPU) the host reads the decision and the step's figures every step and
    applies the decision by a branch (one fused product for one process). With `read_every`
    N > 1 (a GPU) nothing is read: the decision is applied by masks, the rate is cut on the
    device, and each step's figures go into a log the host reads every N steps (`read`); the
    step of full batches can then be replayed as a CUDA graph made by `capture` (see
    cuda_graphs.capture_checked). With `bf16` the four products take bfloat16 inputs and
    accumulate in float32; parameters, momentum and update stay float32.
    """

    def __init__(self, rbm: RBM, uniforms: UniformSource, lr: float, batch: int, k: int = 1, l2: float = 0.0,
                 guard: bool = True, sat_limit: float = 0.0, bf16: bool = False, read_every: int = 1,
                 capture: Callable | None = None):  # fmt: skip
        self.rbm, self.uniforms, self.lr, self.batch, self.k, self.l2 = rbm, uniforms, lr, batch, k, l2
        self.guard, self.sat_limit, self.bf16 = guard and rbm.visible == "gauss", sat_limit, bf16
        self.read_every, self.capture, self._graph = read_every, capture, None
        device, nv, nh = rbm.theta.device, rbm.n_visible, rbm.n_hidden
        self.stats = torch.empty((nv + 1) * (nh + 1) + 7, device=device)  # gradient product, then _ERR ...
        self.grad, self.extra = self.stats[:-7].view(nv + 1, nh + 1), self.stats[-7:]
        self._work: dict[tuple[int, int], _Work] = {}
        self._rows: list[list[float]] = []  # host: the figures of each step since the last read
        f64 = {"dtype": torch.float64, "device": device}
        self.ctl = torch.tensor([lr, 0.0, 0.0], **f64)  # device: rate, momentum, steps since the last read
        self.log = torch.zeros(max(read_every, 1) + 1, 6, **f64)  # device: the figures of each step
        self._factors = torch.tensor([1.0] + [GUARD_LR_FACTOR[g] for g in GUARDS[1:]], **f64)
        self._d_star = optimal_d("sigmoid")
        self._lr_read = lr  # the rate at the last read

    # --- the step ---------------------------------------------------------------------

    def step(self, v0: torch.Tensor, momentum: float, part: BatchPart | None = None) -> None:
        """One CD-k update on v0 (B, n_visible): this process's rows of the global batch `part`
        (all of it by default). Every process makes the update of the global batch."""
        part = part or BatchPart(0, len(v0))
        w = self._buffers(len(v0), part.size)
        w.v0_units.copy_(v0)
        if self.read_every > 1 or part.all_reduce_ is not None:  # the whole batch's draws, on every process
            for i in range(self.k):
                self.uniforms.fill_(w.u[i])
        if self.read_every == 1:
            self._body(w, part, momentum)
            return
        self.ctl[1] = momentum
        if self.capture is not None and part.all_reduce_ is None and len(v0) == self.batch:
            if self._graph is None:
                self._graph = self.capture(lambda: self._body(w, part), self._state(), "the CD step") or False
            if self._graph:
                self._graph.replay()
                return
        self._body(w, part)

    def _body(self, w: _Work, part: BatchPart, momentum: float | None = None) -> None:
        """Statistics -> sum over the processes -> decision -> update. `momentum` given: the
        host decides (reads every step); None: everything stays on the device (graph-safe)."""
        rbm, nh = self.rbm, self.rbm.n_hidden
        mm, theta = self._products()
        self.extra.zero_()
        mm(w.v0, theta, w.h0)
        if self.sat_limit > 0:  # squared net inputs, before the sigmoid, for the rescale to D*
            self.extra[_NET2] = torch.linalg.vector_norm(w.h0_units, dtype=torch.float64) ** 2
        w.h0.sigmoid_()
        if self.sat_limit > 0:  # |p - 1/2| > 1/2 - margin, counted in the sample buffer before it is filled
            self.extra[_SAT] = torch.sub(w.h0_units, 0.5, out=w.hs_units).abs_().gt_(0.5 - SATURATION_MARGIN).sum()
        own = momentum is not None and part.all_reduce_ is None  # drawn in place, as the chain needs them
        self._gibbs(w, None if own else w.u[:, part.start : part.start + w.batch], mm, theta)
        torch.sub(w.vk, w.v0, out=w.diff)
        self.extra[_ERR] = torch.dot(w.diff_flat, w.diff_flat)
        if self.guard:  # sums of squares and sums of [v0 1] and [vk 1], for their standard deviations
            self.extra[_SQ0 : _SUMK + 1] = torch.cat([torch.mm(w.rows, w.rows.T).diagonal(), w.rows.sum(1)])
        w.H_const.fill_(1)
        w.hk.neg_()
        fused = momentum is not None and part.all_reduce_ is None and not self.bf16
        if not fused:
            mm(w.V_t, w.H, self.grad)
        if part.all_reduce_ is not None:
            part.all_reduce_(self.stats)
        if momentum is None:
            self._masked_update(self._decide(self.extra.double(), part.size, torch), part.size)
            return
        err, sat, code, scale, scale_vb = self._decide(self.extra.tolist(), part.size, _HostMath)
        if code == 0:
            step_lr = self.lr * (1.0 - momentum) / part.size
            if fused:  # dtheta <- m dtheta + lr' [v0 1; vk 1]^T [h0 1; -hk -1] in one BLAS call
                torch.addmm(rbm.dtheta, w.V_t, w.H, beta=momentum, alpha=step_lr, out=rbm.dtheta)
            else:
                rbm.dtheta.mul_(momentum).add_(self.grad, alpha=step_lr)
            if self.l2:
                rbm.dWt.add_(rbm.Wt, alpha=-step_lr * part.size * self.l2)
            rbm.theta.add_(rbm.dtheta)
        else:
            rbm.theta[:, :nh].mul_(scale)
            rbm.theta[:-1, nh].mul_(scale_vb)
            rbm.dtheta.zero_()
            self.lr *= GUARD_LR_FACTOR[GUARDS[int(code)]]
        self._rows.append([err, sat, code, scale, float(math.isfinite(err)), part.size])

    def _gibbs(self, w: _Work, u: torch.Tensor | None, mm, theta: torch.Tensor) -> None:
        """k Gibbs steps from p(h0): sampled hiddens (against the uniforms `u`, or ones drawn
        into the sample buffer), reconstruction vk, p(hk) into w."""
        p = w.h0_units
        for i in range(self.k):
            if u is None:
                self.uniforms.fill_(w.hs_units).lt_(p)
            else:
                torch.lt(u[i], p, out=w.hs_units)
            mm(w.hs, theta.T, w.vk)
            if self.rbm.visible == "bernoulli":
                w.vk.sigmoid_()
            w.vk_const.fill_(1)
            mm(w.vk, theta, w.hk).sigmoid_()
            p = w.hk_units

    def _decide(self, s, B: int, m) -> list:
        """[error, saturated share, guard code, scale of the weights and hidden biases, scale of
        the visible biases] from the summed statistics `s` of a B-row batch, in the arithmetic
        `m`: torch on the device, _HostMath on floats read by the host (the same formulas)."""
        nv, nh = self.rbm.n_visible, self.rbm.n_hidden
        err, sat = s[_ERR], s[_SAT] / (B * nh)
        code = m.zeros_like(err)
        scale = scale_vb = code + 1.0
        if self.guard:  # Kaldi's: the reconstruction's std over twice the data's (constant columns removed)
            n = B * nv
            pos = m.sqrt(m.clamp((s[_SQ0] - B) - (s[_SUM0] - B) * (s[_SUM0] - B) / n, min=0.0) / max(n - 1, 1))
            neg = m.sqrt(m.clamp((s[_SQK] - B) - (s[_SUMK] - B) * (s[_SUMK] - B) / n, min=0.0) / max(n - 1, 1))
            fires = neg > 2 * pos
            code = m.where(fires, 1.0, code)
            scale = scale_vb = m.where(fires, pos / m.clamp(neg, min=1e-300), 1.0)
        if self.sat_limit > 0:
            fires = (code == 0) & (sat > self.sat_limit)
            to_d_star = m.clamp(self._d_star / m.clamp(m.sqrt(s[_NET2] / (B * nh)), min=1e-300), max=1.0)
            code = m.where(fires, 2.0, code)
            scale = m.where(fires, to_d_star, scale)
        return [err, sat, code, scale, scale_vb]

    def _masked_update(self, decision: list, B: int) -> None:
        """The update with the decision left on the device: a guarded step's update and momentum
        are masked to 0, the scales are 1 where no guard fired, the rate is cut by a factor 1 or
        a guard's; the step's figures go into the log (graph-safe: no reads, no branches)."""
        rbm, ctl, nh = self.rbm, self.ctl, self.rbm.n_hidden
        err, sat, code, scale, scale_vb = decision
        step_lr = (ctl[0] * (1.0 - ctl[1]) / B).float()
        rbm.dtheta.mul_(ctl[1].float()).addcmul_(self.grad, step_lr)
        if self.l2:
            rbm.dWt.addcmul_(rbm.Wt, -step_lr * B * self.l2)
        rbm.dtheta.masked_fill_(code > 0, 0.0)
        rbm.theta.add_(rbm.dtheta)
        rbm.theta[:, :nh].mul_(scale.float())
        rbm.theta[:-1, nh].mul_(scale_vb.float())
        ctl[0] *= self._factors.index_select(0, code.long().view(1))[0]
        row = torch.stack([err, sat, code, scale, torch.isfinite(err).double(), torch.full_like(err, B)])
        self.log.index_copy_(0, ctl[2].long().view(1), row.view(1, 6))
        ctl[2] += 1

    def _products(self):
        """The matrix product the step uses and the parameter block as it enters it: float32,
        or (bf16) inputs rounded to bfloat16, accumulated in float32 by the GEMM and widened
        into the float32 buffers."""
        theta = self.rbm.theta
        if not self.bf16:
            return (lambda a, b, out: torch.mm(a, b, out=out)), theta
        half = torch.bfloat16
        return (lambda a, b, out: out.copy_(torch.mm(a.to(half), b if b.dtype == half else b.to(half)))), theta.to(half)

    def _buffers(self, batch: int, size: int) -> _Work:
        """Work buffers for `batch` rows of a `size`-row global batch: kept for the main batch
        size and the last other one (an epoch's last batch is shorter)."""
        if (batch, size) not in self._work:
            for key in [key for key in self._work if key != (self.batch, self.batch)]:
                del self._work[key]
            rbm = self.rbm
            self._work[batch, size] = _Work(batch, size, self.k, rbm.n_visible, rbm.n_hidden, rbm.theta.device)
        return self._work[batch, size]

    def _state(self) -> list[torch.Tensor]:
        """Every tensor a step changes (what a graph capture saves and restores)."""
        return [self.rbm._theta, self.rbm._dtheta, self.stats, self.ctl, self.log]

    # --- the host's side --------------------------------------------------------------

    def read(self) -> CDReport:
        """The figures of the steps since the last read (one synchronisation on a device). On
        the device the rate was cut there; here the same products, in the same order, give
        each firing's rate and the rate now."""
        if self.read_every == 1:
            rows, self._rows = self._rows, []
        else:
            rows = self.log[: int(self.ctl[2])].tolist()
            self.ctl[2] = 0
        report, rate = CDReport(steps=len(rows)), self._lr_read
        for i, (err, sat, code, scale, finite, size) in enumerate(rows):
            report.error_sum += err
            report.saturated_sum += sat * size
            if code:
                guard = GUARDS[int(code)]
                rate *= GUARD_LR_FACTOR[guard]
                report.events.append(GuardEvent(i, guard, scale, sat if self.sat_limit > 0 else None, rate))
            if not finite and report.bad_step is None:
                report.bad_step, report.bad_error = i, err
        self.lr = self._lr_read = report.lr = rate
        return report


def cd_step_reference(W, hb, vb, dW, dhb, dvb, v0, lr, momentum, l2, uniforms, k=1, visible="bernoulli"):  # fmt: skip
    """Textbook CD-k (Hinton's guide; Kaldi nnet1's `Rbm::Update`), one formula per line.

    W is (n_hidden, n_visible), v0 (B, n_visible). The readable twin of the training step
    without guards. Returns the new (W, hb, vb, dW, dhb, dvb) and the summed squared
    reconstruction error.
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


def cd1_flops_per_frame(n_visible: int, n_hidden: int) -> float:
    """Multiply-adds x 2 of CD-1 per frame: v0W^T, h0W, v1W^T and the gradient product (2 x)."""
    return 10.0 * n_visible * n_hidden
