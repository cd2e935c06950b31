"""The generator as an OpenVINO model: what the openvino engine compiles in fp32 or bf16 (converted once per
weights and kept in the cache), and what ``quantize`` turns into int8; and how such a model is written whole.
OpenVINO is imported inside the functions."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from cyclegan_cli.models.artifacts import INPUT_NAME, OUTPUT_NAME


@contextlib.contextmanager
def without_telemetry():
    """OpenVINO's model converter and NNCF send usage telemetry by default, unless the environment says CI
    (``CI=true``): while this is open, it says so. They send from a process forked off a worker thread, and in cyc's
    process that fork deadlocked OpenBLAS: the test suite hung in numpy's ``eigvals`` while the forked children
    waited, and a tool that translates local files has no business reaching out to the network anyway."""
    previous = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = previous


def openvino_model(generator):
    """The generator as an OpenVINO model with dynamic N, H, W and the ONNX graph's input and output names. Its
    precision is chosen when it is compiled (the inference precision hint), or by quantizing it (``quantize``)."""
    import warnings

    import openvino as ov
    import torch

    # The trace is taken here rather than by convert_model, so as to skip torch.jit's trace check: it runs the
    # network twice more and imports torch.distributed to compare the runs, about 1 s of every start-up on a
    # 2-core AVX2-only EPYC (the generator has no data-dependent control flow for the check to find). torch.jit warns of its own
    # deprecation and of constant shape checks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(generator.eval(), torch.zeros(1, 3, 64, 64), check_trace=False)
        with without_telemetry():
            model = ov.convert_model(traced, input=[ov.PartialShape([-1, 3, -1, -1])])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model


def kept_openvino_model(core, generator):
    """:func:`openvino_model`, converted once per weights and OpenVINO version and kept in the cache folder's
    ``openvino/`` as fp32 IR: later runs of the same weights read it instead of tracing and converting again
    (measured in docs/internals.md, "cyc distill"). A kept file that cannot be read is converted again; a cache
    that cannot be written only costs the time."""
    import openvino as ov

    from cyclegan_cli.cache import cache_dir
    from cyclegan_cli.models.artifacts import weights_sha256

    version = ov.__version__.split("-")[0]
    xml = cache_dir("openvino") / f"{weights_sha256(generator)[:24]}-openvino-{version}.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        with contextlib.suppress(RuntimeError):
            return core.read_model(str(xml))
    model = openvino_model(generator)
    with contextlib.suppress(OSError, RuntimeError):
        save_openvino_model(model, xml)
    return model


def save_openvino_model(model, xml: Path, sidecar: dict | None = None) -> list[Path]:
    """Write ``<name>.bin``, its sidecar ``<name>.xml.json`` (if given), then ``<name>.xml``, each under a
    temporary name renamed when whole; an older ``.xml`` is removed first, so it never meets the new ``.bin``.
    The weights are written as they are (fp32 stays fp32)."""
    import openvino as ov

    from cyclegan_cli.atomic import atomic_write_bytes, temp_path_for

    xml = Path(xml)
    xml.parent.mkdir(parents=True, exist_ok=True)
    binary, side = xml.with_suffix(".bin"), xml.with_name(xml.name + ".json")
    tmp_xml = temp_path_for(xml)
    tmp_bin = tmp_xml.with_suffix(".bin")  # where OpenVINO writes the weights of tmp_xml
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)  # the weights as measured, not halved
        for path in (tmp_bin, tmp_xml):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            xml.unlink()
        os.replace(tmp_bin, binary)
        if sidecar is not None:
            atomic_write_bytes(side, (json.dumps(sidecar, indent=2) + "\n").encode())
        os.replace(tmp_xml, xml)
    finally:
        for path in (tmp_xml, tmp_bin):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return [xml, binary, side] if sidecar is not None else [xml, binary]
