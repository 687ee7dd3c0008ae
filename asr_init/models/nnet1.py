"""Kaldi nnet1 networks: read and write them, and convert them to and from asr-init's.

An nnet1 file (`final.nnet`, `N.dbn`, `final.feature_transform`) is a sequence of
components between `<Nnet>` and `</Nnet>`, each written by Kaldi's `Component::Write`
(src/nnet/nnet-component.cc) as

    <Marker> OUTPUT_DIM INPUT_DIM  DATA  <!EndOfComponent>

(output dimension first). DATA depends on the component (Kaldi master):

    <AffineTransform>   <LearnRateCoef> f <BiasLearnRateCoef> f <MaxNorm> f, then the weight
                        matrix (OUTPUT_DIM, INPUT_DIM) and the bias vector (OUTPUT_DIM,)
                        (nnet-affine-transform.h; the three tokens in any order, each optional)
    <Sigmoid> <Tanh> <Softmax>   nothing (nnet-activation.h)
    <Dropout>           [<DropoutRate> f] (or an older <DropoutRetention> f); nnet-forward
                        passes its input through, and asr-init reads it so (nnet-activation.h)
    <ParametricRelu>    <AlphaLearnRateCoef> f <BetaLearnRateCoef> f (in any order, each
                        optional), then the vectors alpha and beta (OUTPUT_DIM,): out = alpha * in
                        where in > 0, beta * in elsewhere (nnet-parametric-relu.h, cu-kernels.cu)
    <Splice>            the frame offsets, an integer vector (nnet-various.h)
    <AddShift> <Rescale>  [<LearnRateCoef> f] and a vector of INPUT_DIM (nnet-various.h):
                        out = in + shift, out = in * scale

Numbers follow src/base/io-funcs.cc and src/matrix/kaldi-matrix.cc. A binary file starts
with "\\0B"; a token is its text and one space; an int32 is the byte 4 and 4 little-endian
bytes; a float is the byte 4 and a float32 (the byte 8 and a float64 is read too); a
matrix is the token "FM" (or "DM"), the rows and columns as int32s, then the values row by
row; a vector is "FV" (or "DV"), the dimension and the values; an integer vector is the byte
4, the count as 4 raw bytes, then the raw int32s. In a text file tokens and numbers are
separated by white space, a matrix is " [" then one line per row then "]", a vector
" [ v1 v2 ... ]" and an integer vector "[ i1 i2 ... ]".

asr-init's network maps to nnet1 one to one: each hidden layer is an <AffineTransform> and
its <Sigmoid> (or <Tanh>, or for ReLU a <ParametricRelu> of alpha 1 and beta 0), the
output layer an <AffineTransform> and a <Softmax>. Its input pipeline (normalise each
feature dimension, then splice +-K frames, edge frames repeated) is the feature transform
Kaldi's steps/nnet/train.sh builds: <Splice> offsets -K..K, then <AddShift> -mean and
<Rescale> 1/std over the spliced dimensions (the normalisation tiled once per offset),
then <Sigmoid> for a Bernoulli first RBM layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr_init.errors import UserError
from asr_init.features.pipeline import NORM_LIMIT, FeaturePipeline, check_splice
from asr_init.kaldi_io import KaldiFormatError, Reader, Writer
from asr_init.models.dbn import dbn_record

# Markers asr-init reads and writes, by their lower-case form (Kaldi matches them case-blind).
MARKERS = {m.lower(): m for m in ("AffineTransform", "Sigmoid", "Tanh", "ParametricRelu", "Softmax", "Splice",
                                   "AddShift", "Rescale", "Dropout")}  # fmt: skip
TRANSFORM_PARTS = (
    "asr-init reads feature transforms of <Splice>, <AddShift>, <Rescale> and a final <Sigmoid> "
    "(an LDA or MLLT <LinearTransform> is not read)"
)
ACTIVATION_OF = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ParametricRelu": "relu"}
MARKER_OF = {a: m for m, a in ACTIVATION_OF.items()}
_AFFINE_COEFS = {
    "<LearnRateCoef>": "learn_rate_coef",
    "<BiasLearnRateCoef>": "bias_learn_rate_coef",
    "<MaxNorm>": "max_norm",
}
_RELU_COEFS = {"<AlphaLearnRateCoef>": "alpha_learn_rate_coef", "<BetaLearnRateCoef>": "beta_learn_rate_coef"}


@dataclass
class Component:
    """One nnet1 component. `params` holds, by kind: AffineTransform "linearity" (out, in)
    float32, "bias" (out,), "learn_rate_coef", "bias_learn_rate_coef", "max_norm"; Splice
    "offsets" (k,) int32; AddShift "shift" (in,), Rescale "scale" (in,), each with "learn_rate_coef";
    ParametricRelu "alpha" and "beta" (out,) with "alpha_learn_rate_coef" and "beta_learn_rate_coef"."""

    kind: str
    output_dim: int
    input_dim: int
    params: dict = field(default_factory=dict)


def affine(w: np.ndarray, b: np.ndarray) -> Component:
    """An <AffineTransform> with Kaldi's default coefficients (learn rates 1, no max-norm)."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    params = {"linearity": w, "bias": np.asarray(b, dtype=np.float32)}
    params |= {"learn_rate_coef": 1.0, "bias_learn_rate_coef": 1.0, "max_norm": 0.0}
    return Component("AffineTransform", w.shape[0], w.shape[1], params)


def activation(kind: str, dim: int) -> Component:
    """An activation component; a <ParametricRelu> is ReLU (alpha 1, beta 0, both held fixed)."""
    if kind != "ParametricRelu":
        return Component(kind, dim, dim)
    params = {"alpha": np.ones(dim, np.float32), "beta": np.zeros(dim, np.float32)}
    return Component(kind, dim, dim, params | {"alpha_learn_rate_coef": 0.0, "beta_learn_rate_coef": 0.0})


# ---------------------------------------------------------------------------- writing


def write_nnet(path: Path, components: list[Component], binary: bool = True) -> None:
    """Write `components` as an nnet1 file (binary with Kaldi's "\\0B" header, or text)."""
    from asr_init.io import atomic_write

    out = Writer(binary)
    out.token("<Nnet>", newline=True)
    for comp in components:
        out.token(f"<{comp.kind}>")
        out.int32(comp.output_dim)
        out.int32(comp.input_dim, newline=True)
        p = comp.params
        if comp.kind == "AffineTransform":
            for token, key in _AFFINE_COEFS.items():
                out.token(token)
                out.float(p[key], newline=token == "<MaxNorm>")
            out.matrix(p["linearity"])
            out.vector(p["bias"])
        elif comp.kind == "Splice":
            out.int_vector(p["offsets"])
        elif comp.kind in ("AddShift", "Rescale"):
            out.token("<LearnRateCoef>")
            out.float(p.get("learn_rate_coef", 0.0))
            out.vector(p["shift" if comp.kind == "AddShift" else "scale"])
        elif comp.kind == "ParametricRelu":
            for token, key in _RELU_COEFS.items():
                out.token(token)
                out.float(p[key], newline=key.startswith("beta"))
            out.vector(p["alpha"])
            out.vector(p["beta"])
        out.token("<!EndOfComponent>", newline=True)
    out.token("</Nnet>", newline=True)
    data = out.getvalue()
    atomic_write(Path(path), lambda fh: fh.write(data))


# ---------------------------------------------------------------------------- reading


_Malformed = KaldiFormatError


def read_nnet(path: Path, transform: bool = False) -> list[Component]:
    """The components of an nnet1 file (binary or text); a malformed file, a component asr-init
    does not know, or none at all (unless `transform`, a feature transform, and the file is
    '<Nnet> </Nnet>': one that does nothing) is a UserError naming the file as what it is."""
    from asr_init.io import read_regular_file

    path = Path(path)
    data = read_regular_file(path, "Kaldi network")  # a pipe or a device would never end the read
    reader = Reader.of_bytes(data)
    if reader.peek(2) == b"\0B":
        reader.take(2)
        reader.binary = True
    components: list[Component] = []
    try:
        while not reader.at_end():
            token = reader.token()
            if token == "<Nnet>":
                continue
            if token == "</Nnet>":
                break
            kind = MARKERS.get(token.lower().strip("<>")) if token.startswith("<") else None
            if kind is None:
                if not token.startswith("<"):
                    raise _Malformed(f"expected a component marker such as <AffineTransform>, found {token[:40]!r}")
                hint = ""
                if token.lower() == "<rbm>":  # pretrain_dbn.sh leaves N.rbm beside the N.dbn made of it
                    hint = "; give the .dbn rbm-convert-to-nnet makes of an RBM (pretrain_dbn.sh: N.dbn beside N.rbm)"
                if transform:
                    raise UserError(f"feature transform {path} has a {token} component; {TRANSFORM_PARTS}")
                raise UserError(
                    f"Kaldi network {path} has a {token} component, which asr-init cannot convert; it reads "
                    f"{', '.join(f'<{m}>' for m in MARKERS.values())}{hint}"
                )
            comp = Component(kind, reader.int32(), reader.int32())
            if comp.output_dim < 1 or comp.input_dim < 1:  # a 0-row matrix would back any column count in 0 bytes
                raise _Malformed(f"component {len(components) + 1} ({token}) is {comp.output_dim} x {comp.input_dim}")
            _read_data(reader, comp)
            if reader.peek_token() == "<!EndOfComponent>":
                reader.token()
            if components and components[-1].output_dim != comp.input_dim:
                raise _Malformed(
                    f"component {len(components) + 1} ({token}) takes {comp.input_dim} inputs but the one "
                    f"before it gives {components[-1].output_dim}"
                )
            _refuse_non_finite(comp, len(components) + 1, path)
            components.append(comp)
    except _Malformed as exc:
        raise UserError(f"Kaldi network {path} is malformed: {exc}") from None
    if not components and not (transform and data.removeprefix(b"\0B").split() == [b"<Nnet>", b"</Nnet>"]):
        what = "feature transform" if transform else "Kaldi network"
        raise UserError(f"{what} {path} holds no components" + (" (an empty one is '<Nnet> </Nnet>')" * transform))
    return components


def _refuse_non_finite(comp: Component, number: int, path: Path) -> None:
    """A NaN or infinite weight would only show later as a NaN loss; name it where it is."""
    for key, value in comp.params.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = value.flat[int(np.flatnonzero(~np.isfinite(value))[0])]
            raise UserError(
                f"Kaldi network {path}: component {number} (<{comp.kind}>) has a non-finite value ({bad}) in its "
                f"{key}; the file is damaged or comes from a training that diverged"
            )


def _read_data(reader: Reader, comp: Component) -> None:
    p = comp.params
    if comp.kind == "AffineTransform":
        p |= {"learn_rate_coef": 1.0, "bias_learn_rate_coef": 1.0, "max_norm": 0.0}
        while reader.peek_token() in _AFFINE_COEFS:
            key = _AFFINE_COEFS[reader.token()]
            p[key] = reader.float()
        p["linearity"], p["bias"] = reader.matrix((comp.output_dim, comp.input_dim)), reader.vector()
        if p["linearity"].shape != (comp.output_dim, comp.input_dim) or p["bias"].shape != (comp.output_dim,):
            raise _Malformed(
                f"<AffineTransform> {comp.output_dim} {comp.input_dim} holds a {p['linearity'].shape} matrix "
                f"and a {p['bias'].shape} bias"
            )
    elif comp.kind == "Splice":
        p["offsets"] = reader.int_vector()
        if len(p["offsets"]) * comp.input_dim != comp.output_dim:
            raise _Malformed(f"<Splice> {comp.output_dim} {comp.input_dim} has {len(p['offsets'])} offsets")
    elif comp.kind in ("AddShift", "Rescale"):
        p["learn_rate_coef"] = 1.0
        if reader.peek_token() == "<LearnRateCoef>":
            reader.token()
            p["learn_rate_coef"] = reader.float()
        key = "shift" if comp.kind == "AddShift" else "scale"
        p[key] = reader.vector()
        if len(p[key]) != comp.input_dim or comp.input_dim != comp.output_dim:
            raise _Malformed(f"<{comp.kind}> {comp.output_dim} {comp.input_dim} holds {len(p[key])} values")
    elif comp.input_dim != comp.output_dim:
        raise _Malformed(f"<{comp.kind}> {comp.output_dim} {comp.input_dim}: dimensions must agree")
    elif comp.kind == "Dropout":  # train.sh --proto-opts --with-dropout; its rate matters only in training
        while reader.peek_token() in ("<DropoutRate>", "<DropoutRetention>"):
            key = reader.token().strip("<>")
            p[key] = reader.float()
    elif comp.kind == "ParametricRelu":
        p |= {"alpha_learn_rate_coef": 0.0, "beta_learn_rate_coef": 0.0}
        while reader.peek_token() in _RELU_COEFS:
            key = _RELU_COEFS[reader.token()]
            p[key] = reader.float()
        p["alpha"], p["beta"] = reader.vector(), reader.vector()
        if p["alpha"].shape != (comp.output_dim,) or p["beta"].shape != (comp.output_dim,):
            raise _Malformed(
                f"<ParametricRelu> {comp.output_dim} holds {len(p['alpha'])} alphas and {len(p['beta'])} betas"
            )


# ---------------------------------------------------------------------------- asr-init -> nnet1


def network_components(
    hidden: list[tuple[torch.Tensor, torch.Tensor]], output, activation_name: str
) -> list[Component]:
    """An asr-init DNN as nnet1: (W, b) of each hidden layer with its activation, then the
    output layer (W, b) and <Softmax>."""
    comps = []
    for w, b in hidden:
        comps += [affine(_np(w), _np(b)), activation(MARKER_OF[activation_name], w.shape[0])]
    w, b = output
    return comps + [affine(_np(w), _np(b)), activation("Softmax", w.shape[0])]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def transform_components(pipeline: FeaturePipeline) -> list[Component]:
    """The feature transform that does what `pipeline` does: <Splice> -K..K, <AddShift>
    -mean and <Rescale> 1/std (tiled over the offsets), and <Sigmoid> when it squashes."""
    d, n = pipeline.base_dim, 2 * pipeline.splice + 1
    mean = np.asarray(pipeline.mean, dtype=np.float64)
    std = np.asarray(pipeline.std, dtype=np.float64)
    offsets = np.arange(-pipeline.splice, pipeline.splice + 1, dtype=np.int32)
    comps = [
        Component("Splice", n * d, d, {"offsets": offsets}),
        Component("AddShift", n * d, n * d, {"shift": np.tile(-mean, n).astype(np.float32), "learn_rate_coef": 0.0}),
        Component("Rescale", n * d, n * d, {"scale": np.tile(1.0 / std, n).astype(np.float32), "learn_rate_coef": 0.0}),
    ]
    if pipeline.squash:
        comps.append(activation("Sigmoid", n * d))
    return comps


# ---------------------------------------------------------------------------- nnet1 -> asr-init


@dataclass
class KaldiStack:
    """A Kaldi network as asr-init reads it: hidden layers, their activation, the softmax
    output layer if the network has one (a .dbn has none), and the input pipeline."""

    hidden: list[tuple[torch.Tensor, torch.Tensor]]
    activation: str
    output: tuple[torch.Tensor, torch.Tensor] | None
    pipeline: FeaturePipeline
    folded: bool  # the feature transform's per-offset normalisation was folded into layer 1


def network_layers(components: list[Component], path: Path):
    """(hidden (W, b) list, activation, output (W, b) or None) of an nnet1 network of
    <AffineTransform> + activation pairs, optionally ending in <AffineTransform> <Softmax>
    (a <Dropout> anywhere is left out, as nnet-forward passes its input through)."""
    number = [k for k, c in enumerate(components, 1) if c.kind != "Dropout"]  # each one's place in the file
    components = [c for c in components if c.kind != "Dropout"]
    if not components:
        raise UserError(f"Kaldi network {path} has no layers")
    kinds = [c.kind for c in components]
    output = None
    if kinds[-1] == "Softmax":
        if len(kinds) < 2 or kinds[-2] != "AffineTransform":
            raise UserError(f"Kaldi network {path}: its <Softmax> does not follow an <AffineTransform>")
        output = _wb(components[-2])
        components = components[:-2]
    hidden, acts = [], set()
    for i in range(0, len(components), 2):
        pair = components[i : i + 2]
        if len(pair) != 2 or pair[0].kind != "AffineTransform" or pair[1].kind not in ACTIVATION_OF:
            found = " ".join(f"<{c.kind}>" for c in pair)
            raise UserError(
                f"Kaldi network {path}: component {number[i]} onwards reads {found}, but asr-init takes a network of "
                "<AffineTransform> <Sigmoid> (or <Tanh>, <ParametricRelu>) pairs, optionally ending in "
                "<AffineTransform> <Softmax>"
            )
        relu = pair[1].params
        if relu and not ((relu["alpha"] == 1).all() and (relu["beta"] == 0).all()):
            raise UserError(
                f"Kaldi network {path}: the <ParametricRelu> of component {number[i + 1]} is a leaky or learnt ReLU "
                "(an alpha other than 1 or a beta other than 0); asr-init's ReLU is alpha 1, beta 0"
            )
        hidden.append(_wb(pair[0]))
        acts.add(ACTIVATION_OF[pair[1].kind])
    if len(acts) > 1:
        raise UserError(f"Kaldi network {path} mixes {' and '.join(sorted(acts))} layers; asr-init uses one activation")
    if not hidden and output is None:
        raise UserError(f"Kaldi network {path} has no layers")
    return hidden, (acts.pop() if acts else "sigmoid"), output


def _wb(comp: Component) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(comp.params["linearity"].copy()), torch.from_numpy(comp.params["bias"].copy())


def pipeline_from_transform(
    components: list[Component], path: Path, base: int
) -> tuple[FeaturePipeline, np.ndarray, np.ndarray]:
    """The pipeline a feature transform of `base` inputs amounts to, and the per-input (shift,
    scale) it applies after splicing, beyond what the pipeline does. The transform is a <Splice>
    of offsets -K..K and per-dimension <AddShift>/<Rescale> (before or after the splice), then
    optionally <Sigmoid>, or nothing (the frames as they are, as nnet-forward without
    --feature-transform). Kaldi's own transforms normalise each spliced dimension with its own
    statistics; asr-init normalises each feature dimension once, taking the centre frame's
    values, and the returned (shift, scale) are the rest: the transform computes
    (x + shift) * scale on the spliced input x, the pipeline (x - mean) / std."""
    splice, shift, scale, squash = None, None, None, False
    for number, comp in enumerate(components, 1):
        if squash:
            raise UserError(f"feature transform {path}: <Sigmoid> must be its last component")
        if comp.kind == "Splice":
            if splice is not None:
                raise UserError(f"feature transform {path} has two <Splice> components")
            offsets = comp.params["offsets"].tolist()
            k = (len(offsets) - 1) // 2
            if offsets != list(range(-k, k + 1)):
                shown = offsets if len(offsets) <= 12 else [*offsets[:5], "...", *offsets[-5:]]
                raise UserError(
                    f"feature transform {path} splices frames [{', '.join(map(str, shown))}] ({len(offsets)} "
                    "offsets); asr-init splices a symmetric, contiguous context -K..K (steps/nnet/train.sh --splice K)"
                )
            check_splice(k, f"feature transform {path}")
            splice = k
            if shift is not None:  # normalisation before the splice: tile it over the offsets
                shift = np.tile(shift, len(offsets))
            if scale is not None:
                scale = np.tile(scale, len(offsets))
        elif comp.kind in ("AddShift", "Rescale"):
            shift, scale = _normalisation(comp, number, path, shift, scale)
        elif comp.kind == "Sigmoid":
            squash = True
        else:
            raise UserError(f"feature transform {path} has a <{comp.kind}> component; {TRANSFORM_PARTS}")
    k = splice or 0
    n = 2 * k + 1
    dim = base * n
    shift = np.zeros(dim) if shift is None else shift
    scale = np.ones(dim) if scale is None else scale
    if shift.shape != (dim,) or scale.shape != (dim,):  # normalisation of the unspliced input, no splice
        raise UserError(f"feature transform {path}: its <AddShift>/<Rescale> do not match its input dimension")
    centre = slice(k * base, (k + 1) * base)
    mean, std = -shift[centre], 1.0 / scale[centre]
    pipeline = FeaturePipeline(k, tuple(map(float, mean)), tuple(map(float, np.abs(std))), squash)
    return pipeline, shift, scale


def _normalisation(
    comp: Component, number: int, path: Path, shift: np.ndarray | None, scale: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(shift, scale) after <AddShift> or <Rescale> `comp`, component `number` of feature transform
    `path`: shifts add up, scales multiply (float64). A shift beyond +-NORM_LIMIT, or a scale whose
    magnitude is outside 1 / NORM_LIMIT..NORM_LIMIT (the pipeline's standard deviation is 1 / scale),
    is refused here: the inputs it gives would not be finite, and training would only fail later."""
    values = comp.params["shift" if comp.kind == "AddShift" else "scale"].astype(np.float64)
    lo, hi = 1 / NORM_LIMIT, NORM_LIMIT
    if comp.kind == "AddShift":
        if scale is not None:
            raise UserError(f"feature transform {path}: <AddShift> after <Rescale> is not supported")
        shift = values if shift is None else shift + values
        now, bad, verb = shift, ~(np.abs(shift) <= hi), "shifts"
    else:
        scale = values if scale is None else scale * values
        now, bad, verb = scale, ~((np.abs(scale) >= lo) & (np.abs(scale) <= hi)), "scales"
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"feature transform {path}: component {number} (<{comp.kind}>) {verb} input {at} by {now[at]:.6g}"
            f"{' (with the components before it)' if now[at] != values[at] else ''}; asr-init takes shifts within "
            f"+-{hi:.2g} and scales of magnitude {lo:.2g} to {hi:.2g} (standard deviations 1 / scale), beyond which "
            "the normalised inputs are not finite or no longer depend on the frame"
        )
    return shift, scale


def _tiled(values: np.ndarray, offsets: int) -> bool:
    """Whether the values of the spliced dimensions repeat exactly from one offset to the next."""
    blocks = values.reshape(offsets, -1)
    return bool((blocks == blocks[0]).all())


def _fold_into_first_layer(
    hidden: list[tuple[torch.Tensor, torch.Tensor]], pipeline: FeaturePipeline, shift: np.ndarray, scale: np.ndarray
) -> None:
    """Make layer 1 on the pipeline's inputs compute what it computed on the transform's.

    With transform inputs u = (x + s) * r and pipeline inputs v = (x - m) / sd (m, sd tiled),
    u = r * sd * v + r * (s + m), so W u + b = (W diag(r sd)) v + (b + W (r (s + m)))."""
    n = 2 * pipeline.splice + 1
    m = np.tile(np.asarray(pipeline.mean), n)
    sd = np.tile(np.asarray(pipeline.std), n)
    if pipeline.squash:
        raise UserError(
            "the feature transform normalises its spliced dimensions differently from one offset to the next "
            "(or scales by a negative number) and ends in <Sigmoid>; asr-init can take only one of the two"
        )
    w, b = hidden[0]
    w64 = w.double().numpy()
    new_w = w64 * (scale * sd)[None, :]
    new_b = b.double().numpy() + w64 @ (scale * (shift + m))
    hidden[0] = (torch.from_numpy(new_w.astype(np.float32)), torch.from_numpy(new_b.astype(np.float32)))


def find_feature_transform(path: Path, feature_transform: str | Path | None) -> Path:
    """The feature transform of the network at `path`: the one given, or Kaldi's
    final.feature_transform beside it (steps/nnet/pretrain_dbn.sh and train.sh put it there)."""
    if feature_transform is not None:
        ft = Path(feature_transform)
        if not ft.exists():  # a pipe or a device is refused where it is read
            raise UserError(f"feature transform {ft} does not exist")
        return ft
    ft = Path(path).parent / "final.feature_transform"
    if not ft.exists():
        raise UserError(
            f"no feature transform for Kaldi network {path}: there is no {ft}; give it with --feature-transform "
            "(the final.feature_transform Kaldi wrote with the network; for a network trained without one, a file "
            "holding '<Nnet> </Nnet>')"
        )
    return ft


def load_kaldi_network(path: Path, feature_transform: str | Path | None = None) -> KaldiStack:
    """A Kaldi nnet1 network (.dbn, .nnet) and its feature transform as asr-init's layers and pipeline."""
    path = Path(path)
    hidden, act, output = network_layers(read_nnet(path), path)
    ft = find_feature_transform(path, feature_transform)
    transform = read_nnet(ft, transform=True)
    first_in = (hidden[0] if hidden else output)[0].shape[1]
    # The dimensions a transform declares need no data behind them (<Splice> 50000000 ...):
    # they are compared with the network's, which its weights back, before any array is made.
    if transform and transform[-1].output_dim != first_in:
        raise UserError(
            f"Kaldi network {path} takes {first_in} inputs but feature transform {ft} gives "
            f"{transform[-1].output_dim}; give the feature transform the network was trained with"
        )
    pipeline, shift, scale = pipeline_from_transform(transform, ft, transform[0].input_dim if transform else first_in)
    n = 2 * pipeline.splice + 1
    # A transform asr-init wrote is tiled, its scales positive: nothing to fold. The pipeline divides by
    # |1 / scale|, so a negative scale's sign is folded into layer 1 too.
    folded = not (_tiled(shift, n) and _tiled(scale, n)) or bool((scale < 0).any())
    if folded and not hidden:
        raise UserError(
            f"feature transform {ft} normalises differently per offset (or scales by a negative number), and "
            f"{path} has no hidden layer to fold that into"
        )
    if folded:
        _fold_into_first_layer(hidden, pipeline, shift, scale)
    return KaldiStack(hidden, act, output, pipeline, folded)


def kaldi_dbn(path: Path, feature_transform: str | Path | None = None) -> dict:
    """A Kaldi DBN (steps/nnet/pretrain_dbn.sh's N.dbn: <AffineTransform> <Sigmoid> pairs) as
    the dict `load_dbn` returns for a dbn.pt, so that `finetune --dbn` takes either."""
    net = load_kaldi_network(path, feature_transform)
    if net.output is not None:
        raise UserError(
            f"Kaldi network {path} ends in <Softmax>: it is a trained network, not a DBN; "
            "use --init-from with --reuse-layers to start from its hidden layers"
        )
    if net.activation != "sigmoid":
        raise UserError(f"Kaldi network {path} has {net.activation} layers; a DBN's layers are sigmoid")
    visible = "bernoulli" if net.pipeline.squash else "gauss"
    kaldi = {"network": str(path), "feature_transform": str(find_feature_transform(path, feature_transform))}
    return dbn_record(net.hidden, net.pipeline, [], [], visible) | {"kaldi": kaldi}
