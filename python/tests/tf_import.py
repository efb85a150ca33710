"""TensorFlow for the suite, imported once (the TensorFlow tests share it).

The suite runs the torch and TensorFlow tests in one process. torch imports
triton lazily (``torch._dynamo``), and triton and TensorFlow both carry LLVM:
when triton's copy loads after TensorFlow's, LLVM aborts the process
("Option ... registered more than once"); in the other order both work. So
triton, when it is installed, is loaded here before TensorFlow."""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
