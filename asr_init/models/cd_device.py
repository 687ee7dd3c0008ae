"""CD-k steps decided on the device: no host synchronisation per mini-batch.

`RBM.cd_step` takes its guards' decisions on the host: it reads the reconstruction's
spread (and the saturated share) back after every mini-batch. On a CPU that costs
nothing; on a GPU each read stalls the stream until the step is done, and the next step's
kernels are only queued after it. `DeviceCD` makes the same update with every decision
taken on the device:

* the Gaussian guard's standard deviations (in float64, from the same sums as
  `cd_step`), the saturation guard's share and its rescale (the rms of the net input
  taken from the same product, before the sigmoid), are compared with `torch.where`;
* a firing skips the update (masks it to 0), scales the block, resets the momentum
  buffers and cuts the learning rate, which lives on the device;
* the squared error, the saturated share, a first non-finite step and every firing
  (step, guard, scale, saturated share) are accumulated in small device tensors that the
  host reads with `read()`, at report intervals.

On the CPU the decisions, scales and firings equal `cd_step`'s, and the parameters equal
them to float32 rounding: the update is the separate products dtheta * m + G * lr'
instead of one fused BLAS call (the tests compare step by step, guard firings included).

On several processes (`step(..., part=...)`) the step runs on this process's rows and sums
its statistics (gradient product, error, saturated count, guard sums, squared net inputs)
with one collective before deciding, as `RBM._cd_step_part` does, without reading them.

With `bf16` the four products of a step take bfloat16 inputs (see `_products`); the
parameters, the momentum and the update stay float32.

On CUDA the step of the main batch size is captured once as a CUDA graph and replayed:
one launch instead of ~40. Everything the graph reads is static: the input rows are
copied into the work buffer, the uniforms are drawn into a buffer before the replay
(so the graph holds no random-number generator), the momentum is written into the
control tensor. The first replay is checked against an eager step on the same inputs; if
capture fails or they disagree, the layer goes on eagerly with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr_init.models.optimal_spread import optimal_d
from asr_init.models.rbm import (
    GUARD_LR_FACTOR,
    RBM,
    SATURATION_MARGIN,
    BatchPart,
    UniformSource,
    _row_length,
    _Work,
)

GUARDS = ("recon_std", "saturation")  # guard code c (1, 2) is GUARDS[c - 1]
MAX_EVENTS = 64  # default room for guard firings between two reads (see `read` for more)

# The control vector (float64): what the host sets, and the sums it reads back; for the
# first non-finite step, its index, its error and whether the parameters were finite.
_LR, _MOMENTUM, _ERR, _SAT, _STEPS, _BAD_AT, _BAD_ERR, _BAD_WEIGHTS, _EVENTS = range(9)


@dataclass
class GuardEvent:
    """A guard firing: the step (0-based, counted since the last read) and what it did."""

    step: int
    guard: str
    scale: float
    saturated: float | None
    lr: float  # the learning rate after the cut


@dataclass
class CDReport:
    """The figures accumulated on the device since the last read."""

    error_sum: float  # summed squared reconstruction error
    saturated_sum: float  # sum over steps of (saturated share x batch rows); 0 when not watched
    steps: int
    lr: float  # the learning rate now
    bad_step: int | None  # the first step whose error or parameters were not finite
    bad_error: float = 0.0  # that step's error
    bad_weights: bool = False  # whether its parameters were not finite
    events: list[GuardEvent] = field(default_factory=list)
    lost_events: int = 0  # firings beyond the log's room, between the logged ones and the last

    def lr_before(self, step: int, lr_at_read: float) -> float:
        """The learning rate `step` trained with: the rate at the last read cut by the firings before it."""
        for event in self.events:
            if event.step < step:
                lr_at_read *= GUARD_LR_FACTOR[event.guard]
        return lr_at_read


class DeviceCD:
    """CD-k on `rbm` with the guards decided on its device and the figures read back on demand.

    `lr` is the starting learning rate; `batch` the usual mini-batch size (the one a
    CUDA graph is captured for; other sizes, such as an epoch's last batch, run eagerly);
    `max_events` the guard firings the log has room for between two reads.
    """

    def __init__(
        self,
        rbm: RBM,
        uniforms: UniformSource,
        lr: float,
        batch: int,
        k: int = 1,
        l2: float = 0.0,
        guard: bool = True,
        sat_limit: float = 0.0,
        graphs: bool = True,
        bf16: bool = False,
        max_events: int = MAX_EVENTS,
    ):
        self.rbm, self.uniforms, self.k, self.l2, self.batch = rbm, uniforms, k, l2, batch
        self.guard, self.sat_limit = guard and rbm.visible == "gauss", sat_limit
        device, dtype = rbm.theta.device, rbm.theta.dtype
        self.ctl = torch.zeros(_EVENTS + 1, dtype=torch.float64, device=device)
        self.ctl[_LR], self._lr = lr, lr  # _lr: the rate at the last read
        self.ctl[_BAD_AT] = -1
        self.events = torch.zeros(max(max_events, 2), 4, dtype=torch.float64, device=device)
        nv, nh = rbm.n_visible, rbm.n_hidden
        self.grad = torch.empty(nv + 1, _row_length(nh + 1), device=device, dtype=dtype)[:, : nh + 1]
        self._work: dict[tuple[int, int], tuple[_Work, torch.Tensor]] = {}  # the main batch size and one other
        self._d_star = optimal_d("sigmoid")
        self._factors = torch.tensor([1.0] + [GUARD_LR_FACTOR[g] for g in GUARDS], dtype=torch.float64, device=device)
        self.bf16 = bf16
        self.graphs = graphs and device.type == "cuda"
        self._graph = None
        self.graph_status = "off" if not self.graphs else "not captured yet"

    # --- the host's side -------------------------------------------------------------

    def step(self, v0: torch.Tensor, momentum: float, part: BatchPart | None = None) -> None:
        """One CD-k update on v0 (B, n_visible); nothing is read back. With `part`, v0 is
        this process's rows of a global batch (as for `RBM.cd_step`): every process makes the
        update of the global batch, with its statistics summed by one collective."""
        w, u = self._buffers(v0.shape[0], None if part is None else part.size)
        w.v0_units.copy_(v0)
        for i in range(self.k):  # the same draws, in the same order, as cd_step's
            self.uniforms.fill_(u[i])
        self.ctl[_MOMENTUM].fill_(momentum)
        if part is not None:  # eager: no collective inside a graph
            self._body(w, u, part)
            return
        if self.graphs and w.batch == self.batch:
            if self._graph is None:
                self._capture(w, u)
            if self._graph is not None:
                self._graph.replay()
                return
        self._body(w, u)

    def read(self) -> CDReport:
        """Bring the figures since the last read to the host (one synchronisation) and reset them."""
        values = torch.cat([self.ctl, self.events.view(-1)]).tolist()
        ctl, rows = values[: _EVENTS + 1], values[_EVENTS + 1 :]
        room, fired = len(self.events), int(ctl[_EVENTS])
        events, lr = [], self._lr
        for i in range(min(fired, room)):
            step, code, scale, sat = rows[4 * i : 4 * i + 4]
            guard = GUARDS[int(code) - 1]
            lr *= GUARD_LR_FACTOR[guard]  # the same products as on the device, in the same order
            events.append(GuardEvent(int(step), guard, scale, sat if self.sat_limit > 0 else None, lr))
        if fired > room:  # the last slot holds the last firing; the ones between are lost, the rate is not
            events[-1].lr = ctl[_LR]
        self.ctl[_ERR : _EVENTS + 1].zero_()
        self.ctl[_BAD_AT] = -1
        self._lr = ctl[_LR]
        bad = int(ctl[_BAD_AT])
        return CDReport(
            ctl[_ERR],
            ctl[_SAT],
            int(ctl[_STEPS]),
            ctl[_LR],
            None if bad < 0 else bad,
            ctl[_BAD_ERR],
            bool(ctl[_BAD_WEIGHTS]),
            events,
            max(0, fired - room),
        )

    # --- the device's side -----------------------------------------------------------

    def _buffers(self, batch: int, size: int | None = None) -> tuple[_Work, torch.Tensor]:
        """Work buffers for `batch` rows and uniforms for `size` (the global batch; default `batch`)."""
        size = batch if size is None else size
        key = (batch, size)
        if key not in self._work:
            for other in [b for b in self._work if b != (self.batch, self.batch)]:  # last batches vary in size
                del self._work[other]
            rbm = self.rbm
            w = _Work(batch, rbm.n_visible, rbm.n_hidden, rbm.theta.device, rbm.theta.dtype)
            u = torch.empty(self.k, size, rbm.n_hidden, device=rbm.theta.device, dtype=rbm.theta.dtype)
            self._work[key] = (w, u)
        return self._work[key]

    def _body(self, w: _Work, u: torch.Tensor, part: BatchPart | None = None) -> None:
        """The step itself: only device operations, no host reads, no data-dependent branches.
        With `part`, w holds this process's rows of the global batch and u the whole batch's
        uniforms; the statistics are summed over the processes before anything is decided."""
        rbm, ctl = self.rbm, self.ctl
        theta, nh, nv = rbm.theta, rbm.n_hidden, rbm.n_visible
        mm, theta_p = self._products(theta)
        mm(w.v0, theta_p, w.h0)
        net = w.h0_units.pow(2) if self.sat_limit > 0 else None  # squared net inputs, before the sigmoid
        w.h0.sigmoid_()
        sat_count = None
        if self.sat_limit > 0:
            torch.sub(w.h0_units, 0.5, out=w.hs_units).abs_().gt_(0.5 - SATURATION_MARGIN)
            sat_count = w.hs_units.sum()
        start = 0 if part is None else part.start
        self._gibbs(w, u[:, start : start + w.batch], mm, theta_p)
        torch.sub(w.vk, w.v0, out=w.diff)
        error_sum = torch.dot(w.diff_flat, w.diff_flat)
        X = w.rows  # [v0 1] and [vk 1] flattened: the Gaussian guard's sums of squares and sums
        sums = torch.cat([torch.mm(X, X.T).diagonal(), X.sum(1)]) if self.guard else None
        w.H_const.fill_(1)
        w.hk.neg_()
        if part is None:
            B, grad = w.batch, self.grad
            mm(w.V_t, w.H, grad)
            saturated = sat_count / (B * nh) if net is not None else None
            rms = net.mean().sqrt() if net is not None else None
        else:
            B = part.size
            grad, error_sum, saturated, rms, sums = self._summed(w, mm, error_sum, sat_count, net, sums, part)
        code, scale_all, scale_vb = self._decide(sums, B, saturated, rms)
        momentum = ctl[_MOMENTUM]
        step_lr = ctl[_LR] * (1.0 - momentum) / B
        rbm.dtheta.mul_(momentum.to(theta.dtype)).addcmul_(grad, step_lr.to(theta.dtype))
        if self.l2:
            rbm.dWt.addcmul_(rbm.Wt, (-step_lr * B * self.l2).to(theta.dtype))
        rbm.dtheta.masked_fill_(code > 0, 0.0)  # a guarded step: no update, momentum reset
        theta.add_(rbm.dtheta)
        theta[:, :nh].mul_(scale_all.to(theta.dtype))
        theta[:nv, nh].mul_(scale_vb.to(theta.dtype))
        self._account(B, error_sum, saturated, code, scale_all)

    def _gibbs(self, w: _Work, u: torch.Tensor, mm, theta_p: torch.Tensor) -> None:
        """k Gibbs steps from p(h0): sampled hiddens, reconstruction vk, p(hk) into w."""
        p = w.h0_units
        for i in range(self.k):
            torch.lt(u[i], p, out=w.hs_units)
            mm(w.hs, theta_p.T, w.vk)
            if self.rbm.visible == "bernoulli":
                w.vk.sigmoid_()
            w.vk_const.fill_(1)
            mm(w.vk, theta_p, w.hk).sigmoid_()
            p = w.hk_units

    def _summed(self, w: _Work, mm, error_sum, sat_count, net, sums, part: BatchPart):
        """This process's statistics packed into one buffer and summed over the processes
        (one collective, on the device); returns the global gradient product, error,
        saturated share, rms net input and guard sums, as `RBM._cd_step_part` computes them."""
        nv, nh = self.rbm.n_visible, self.rbm.n_hidden
        stats = self.rbm._part_stats()  # RBM._cd_step_part's buffer; its 7th number here: squared net inputs
        n = (nv + 1) * (nh + 1)
        grad, extra = stats[:n].view(nv + 1, nh + 1), stats[n:]
        mm(w.V_t, w.H, grad)
        extra.zero_()
        extra[0] = error_sum
        if net is not None:
            extra[1] = sat_count
            extra[6] = net.sum(dtype=torch.float64)
        if sums is not None:
            extra[2:6] = sums
        part.all_reduce_(stats)
        B = part.size
        saturated = (extra[1].double() / (B * nh)).float() if net is not None else None
        rms = (extra[6].double() / (B * nh)).sqrt() if net is not None else None
        return grad, extra[0].clone(), saturated, rms, extra[2:6].clone() if sums is not None else None

    def _products(self, theta: torch.Tensor):
        """The matrix product the step uses, and the parameter block as it enters it:
        float32 throughout, or (bf16) inputs rounded to bfloat16, the products accumulated
        in float32 by the GEMM and returned in bfloat16, widened into the float32 buffers;
        the parameters, their update and the guards' statistics stay float32."""
        if not self.bf16:
            return (lambda a, b, out: torch.mm(a, b, out=out)), theta
        half = torch.bfloat16

        def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(torch.mm(a.to(half), b if b.dtype == half else b.to(half)))

        return mm, theta.to(half)

    def _decide(self, sums, B: int, saturated, rms):
        """Which guard fires (0 none, 1 Gaussian, 2 saturation), the scale of the weights and
        hidden biases, and the scale of the visible biases; as cd_step decides, on the device.
        `sums` are the Gaussian guard's sums of squares and sums of [v0 1] and [vk 1]."""
        f64 = {"dtype": torch.float64, "device": self.ctl.device}
        code = torch.zeros((), **f64)
        scale_all = torch.ones((), **f64)
        scale_vb = torch.ones((), **f64)
        if self.guard:
            n, sums = B * self.rbm.n_visible, sums.double()
            pos_std = _std(sums[2] - B, sums[0] - B, n)
            neg_std = _std(sums[3] - B, sums[1] - B, n)
            fires = neg_std > 2 * pos_std
            code = torch.where(fires, 1.0, code)
            scale_all = scale_vb = torch.where(fires, pos_std / neg_std, scale_all)
        if self.sat_limit > 0:
            fires = (code == 0) & (saturated.double() > self.sat_limit)
            rms = rms.double()
            sat_scale = torch.where(rms > 0, (self._d_star / rms).clamp(max=1.0), 1.0)
            code = torch.where(fires, 2.0, code)
            scale_all = torch.where(fires, sat_scale, scale_all)
        return code, scale_all, scale_vb

    def _account(self, B: int, error_sum, saturated, code, scale) -> None:
        """Add the step to the sums; log a firing; cut the rate; mark a first non-finite step."""
        ctl, events = self.ctl, self.events
        ctl[_ERR] += error_sum.double()
        sat = saturated.double() if saturated is not None else torch.zeros_like(code)
        if saturated is not None:
            ctl[_SAT] += sat * B
        fired = code > 0
        slot = ctl[_EVENTS].clamp(max=len(events) - 1).long().view(1)
        row = torch.stack([ctl[_STEPS], code, scale, sat])
        events.index_copy_(0, slot, torch.where(fired, row, events.index_select(0, slot)[0]).view(1, 4))
        ctl[_EVENTS] += fired.double()
        ctl[_LR] *= self._factors.index_select(0, code.long().view(1))[0]
        weights = torch.isfinite(self.rbm._theta.sum())
        first = (ctl[_BAD_AT] < 0) & ~(torch.isfinite(error_sum) & weights)
        ctl[_BAD_ERR] = torch.where(first, error_sum.double(), ctl[_BAD_ERR])
        ctl[_BAD_WEIGHTS] = torch.where(first, (~weights).double(), ctl[_BAD_WEIGHTS])
        ctl[_BAD_AT] = torch.where(first, ctl[_STEPS], ctl[_BAD_AT])
        ctl[_STEPS] += 1

    # --- CUDA graph ------------------------------------------------------------------

    def _capture(self, w: _Work, u: torch.Tensor) -> None:
        """Capture the step for `self.batch` rows (cuda_graphs.capture_checked); eager if it fails."""
        from asr_init.cuda_graphs import capture_checked
        from asr_init.progress import console

        rbm = self.rbm
        graph, status = capture_checked(lambda: self._body(w, u), [rbm._theta, rbm._dtheta, self.ctl, self.events])
        self._graph, self.graphs = graph, graph is not None
        self.graph_status = f"{status} for batch {self.batch}" if graph is not None else f"{status}; eager"
        if graph is None:
            console.print(f"[yellow]warning: CUDA graph of the CD step: {status}; running eagerly")


def _std(total: torch.Tensor, squares: torch.Tensor, n: int) -> torch.Tensor:
    """`rbm._std_from_sums` on float64 tensors: the same operations, on the device."""
    return ((squares - total * total / n).clamp(min=0.0) / max(n - 1, 1)).sqrt()
