"""``dscf``: DSCF, the NTIRE 2025 efficient-SR challenge winner (team XiaomiMM; Chai et al.,
"Distillation-Supervised Convolutional Low-Rank Adaptation for Efficient Image
Super-Resolution", CVPRW 2025), as a preset of :mod:`attnsr.models.span`.

DSCLoRA is a *training method*: ConvLoRA adapters on the convs of SPAN (Wan et al. 2024)
plus spatial-affinity distillation from a pre-trained SPAN, merged into the convs after
training. The published network is therefore SPAN itself, in its re-parameterised
(fused) form, at 26 features and 6 blocks (~131K parameters at x4): a 3x3 head, six SPABs
closed by parameter-free attention (``(f + x) * (sigmoid(f) - 0.5)``,
:class:`~attnsr.layers.parameter_free.ParameterFreeAttention`), a 3x3 conv after the last
block, a 1x1 fusion of ``[head, conv_2(block_6), block_1, silu(block_6.c1_r)]`` and a
one-step pixel-shuffle upsampler; input ``(x - DIV2K mean) * 255``, output in [0, 1].

The official checkpoint (``Amazingren/NTIRE2025_ESR`` ``model_zoo/team23_DSCF.pth``, the
same file in ``Yaozzz666/DSCF-SR``) stores only the fused convs: ``conv_1.eval_conv``,
``block_<i>.{c1_r,c2_r,c3_r}.eval_conv``, ``conv_cat``, ``conv_2.eval_conv``,
``upsampler.0`` (44 keys). Those keys are exactly a fused SPAN's, so the ``span`` detector
reads the file (``feature_channels=26, n_blocks=6, fused=True``) and it loads strictly,
with no conversion: a second architecture claiming the same keys could not be told apart
from SPAN by its state dict. ``create_model("dscf", fused=False)`` builds the training
form (Conv3XC branches), whose :meth:`~attnsr.models.span.SPAN.fuse` gives this layout.
"""

from __future__ import annotations

from attnsr.models import span  # noqa: F401  (registers the ``span`` architecture first)
from attnsr.models.registry import register_preset

DSCF_PRESET: dict[str, int | bool] = {"feature_channels": 26, "n_blocks": 6, "fused": True}

register_preset(
    "dscf", "span",
    description="DSCF (NTIRE 2025 ESR winner, DSCLoRA-trained SPAN): 26 feats x 6 SPABs, "
                "fused (~131K); official x4 weights",
    scales=(2, 3, 4),
    **DSCF_PRESET,
)
