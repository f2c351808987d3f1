"""MUNIT's autoencoders: content, style and an AdaIN decoder per domain (Huang et al. 2018).

An image is split into a *content* code (a feature map shared by both domains,
instance-normalised so it carries no global intensity) and a *style* code (a short
vector specific to its domain). Translation a → b decodes the content of an a image with
a style of domain b: drawn from the prior ``N(0, I)`` or encoded from a b image.

Layers (paper: 2D, 64 features, style 8, MLP 256):

* content encoder: 7-wide convolution, ``downsamples`` 4-wide stride-2 convolutions
  doubling the features, residual blocks, all with instance normalization;
* style encoder: 7-wide convolution, ``style_downsamples`` 4-wide stride-2
  convolutions (doubling up to four times the first width), no normalization (it would
  remove the style), global average pooling, a 1-wide convolution to ``style_dim``;
* decoder: an MLP maps the style to the scale and shift of every AdaIN layer of the
  residual blocks; nearest upsampling by 2, a convolution and layer normalization per
  stage; a 7-wide convolution with tanh.
"""

from __future__ import annotations

import torch

from medi2i_unit.blocks import LayerNorm, ResidualBlock, adain_layers, conv


class ContentEncoder(torch.nn.Sequential):
    """Image to content code (``filters · 2**downsamples`` features)."""

    def __init__(self, *, filters: int, downsamples: int, blocks: int) -> None:
        layers: list[torch.nn.Module] = [conv(1, filters, kernel=7)]
        for level in range(downsamples):
            layers.append(conv(filters * 2**level, filters * 2 ** (level + 1), kernel=4, stride=2))
        layers += [ResidualBlock(filters * 2**downsamples) for _ in range(blocks)]
        super().__init__(*layers)


class StyleEncoder(torch.nn.Module):
    """Image (any size of at least ``2**downsamples`` per axis) to a style vector."""

    def __init__(self, *, filters: int, downsamples: int, style_dim: int) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = [conv(1, filters, kernel=7, norm=None)]
        width = filters
        for level in range(downsamples):
            wider = filters * min(2 ** (level + 1), 4)
            layers.append(conv(width, wider, kernel=4, stride=2, norm=None))
            width = wider
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Conv3d(width, style_dim, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Styles ``(N, style_dim)``."""
        pooled = self.body(image).mean(dim=(2, 3, 4), keepdim=True)
        style: torch.Tensor = self.head(pooled).flatten(1)
        return style


class AdaINDecoder(torch.nn.Module):
    """Content code and style vector to an image in [-1, 1]."""

    def __init__(
        self, *, filters: int, downsamples: int, blocks: int, style_dim: int, mlp_features: int
    ) -> None:
        super().__init__()
        width = filters * 2**downsamples
        self.blocks = torch.nn.Sequential(*[ResidualBlock(width, "adain") for _ in range(blocks)])
        ups: list[torch.nn.Module] = []
        for level in reversed(range(downsamples)):
            narrower = filters * 2**level
            ups += [
                torch.nn.Upsample(scale_factor=2, mode="nearest"),
                conv(narrower * 2, narrower, kernel=3, norm=None, act=None),
                LayerNorm(narrower),
                torch.nn.ReLU(),
            ]
        self.up = torch.nn.Sequential(*ups)
        self.out = torch.nn.Sequential(
            conv(filters, 1, kernel=7, norm=None, act=None), torch.nn.Tanh()
        )
        self.adain = adain_layers(self.blocks)
        parameters = sum(2 * layer.channels for layer in self.adain)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(style_dim, mlp_features),
            torch.nn.ReLU(),
            torch.nn.Linear(mlp_features, mlp_features),
            torch.nn.ReLU(),
            torch.nn.Linear(mlp_features, parameters),
        )

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        parameters = self.mlp(style)
        start = 0
        for layer in self.adain:
            shift = parameters[:, start : start + layer.channels]
            scale = parameters[:, start + layer.channels : start + 2 * layer.channels]
            layer.set_parameters(scale, shift)
            start += 2 * layer.channels
        image: torch.Tensor = self.out(self.up(self.blocks(content)))
        return image


class MunitAutoencoder(torch.nn.Module):
    """One domain's content encoder, style encoder and decoder."""

    def __init__(
        self,
        *,
        filters: int,
        downsamples: int,
        blocks: int,
        style_dim: int,
        style_downsamples: int,
        mlp_features: int,
    ) -> None:
        super().__init__()
        self.content = ContentEncoder(filters=filters, downsamples=downsamples, blocks=blocks)
        self.style = StyleEncoder(
            filters=filters, downsamples=style_downsamples, style_dim=style_dim
        )
        self.decoder = AdaINDecoder(
            filters=filters,
            downsamples=downsamples,
            blocks=blocks,
            style_dim=style_dim,
            mlp_features=mlp_features,
        )


class MunitNetwork(torch.nn.Module):
    """The autoencoders of domains ``a`` and ``b``.

    Example:
        >>> net = MunitNetwork(filters=4, downsamples=2, blocks=1, style_dim=8,
        ...                    style_downsamples=2, mlp_features=8)
        >>> content = net.autoencoder("a").content(torch.zeros(1, 1, 8, 8, 8))
        >>> net.autoencoder("b").decoder(content, torch.zeros(1, 8)).shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, *, style_dim: int, **sizes: int) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.autoencoders = torch.nn.ModuleDict(
            {d: MunitAutoencoder(style_dim=style_dim, **sizes) for d in ("a", "b")}
        )

    def autoencoder(self, key: str) -> MunitAutoencoder:
        """The autoencoder of domain ``key`` (``"a"`` or ``"b"``)."""
        module = self.autoencoders[key]
        assert isinstance(module, MunitAutoencoder)
        return module

    def translate(
        self, image: torch.Tensor, source: str, target: str, style: torch.Tensor
    ) -> torch.Tensor:
        """The content of ``image`` (domain ``source``) decoded in domain ``target`` with
        ``style`` (``(style_dim,)`` or ``(N, style_dim)``)."""
        content = self.autoencoder(source).content(image)
        styles = style.reshape(-1, self.style_dim).expand(image.shape[0], -1)
        output: torch.Tensor = self.autoencoder(target).decoder(content, styles)
        return output

    def forward(
        self, real_a: torch.Tensor, real_b: torch.Tensor, *, cycle: bool
    ) -> dict[str, torch.Tensor]:
        """Every generator-side tensor of one training step (one forward call).

        Random styles come from torch's global generator (reseeded every step by the
        trainer).

        Returns:
            ``content_a``/``_b`` and ``style_a``/``_b`` (encoded), ``prior_a``/``_b``
            (random styles), ``recon_a``/``_b`` (within-domain reconstructions),
            ``fake_ab``/``fake_ba`` (translations with the random styles),
            ``content_ab``/``_ba`` and ``style_ab``/``_ba`` (the translations
            re-encoded), and with ``cycle`` ``cycle_a``/``_b``.
        """
        ae_a, ae_b = self.autoencoder("a"), self.autoencoder("b")
        content_a, content_b = ae_a.content(real_a), ae_b.content(real_b)
        style_a, style_b = ae_a.style(real_a), ae_b.style(real_b)
        prior_a = torch.randn(real_a.shape[0], self.style_dim, device=real_a.device)
        prior_b = torch.randn(real_b.shape[0], self.style_dim, device=real_b.device)
        fake_ba, fake_ab = ae_a.decoder(content_b, prior_a), ae_b.decoder(content_a, prior_b)
        passes = {
            "content_a": content_a,
            "content_b": content_b,
            "style_a": style_a,
            "style_b": style_b,
            "prior_a": prior_a,
            "prior_b": prior_b,
            "recon_a": ae_a.decoder(content_a, style_a),
            "recon_b": ae_b.decoder(content_b, style_b),
            "fake_ab": fake_ab,
            "fake_ba": fake_ba,
            "content_ab": ae_b.content(fake_ab),
            "content_ba": ae_a.content(fake_ba),
            "style_ab": ae_b.style(fake_ab),
            "style_ba": ae_a.style(fake_ba),
        }
        if cycle:
            passes["cycle_a"] = ae_a.decoder(passes["content_ab"], style_a)
            passes["cycle_b"] = ae_b.decoder(passes["content_ba"], style_b)
        return passes
