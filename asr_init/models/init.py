"""Weight initialisation methods, one registry, in the style of `torch.nn.init`.

A method is named by a spec string, `NAME` or `NAME:PARAM` (e.g. `normal:0.05`,
`optimal:1.392`). `init_weight_` fills a weight of shape (fan_out, fan_in) in place
under `torch.no_grad()` from an explicit generator and returns what it did: the
standard deviation used and the net-input spread D it gives for N(0, 1) inputs
(D = sigma * sqrt(fan_in); for `optimal-data` D is measured on the real inputs).
Biases start at zero for every method.

Where `torch.nn.init` implements a method it is used as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from asr_init.errors import UserError
from asr_init.models.optimal_spread import optimal_d


def fan_in_and_fan_out(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a (fan_out, fan_in) weight, as nn.Linear stores it."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight (fan_out, fan_in), got shape {tuple(weight.shape)}")
    return int(weight.shape[1]), int(weight.shape[0])


@dataclass(frozen=True)
class InitContext:
    """What a method may need beyond the tensor.

    activation: the layer's hidden non-linearity (selects D* for `optimal`).
    input_power: sum_i E[x_i^2] of the layer's actual inputs (for `optimal-data`).
    inputs: a sample of the layer's actual inputs (frames, fan_in), for the data-dependent
        methods (`lsuv`, `data-dependent`), which read it to size the weights.
    bias: the layer's bias, which `data-dependent` sets (every other method leaves it at 0).
    """

    activation: str = "sigmoid"
    input_power: float | None = None
    inputs: torch.Tensor | None = None
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class InitResult:
    method: str
    std: float  # standard deviation of the weights drawn
    spread: float  # D: std of the net input for N(0, 1) inputs (optimal-data: the measured inputs)


@dataclass(frozen=True)
class Method:
    name: str
    formula: str
    param: str | None  # name of the parameter after ':', or None
    param_required: bool
    fill: Callable[[torch.Tensor, float | None, torch.Generator, InitContext], object]


def _optimal_d(param: float | None, ctx: InitContext) -> float:
    """D: the given one, else D* of the layer's activation (sigmoid for a softmax layer; a ReLU
    layer has none, which FinetuneConfig refuses before this)."""
    if param is not None:
        return param
    if ctx.activation == "relu":
        raise UserError("init 'optimal' has no D* for ReLU units; give the spread as optimal:D")
    return optimal_d(ctx.activation if ctx.activation == "tanh" else "sigmoid")


def _optimal(w, param, g, ctx):
    torch.nn.init.normal_(w, 0.0, _optimal_d(param, ctx) / math.sqrt(fan_in_and_fan_out(w)[0]), generator=g)


def _optimal_data(w, param, g, ctx):
    if ctx.input_power is None or not ctx.input_power > 0:
        raise UserError("init 'optimal-data' needs the layer's input power sum_i E[x_i^2] measured on training frames")
    torch.nn.init.normal_(w, 0.0, _optimal_d(param, ctx) / math.sqrt(ctx.input_power), generator=g)


def _inputs(ctx: InitContext, name: str) -> torch.Tensor:
    if ctx.inputs is None or len(ctx.inputs) < 2:
        raise UserError(f"init {name!r} reads a sample of the layer's inputs from the store, and none was given")
    return ctx.inputs.double()


LSUV_TOLERANCE, LSUV_STEPS = 0.01, 10


def _lsuv(w, param, g, ctx):
    """Mishkin & Matas 2016: an orthogonal start, then the weights scaled on the sample until the
    variance of the layer's net input, over frames and units, is within 1 % of 1."""
    x = _inputs(ctx, "lsuv")
    torch.nn.init.orthogonal_(w, generator=g)
    for _ in range(LSUV_STEPS):
        var = float((x @ w.double().T).var())
        if abs(var - 1.0) < LSUV_TOLERANCE or var == 0:
            break
        w.mul_(1.0 / math.sqrt(var))


def _data_dependent(w, param, g, ctx):
    """Krähenbühl et al. 2016: Gaussian weights, then each unit's weights scaled so that its net
    input on the sample has spread D (default D* of the activation) and its bias set so that
    the net input has mean 0: the data-driven form of the optimal spread."""
    x = _inputs(ctx, "data-dependent")
    spread = _optimal_d(param, ctx)
    torch.nn.init.normal_(w, 0.0, 1.0, generator=g)
    net = x @ w.double().T
    scale = spread / net.std(0).clamp(min=1e-12)
    w.mul_(scale.to(w.dtype)[:, None])
    if ctx.bias is not None:
        ctx.bias.copy_(-(net.mean(0) * scale).to(ctx.bias.dtype))


def _seeded(fill: Callable, *args, **kwargs):
    """A `torch.nn.init` function, drawing from the method's generator, as a method's fill."""
    return lambda w, p, g, c: fill(w, *args, generator=g, **kwargs)


_XAVIER, _HE = "(Glorot & Bengio 2010)", "(He et al. 2015)"
_init = torch.nn.init
# name, formula, parameter after ':' (or None), whether it must be given, the fill
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("zeros", "W = 0 (every hidden unit identical: shows the symmetry problem)", None, False,
           lambda w, p, g, c: _init.zeros_(w)),
    Method("constant", "W = VALUE", "VALUE", True, lambda w, p, g, c: _init.constant_(w, p)),
    Method("normal", "W ~ N(0, STD^2)", "STD", True, lambda w, p, g, c: _init.normal_(w, 0.0, p, generator=g)),
    Method("uniform", "W ~ U(-LIMIT, LIMIT)", "LIMIT", True, lambda w, p, g, c: _init.uniform_(w, -p, p, generator=g)),
    Method("hinton", "W ~ N(0, 0.01^2) (Hinton's practical guide to RBMs)", None, False,
           _seeded(_init.normal_, 0.0, 0.01)),
    Method("kaldi", "W ~ N(0, 0.1^2) (Kaldi's RBM pre-training default)", None, False,
           _seeded(_init.normal_, 0.0, 0.1)),
    Method("large", "W ~ N(0, 1) x 10 (far too large: saturates every unit)", None, False,
           _seeded(_init.normal_, 0.0, 10.0)),
    Method("xavier-normal", f"W ~ N(0, 2 / (fan_in + fan_out)) {_XAVIER}", None, False, _seeded(_init.xavier_normal_)),
    Method("xavier-uniform", f"W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)) {_XAVIER}", None, False,
           _seeded(_init.xavier_uniform_)),
    Method("small-xavier", "W ~ 0.1 x N(0, 2 / (fan_in + fan_out)) (the new softmax layer of fine-tuning)", None,
           False, _seeded(_init.xavier_normal_, gain=0.1)),
    Method("he-normal", f"W ~ N(0, 2 / fan_in) {_HE}", None, False,
           _seeded(_init.kaiming_normal_, nonlinearity="relu")),
    Method("he-uniform", f"W ~ U(-a, a), a = sqrt(6 / fan_in) {_HE}", None, False,
           _seeded(_init.kaiming_uniform_, nonlinearity="relu")),
    Method("lecun-normal", "W ~ N(0, 1 / fan_in) (LeCun et al. 1998)", None, False,
           lambda w, p, g, c: _init.normal_(w, 0.0, 1 / math.sqrt(fan_in_and_fan_out(w)[0]), generator=g)),
    Method("orthogonal", "W = GAIN x (semi-)orthogonal matrix (Saxe et al. 2014); GAIN default 1", "GAIN", False,
           lambda w, p, g, c: _init.orthogonal_(w, gain=1.0 if p is None else p, generator=g)),
    Method("optimal", "W ~ N(0, (D*/sqrt(fan_in))^2), D* = argmax_D E|f''(z)|, z ~ N(0, D^2): 1.40784 sigmoid, "
           "0.70392 tanh; optimal:D uses the given D", "D", False, _optimal),
    Method("optimal-data", "W ~ N(0, D*^2 / sum_i E[x_i^2]) with E[x_i^2] measured on the layer's real inputs", "D",
           False, _optimal_data),
    Method("lsuv", "orthogonal W, scaled until the net input's variance on real frames is 1 (Mishkin & Matas 2016)",
           None, False, _lsuv),
    Method("data-dependent", "W ~ N(0, 1), each unit scaled so its net input on real frames has spread D* (default) "
           "and its bias set so it has mean 0 (Krähenbühl et al. 2016); data-dependent:D uses the given D", "D",
           False, _data_dependent),
]}  # fmt: skip


# The largest |PARAM| of NAME:PARAM. Every parameter scales the weights, which act on inputs of
# size about 1 (normalised features, or hidden activations in (0, 1) or (-1, 1)); beyond
# |z| = 17 the float32 sigmoid is exactly 1 (tanh exactly +-1 beyond 10), so its gradient is 0.
# A weight scale of 1000 is far past that: larger values are typing mistakes, not experiments.
MAX_PARAM = 1000.0


def parse_init(spec: str) -> tuple[Method, float | None]:
    """`NAME` or `NAME:PARAM` -> (method, param). Raises UserError listing valid names."""
    name, sep, raw = spec.strip().partition(":")
    if name not in METHODS:
        raise UserError(f"unknown init method {name!r}; valid: {', '.join(METHODS)}")
    method = METHODS[name]
    if not sep:
        if method.param_required:
            raise UserError(f"init {name!r} needs a parameter: {name}:{method.param}")
        return method, None
    if method.param is None:
        raise UserError(f"init {name!r} takes no parameter (got {spec!r})")
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"malformed init {spec!r}: {method.param} must be a number, e.g. {name}:0.1") from None
    positive = name in ("normal", "uniform", "optimal", "optimal-data", "data-dependent")
    if not math.isfinite(value) or (positive and value <= 0):
        raise UserError(
            f"malformed init {spec!r}: {method.param} must be a {'positive ' if positive else ''}finite number"
        )
    if abs(value) > MAX_PARAM:
        raise UserError(
            f"malformed init {spec!r}: {method.param} must be at most {MAX_PARAM:g} in magnitude: on inputs of "
            "size about 1, a larger value puts net inputs far beyond |z| = 17, where float32 sigmoid and tanh "
            "round to their limits and pass no gradient (the 'large' init, std 10, already saturates every unit)"
        )
    return method, value


def init_weight_(
    weight: torch.Tensor, spec: str, generator: torch.Generator, context: InitContext = InitContext()
) -> InitResult:
    """Fill `weight` (fan_out, fan_in) in place by method `spec`; returns std and spread D."""
    method, param = parse_init(spec)
    with torch.no_grad():
        method.fill(weight, param, generator, context)
        fan_in, _ = fan_in_and_fan_out(weight)
        std = float(weight.double().std()) if weight.numel() > 1 else 0.0
        if method.name in DATA_DEPENDENT:  # the spread of the net inputs on the sample, over frames and units
            bias = context.bias.double() if context.bias is not None else 0.0
            return InitResult(spec, std, float((context.inputs.double() @ weight.double().T + bias).std()))
        # Net-input spread of the drawn weights: sqrt(mean_j sum_i W_ji^2 E[x_i^2]), with
        # E[x_i^2] = 1 (normalised inputs) or the measured mean input power.
        power = context.input_power if method.name == "optimal-data" else fan_in
        rms = float(weight.double().pow(2).mean().sqrt())
        return InitResult(spec, std, rms * math.sqrt(power))


DATA_DEPENDENT = ("lsuv", "data-dependent")  # methods that read a sample of the layer's inputs


def input_power(x: torch.Tensor) -> float:
    """sum_i E[x_i^2] of a (frames, dim) sample: the net-input variance per unit weight variance."""
    return float(x.double().pow(2).mean(0).sum())


def init_stack(
    sizes: list[int],
    spec: str,
    generator: torch.Generator,
    activation: str = "sigmoid",
    sample: torch.Tensor | None = None,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[InitResult]]:
    """Initialise layers sizes[0] -> sizes[1] -> ... with `spec`; biases zero.

    `sample` (frames, sizes[0]) is propagated through the new layers so that
    `optimal-data` can measure each layer's input power.
    """
    from asr_init.models.nonlinearity import activate

    layers, results = [], []
    h = sample
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        w, b = torch.empty(fan_out, fan_in), torch.zeros(fan_out)
        ctx = InitContext(activation, input_power(h) if h is not None else None, h, b)
        results.append(init_weight_(w, spec, generator, ctx))
        layers.append((w, b))
        if h is not None:
            h = activate(h @ w.T + b, activation)
    return layers, results
