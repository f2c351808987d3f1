"""The workflow several tests fit and evaluate: ``domain-intensity-map`` fitted on one
folder of volumes per scanner, evaluated B → A on the pairs of ``evaluation.csv``."""

from __future__ import annotations

from collections.abc import Sequence


def domain_map_workflow(
    domains: Sequence[str] = ("A", "B"), *, report: str = "{figures: false}"
) -> str:
    """The workflow's YAML, fitted on ``data/<domain>`` for each of ``domains``."""
    folders = ", ".join(f"{name}: data/{name}" for name in domains)
    return f"""\
data:
  kind: multi-domain
  layout: {{type: folders, folders: {{{folders}}}}}
  domains: [{", ".join(domains)}]
method:
  id: domain-intensity-map
  options: {{quantiles: 5}}
  condition: {{source_domain: B, target_domain: A}}
inference: {{device: cpu, progress: false}}
evaluation:
  metrics: [mr]
  mask: null
  data:
    kind: paired
    layout: {{type: csv, manifest: evaluation.csv}}
report: {report}
output: {{root: runs}}
"""
