"""Layer-wise RBM pre-training and DNN fine-tuning on one training loop."""
