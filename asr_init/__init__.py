"""asr-init: hybrid DNN-HMM acoustic model training with measured weight initialisation."""

__version__ = "0.1.0"
