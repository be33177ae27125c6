"""``attnsr explain IMAGE --model NAME``: where does the attention look? Writes PNG figures
(comparison, channel / spatial / query attention, LAM) and ``explain.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from attnsr.cli.app import app, console, handle_errors, setup_logging
from attnsr.errors import ConfigError


def parse_ints(text: str | None, count: int, option: str) -> tuple[int, ...] | None:
    """``"3,4"`` -> ``(3, 4)``; a :class:`ConfigError` naming ``option`` otherwise."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count or not all(p.lstrip("-").isdigit() for p in parts):
        raise ConfigError(f"{option} {text!r}: expected {count} comma-separated integers")
    return tuple(int(p) for p in parts)


@app.command("explain")
@handle_errors
def explain_command(
    image: Path = typer.Argument(..., help="Input (low-resolution) image."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Pretrained name (attnsr-x4), checkpoint path, or a "
        "registered model with --random-weights (default: the bundled model for --scale, "
        "as attnsr upscale)."),
    scale: Optional[int] = typer.Option(
        None, "--scale", "-s", help="Upscaling factor (default: the model's; 4 without "
        "--model)."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Allow a registered model without pretrained "
        "weights (random initialisation, seeded: the same on every run)."),
    query: Optional[str] = typer.Option(
        None, "--query", help="X,Y input pixel whose attention over the image is shown "
        "(default: under the patch centre)."),
    patch: Optional[str] = typer.Option(
        None, "--patch", help="X,Y,W,H output patch for the zoom and LAM (output pixels; "
        "default: 16x16 at the centre)."),
    hr: Optional[Path] = typer.Option(
        None, "--hr", help="Ground-truth high-resolution image: adds it to the comparison "
        "and reports PSNR/SSIM."),
    blocks: Optional[list[str]] = typer.Option(
        None, "--blocks", help="Blocks to draw: name patterns (body.*.attn) or indices; "
        "repeatable (default: up to 12 evenly spaced)."),
    lam_steps: int = typer.Option(32, "--lam-steps", help="LAM path steps (0: no LAM)."),
    lam_sigma: float = typer.Option(4.0, "--lam-sigma", help="Blur of the LAM baseline "
                                    "(input pixels)."),
    lam_context: int | None = typer.Option(
        None, "--lam-context", help="LAM runs on the patch footprint widened by this many "
        "input pixels (-1: the whole image; default: the model's receptive field, at least "
        "32, exact for local models)."),
    out: Path = typer.Option(Path("explain"), "--out", "-o", help="Output directory."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, mps)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Explain a model on one image: attention maps, query attention and LAM."""
    import torch

    from attnsr import resolver
    from attnsr.data.io import read_image
    from attnsr.explain.lam import LAMConfig
    from attnsr.explain.report import ExplainOptions, explain_image

    setup_logging(verbose)
    if lam_steps < 0:
        raise ConfigError(f"--lam-steps {lam_steps}: must be >= 0")
    if lam_sigma <= 0:
        raise ConfigError(f"--lam-sigma {lam_sigma}: must be positive")
    query_xy, patch_box = parse_ints(query, 2, "--query"), parse_ints(patch, 4, "--patch")
    torch.manual_seed(0)  # random weights (--random-weights) are the same on every run
    desc = resolver.resolve(model, scale=scale, backend="torch", device=device,
                            precision="fp32", pretrained=not random_weights)
    if lam_context is None:
        lam_context = max(32, desc.traits.receptive_field)
    opts = ExplainOptions(
        query=query_xy, patch=patch_box, blocks=tuple(blocks or ()),
        lam=LAMConfig(steps=lam_steps, sigma=lam_sigma,
                      context=None if lam_context < 0 else lam_context) if lam_steps else None,
    )
    lr = read_image(image).pixels
    hr_pixels = read_image(hr).pixels if hr is not None else None
    report = explain_image(desc, lr, out, opts, hr_pixels, hr_name=str(hr))
    for name in report["figures"]:
        console.print(f"wrote {out / name}")
    lam = report.get("lam")
    if lam:
        console.print(f"LAM diffusion index {lam['diffusion_index']:.2f} "
                      f"(completeness error {lam['completeness_error']:.1%})")
    console.print(f"numbers in {out / 'explain.json'}")
