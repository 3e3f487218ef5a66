"""Export stage: Keras checkpoint -> ONNX and TFLite (fp32/fp16/int8) with cards and parity.

Installed as ``evopose_sdk.export`` (extra ``[export]``).
"""
