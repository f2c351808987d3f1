"""What a multi-domain method (StarGAN's pattern) shares: a target domain chosen at
predict time by name, or every domain as named outputs.

A multi-domain method learns from volumes of two or more domains (the workflow's
``data.domains``, stored in the model) and translates an input into any of them. Its
condition is :class:`TargetDomain`; :class:`TargetDomainOutputs`, a mixin put first
among the bases, gives it the condition's checks, the input's domain, the declared
outputs (one, or one per domain named after it) and a :meth:`~TargetDomainOutputs.predict`
that runs the network once per domain when no target is named::

    class MyStar(
        TargetDomainOutputs, DomainIntensities, PatchNetworkMethod[MyOptions, TargetDomain]
    ):
        def forward(self, windows, condition):
            return self.network(windows, self.target_labels(windows, condition))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from pydantic import BaseModel, ConfigDict

from medi2i.errors import OptionsError
from medi2i.method import Output

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.method_services import PredictContext


class TargetDomain(BaseModel):
    """The predict-time condition of a multi-domain method.

    Attributes:
        target_domain: The domain to translate into (one of the model's domains);
            ``None``: every domain, each written as an output named after it.
        source_domain: The input's domain, which decides its intensity scaling (CT in
            HU, other images by their own percentiles); ``None``: an image without
            absolute units (MR).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_domain: str | None = None
    source_domain: str | None = None


class TargetDomainOutputs:
    """Mixin of multi-domain methods whose condition is :class:`TargetDomain`.

    Example:
        >>> from medi2i.testing.multi_domain_example import ExampleStar
        >>> from medi2i.testing.domain_cases import MULTI_DOMAINS
        >>> method = ExampleStar()
        >>> method.use_domains(MULTI_DOMAINS)
        >>> [o.name for o in method.outputs(TargetDomain())]
        ['scanner-a', 'scanner-b', 'scanner-c']
    """

    id: ClassVar[str]

    def require_domains(self) -> int:
        """The number of domains (two or more).

        Raises:
            OptionsError: The method has none: it was not trained.
        """
        names = cast("Any", self).domain_names
        if len(names) < 2:
            raise OptionsError(
                f"method {self.id!r} has no domains: train it on multi-domain data, or load "
                "a trained model"
            )
        return len(names)

    def check_condition(self, condition: TargetDomain) -> None:
        self.require_domains()
        names = cast("Any", self).domain_names
        for field in ("target_domain", "source_domain"):
            name = getattr(condition, field)
            if name is not None and name not in names:
                raise OptionsError(
                    f"method {self.id!r} has no domain {name!r}; {field} must be one of "
                    f"its domains: {list(names)}"
                )

    def input_domain(self, condition: TargetDomain) -> str | None:
        return condition.source_domain

    def export_refusal(self, condition: TargetDomain) -> str | None:
        """Without a target domain the prediction is one output per domain, not one
        window function: the export needs the domain to translate into."""
        if condition.target_domain is None:
            names = ", ".join(cast("Any", self).domain_names) or "its domains"
            return (
                "an export translates into one domain; name it with -c target_domain=NAME "
                f"(one of {names}), and export once per domain"
            )
        refusal: str | None = cast("Any", super()).export_refusal(condition)
        return refusal

    def outputs(self, condition: TargetDomain) -> tuple[Output, ...]:
        if condition.target_domain is not None:
            return (self._domain_output("", condition.target_domain),)
        self.require_domains()
        names = cast("Any", self).domain_names
        return tuple(self._domain_output(name, name) for name in names)

    def _domain_output(self, name: str, domain: str) -> Output:
        spec = cast("Any", self).domain(domain).volume_spec()
        return Output(name, spec, domain=domain, condition={"target_domain": domain})

    def predict(
        self, image: MetaTensor, context: PredictContext[TargetDomain]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """The prediction into the target domain, or into every domain (by name)."""
        base = cast("Any", super())
        if context.condition.target_domain is not None:
            result: torch.Tensor | Mapping[str, torch.Tensor] = base.predict(image, context)
            return result
        outputs = {}
        for name in cast("Any", self).domain_names:
            one = context.condition.model_copy(update={"target_domain": name})
            outputs[name] = base.predict(image, dataclasses.replace(context, condition=one))
        return outputs

    def target_labels(self, windows: torch.Tensor, condition: TargetDomain) -> torch.Tensor:
        """The target domain's label (its index in the domains) for every window."""
        index = cast("Any", self).domain_names.index(str(condition.target_domain))
        return torch.full((windows.shape[0],), index, dtype=torch.int64, device=windows.device)
