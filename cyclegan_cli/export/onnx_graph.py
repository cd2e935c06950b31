"""The generator as an ONNX graph: export, structure checks, and parity with PyTorch in ONNX Runtime.

Every graph cyc writes has one interface: input ``input``, float32 NCHW RGB in [-1, 1], dynamic N, H and W (H and
W multiples of 4); output ``output``, the same. An fp16 graph keeps that float32 interface (Cast nodes at the
edges), holds fp16 weights and computes in fp16, except every InstanceNormalization, which takes and gives float32
(casts around it): fp16 InstanceNorm overflows on TensorRT and ONNX Runtime's CUDA provider, and TensorRT 11 builds
strongly typed networks only, so the graph's types are the engine's precision (docs/internals.md).

The export uses the torch.export-based exporter (``dynamo=True``), which gives a clean graph here: reflection
padding becomes one ``Pad(mode=reflect)``, each norm one ``InstanceNormalization``, no shape arithmetic. The
legacy TorchScript exporter serves only where onnxscript is missing (its graph computes the pads with a dozen
shape ops per Pad). Nothing here is imported by the CLI at start-up.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.atomic import atomic_path
from cyclegan_cli.errors import CycError, EngineUnavailable, first_line
from cyclegan_cli.measured import GENERATOR_PEAK_TO_PEAK, psnr_of
from cyclegan_cli.models.artifacts import DYNAMIC_AXES, INPUT_NAME, ONNX_PRECISION_KEY, OUTPUT_NAME
from cyclegan_cli.plugin_api import install_hint

if TYPE_CHECKING:
    import numpy as np
    import onnx

DEFAULT_OPSET = 18
INSTALL_HINT = install_hint("onnx")
FP32_MAX_ABS_ERROR = 1e-3  # an fp32 graph further from PyTorch than this (max abs error) is not kept


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise EngineUnavailable(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from None


# --- the module that is exported ------------------------------------------------------------------------------


def _exportable(generator, fp16: bool):
    """A CPU float copy of ``generator`` wrapped for export; with ``fp16`` the fp16 wrapper described above."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Float32InstanceNorm(nn.Module):
        """InstanceNorm computed in float32 whatever the activations' dtype (its learned scale and shift too,
        where it has them), the result cast back."""

        def __init__(self, norm: nn.InstanceNorm2d):
            super().__init__()
            if norm.track_running_stats:
                raise CycError("export: InstanceNorm with running statistics is not supported")
            self.eps = norm.eps
            # plain attributes, not buffers: the net's .half() must not round them
            self.scale = norm.weight.detach().float().clone() if norm.affine else None
            self.shift = norm.bias.detach().float().clone() if norm.affine else None

        def forward(self, x):
            return F.instance_norm(x.float(), weight=self.scale, bias=self.shift, eps=self.eps).to(x.dtype)

    class Graph(nn.Module):
        def __init__(self, net: nn.Module, dtype):
            super().__init__()
            self.net = net
            self.dtype = dtype

        def forward(self, x):
            if self.dtype == torch.float32:
                return self.net(x)
            return self.net(x.to(self.dtype)).float()

    net = copy.deepcopy(generator).to(device="cpu", dtype=torch.float32).eval()
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.InstanceNorm2d):
                    setattr(module, name, Float32InstanceNorm(child))
        net = net.half()
    for p in net.parameters():
        p.requires_grad_(False)
    return Graph(net, dtype).eval()


def export_onnx(generator, path: str | Path, *, fp16: bool = False, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``generator`` (a ResnetGenerator) to ``path`` as an ONNX graph, atomically; return the path.

    Input ``input`` / output ``output``: float32 NCHW in [-1, 1], dynamic N, H, W. With ``fp16``: fp16 weights and
    activations, float32 I/O with Casts at the edges, every InstanceNormalization in float32 (checked here).
    """
    _require_onnx()
    import onnx

    path = Path(path)
    module = _exportable(generator, fp16)
    try:
        model = _export_dynamo(module, opset)
    except ImportError:  # no onnxscript: the legacy exporter still gives a correct (if busier) graph
        model = _export_legacy(module, opset)
    _tidy(model, fp16=fp16)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several checker/inference error types
        raise CycError(f"export: the ONNX graph does not pass onnx.checker ({first_line(exc, 300)})") from None
    if fp16:
        wrong = [n for n in instance_norm_dtypes(model) if n.input != "float32" or n.output != "float32"]
        if wrong:
            raise CycError(
                f"export: {len(wrong)} InstanceNormalization node(s) are not computed in float32 "
                f"(first: {wrong[0].name}, {wrong[0].input} -> {wrong[0].output})"
            )
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return path


def _example_input():
    import torch

    return torch.rand(2, 3, 64, 64) * 2 - 1  # batch 2: a batch of 1 invites the exporter to specialise N


def _export_dynamo(module, opset: int) -> onnx.ModelProto:
    import onnxscript  # noqa: F401  (the dynamo exporter needs it; ImportError selects the legacy path)
    import torch
    from torch.export import Dim

    dims = {axis: Dim(name, min=1 if name == "N" else 4) for axis, name in DYNAMIC_AXES.items()}
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            program = torch.onnx.export(
                module,
                (_example_input(),),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": dims},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:  # torch.export / onnxscript raise many error types
        raise CycError(f"export: torch.onnx.export failed ({first_line(exc, 300)})") from exc
    return program.model_proto


def _export_legacy(module, opset: int) -> onnx.ModelProto:
    import warnings

    import onnx
    import torch

    buffer = io.BytesIO()
    axes = dict(DYNAMIC_AXES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (_example_input(),),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=opset,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def _tidy(model: onnx.ModelProto, *, fp16: bool) -> None:
    """Name the dynamic axes N, H, W on both ends, drop exporter debug metadata, describe the interface."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in DYNAMIC_AXES.items():
            dims[axis].ClearField("dim_value")
            dims[axis].dim_param = name
    # The output's H/W came out as expressions such as 4*((H - 1)//4) + 4, i.e. H for the multiples of 4 we take;
    # intermediate shapes are recomputed by whoever needs them.
    del model.graph.value_info[:]
    for node in model.graph.node:
        del node.metadata_props[:]
    del model.metadata_props[:]
    model.doc_string = "cyc CycleGAN generator"
    for key, value in {
        "cyc.input": f"{INPUT_NAME}: float32 NCHW RGB in [-1, 1]; N, H, W dynamic; H and W multiples of 4",
        "cyc.output": f"{OUTPUT_NAME}: float32 NCHW RGB in [-1, 1], the input's shape",
        ONNX_PRECISION_KEY: "fp16" if fp16 else "fp32",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# --- structure --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTypes:
    name: str
    input: str
    output: str


def _tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    """Every tensor's element type (numpy-style name), after ONNX shape inference."""
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types: dict[str, str] = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        types[value.name] = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
    for init in graph.initializer:
        types[init.name] = helper.tensor_dtype_to_np_dtype(init.data_type).name
    return types


def instance_norm_dtypes(model: onnx.ModelProto | str | Path) -> list[NodeTypes]:
    """For each InstanceNormalization: the element types of its data input and of its output."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    types = _tensor_types(model)
    return [
        NodeTypes(node.name or node.output[0], types.get(node.input[0], "?"), types.get(node.output[0], "?"))
        for node in model.graph.node
        if node.op_type == "InstanceNormalization"
    ]


def conv_weight_dtypes(model: onnx.ModelProto | str | Path) -> set[str]:
    """The element types of the Conv / ConvTranspose weights and biases."""
    import onnx
    from onnx import helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inits = {i.name: i for i in model.graph.initializer}
    return {
        helper.tensor_dtype_to_np_dtype(inits[name].data_type).name
        for node in model.graph.node
        if node.op_type in ("Conv", "ConvTranspose")
        for name in node.input[1:]
        if name in inits
    }


# --- parity with PyTorch ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parity:
    """How far ONNX Runtime's output is from PyTorch fp32's, on values in [-1, 1]."""

    label: str
    shape: tuple[int, ...]
    max_abs: float
    psnr: float  # dB, peak-to-peak 2 (the [-1, 1] range)

    def line(self) -> str:
        return (
            f"{self.label} {'x'.join(map(str, self.shape))}: max abs error {self.max_abs:.2e}, PSNR {self.psnr:.1f} dB"
        )


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A real-looking test picture (H x W x 3 uint8 RGB): smooth gradients, a disc, stripes, flat areas, noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    img = np.stack([u, v, 1.0 - 0.5 * (u + v)], axis=-1) * 200 + 20  # sky-like gradient
    disc = (u - 0.35) ** 2 + (v - 0.55) ** 2 < 0.04
    img[disc] = (230, 180, 40)  # a sun
    stripes = (v > 0.7) & (np.sin(x * 0.6) > 0)
    img[stripes] = img[stripes] * 0.4  # a fence: hard edges, high frequency
    img += rng.normal(0, 4, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def image_to_input(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 (H, W multiples of 4) -> 1 x 3 x H x W float32 in [-1, 1]."""
    import numpy as np

    return (image.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(127.5) - np.float32(1.0)).copy()


def compare_with_torch(
    generator, onnx_path: str | Path, inputs: dict[str, np.ndarray], *, providers: list | None = None
) -> list[Parity]:
    """Run each named NCHW float32 input through ``generator`` (fp32, CPU) and the graph in ONNX Runtime."""
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        raise EngineUnavailable(f"checking an export needs ONNX Runtime: {INSTALL_HINT}") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=providers or ["CPUExecutionProvider"])
    net = copy.deepcopy(generator).to(device="cpu", dtype=torch.float32).eval()
    results = []
    for label, x in inputs.items():
        with torch.inference_mode():
            expected = net(torch.from_numpy(x)).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        if got.shape != expected.shape or got.dtype != np.float32:
            raise CycError(f"{onnx_path}: output {got.dtype} {got.shape}, expected float32 {expected.shape}")
        diff = got.astype(np.float64) - expected.astype(np.float64)
        max_abs = float(np.abs(diff).max()) if np.isfinite(diff).all() else math.inf
        results.append(Parity(label, tuple(x.shape), max_abs, psnr_of(got, expected, GENERATOR_PEAK_TO_PEAK)))
    return results


def default_check_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """A random input (batch 2, 64 x 96) and a real-looking picture (256 x 256)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "random": rng.uniform(-1, 1, (2, 3, 64, 96)).astype(np.float32),
        "image": image_to_input(synthetic_image(256, 256, seed)),
    }
