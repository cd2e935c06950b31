"""``cyc export``'s work: ``exporter`` (the export of a source's generators), the ONNX graph and its parity check
(``onnx_graph``), the OpenVINO graph (``openvino_graph``), the TensorRT build (``tensorrt_build``) and int8
quantization with its fidelity gate (``quantize``: the only module that imports NNCF).

May import ``models``, ``hub`` and the shared modules. The engines (``cyc_engines``) build on it.
"""
