"""Choices of where and how tensors are computed, shared by the `features` and `train` sections."""

# Autocast precisions of feature extraction and training. No fp16: training would need loss
# scaling, and bf16 (the CUDA default) keeps fp32's range.
PRECISIONS = ("auto", "bf16", "fp32")
