"""The generator as an OpenVINO model: what the openvino engine compiles in fp32 or bf16, and what ``quantize``
turns into int8. OpenVINO is imported inside the function."""

from __future__ import annotations

from cyclegan_cli.models.artifacts import INPUT_NAME, OUTPUT_NAME


def openvino_model(generator):
    """The generator as an OpenVINO model with dynamic N, H, W and the ONNX graph's input and output names. Its
    precision is chosen when it is compiled (the inference precision hint), or by quantizing it (``quantize``)."""
    import warnings

    import openvino as ov
    import torch

    # The trace is taken here rather than by convert_model, so as to skip torch.jit's trace check: it runs the
    # network twice more and imports torch.distributed to compare the runs, about 1 s of every start-up on two
    # cores (the generator has no data-dependent control flow for the check to find). torch.jit warns of its own
    # deprecation and of constant shape checks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(generator.eval(), torch.zeros(1, 3, 64, 64), check_trace=False)
        model = ov.convert_model(traced, input=[ov.PartialShape([-1, 3, -1, -1])])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model
