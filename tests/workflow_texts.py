"""Workflow texts the workflow tests share: the paired demo cases with the tiny example
regression method, on the CPU."""

from __future__ import annotations

TINY_PAIRED_TRAINING = "{steps: 2, batch_size: 2, device: cpu, progress: false}"


def tiny_paired_workflow(training: str = TINY_PAIRED_TRAINING) -> str:
    """A paired workflow over ``write_demo_cases``' cases (validation demo001, test
    demo003) with ``training`` as its training section (flow-style YAML)."""
    return f"""\
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  layout: {{type: synthrad, root: cases}}
  split: {{validation: [demo001], test: [demo003]}}
method:
  id: example-tiny-regression
  options: {{hidden: 4, roi_size: [16, 16, 16]}}
training: {training}
inference: {{device: cpu, progress: false}}
output: {{root: runs}}
"""
