"""Distillation methods. Each computes meta-gradients into a memory and knows nothing of ranks or logs."""
