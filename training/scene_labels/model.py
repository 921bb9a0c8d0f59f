"""timm backbones for reBEN scene multi-labels, built for 120x120 inputs and random initialisation.

ResNet-50 is the reBEN reference model (Clasen et al., 2024); MLP-Mixer, ConvMixer and PoolFormer
are the transformer-era architectures compared with it under federated learning (shared/papers.md
section 5). Each one's default configuration is the smallest named timm model of its family
(resnet50, mixer_s16, convmixer_768_32, poolformer_s12), adapted to 120x120 patches; ``width`` and
``depth`` shrink or grow it (tests and fixture runs use a few channels and one block per stage):

- resnet50: bottleneck ResNet, stage widths (w, 2w, 4w, 8w) x 4, ``depth`` blocks in every stage
  (default w=64, depths 3-4-6-3);
- mlp-mixer: 12x12-pixel patches (10x10 tokens), ``width``-dim tokens, ``depth`` mixer blocks
  (default 512, 8);
- convmixer: ConvMixer-``width``/``depth`` (Trockman & Kolter, "Patches Are All You Need?", 2022):
  7x7-pixel patches (17x17 tokens; the last pixel row and column are not seen), 7x7 depthwise
  kernels, ReLU; default ConvMixer-768/32 as in that paper and timm's ``convmixer_768_32``, which a
  public federated simulation of the same four models on BigEarthNet-S2 also builds
  (github.com/felix-zailskas/CV4RS);
- poolformer: stage widths (w, 2w, 5w, 8w), ``depth`` blocks in every stage (default w=64,
  depths 2-2-6-2).

Dropout and drop-path (where the architecture has it; ConvMixer has only dropout) default to the
reBEN recipe's 0.15. Nothing is downloaded: weights start random.
"""
from __future__ import annotations

from timm.models.convmixer import ConvMixer
from timm.models.metaformer import GroupNorm1, MetaFormer, Pooling
from timm.models.mlp_mixer import MlpMixer
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from training.datasets.reben_format import PATCH_PIXELS

MODELS = ("resnet50", "mlp-mixer", "convmixer", "poolformer")


def scene_backbone(
    model: str,
    in_channels: int,
    num_classes: int,
    width: int | None = None,
    depth: int | None = None,
    dropout: float = 0.15,
) -> nn.Module:
    """An ``nn.Module`` mapping ``[N, in_channels, 120, 120]`` to ``[N, num_classes]`` logits."""
    common = {"in_chans": in_channels, "num_classes": num_classes, "drop_rate": dropout}
    if model == "resnet50":
        base = width or 64
        return ResNet(
            block=Bottleneck,
            layers=(depth,) * 4 if depth else (3, 4, 6, 3),
            channels=(base, 2 * base, 4 * base, 8 * base),
            stem_width=base,
            drop_path_rate=dropout,
            **common,
        )
    if model == "mlp-mixer":
        return MlpMixer(
            img_size=PATCH_PIXELS,
            patch_size=12,
            embed_dim=width or 512,
            num_blocks=depth or 8,
            drop_path_rate=dropout,
            **common,
        )
    if model == "convmixer":
        return ConvMixer(
            dim=width or 768, depth=depth or 32, kernel_size=7, patch_size=7, act_layer=nn.ReLU, **common
        )
    if model == "poolformer":
        base = width or 64
        return MetaFormer(
            depths=(depth,) * 4 if depth else (2, 2, 6, 2),
            dims=(base, 2 * base, 5 * base, 8 * base),
            token_mixers=Pooling,
            downsample_norm=None,
            mlp_act=nn.GELU,
            mlp_bias=True,
            norm_layers=GroupNorm1,
            layer_scale_init_values=1e-5,
            res_scale_init_values=None,
            use_mlp_head=False,
            drop_path_rate=dropout,
            **common,
        )
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")
