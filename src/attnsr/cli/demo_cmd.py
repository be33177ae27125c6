"""``attnsr demo``: upscale a sample photo with the bundled model (the quick start)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from attnsr.cli.app import app, console, handle_errors
from attnsr.errors import AttnsrError


def sample_image() -> Path:
    """A photo that a dependency ships: matplotlib's ``grace_hopper.jpg`` (512x600)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise AttnsrError(f"{path}: matplotlib's sample image is missing; pass your own "
                          "image to `attnsr upscale`")
    return path


@app.command("demo")
@handle_errors
def demo(
    output: Path = typer.Option(Path("attnsr-demo"), "-o", "--output",
                                help="Folder for the results (created)."),
    scale: int = typer.Option(4, "--scale", "-s", help="2, 3 or 4."),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Default: the bundled model for the scale."),
) -> None:
    """Upscale a sample photo with the bundled model and a bicubic reference."""
    from attnsr.data.io import read_image
    from attnsr.inference.upscale import Upscaler, save_like

    src = sample_image()
    output.mkdir(parents=True, exist_ok=True)
    img = read_image(src)
    up = Upscaler(model, scale=scale)
    start = time.perf_counter()
    sr = up.upscale_loaded(img)
    seconds = time.perf_counter() - start
    sr_path = save_like(output / f"{src.stem}_x{scale}_{up.descriptor.name}.png", sr, img)
    bic = Upscaler("bicubic", scale=scale).upscale_loaded(img)
    bic_path = save_like(output / f"{src.stem}_x{scale}_bicubic.png", bic, img)
    h, w = sr.shape[:2]
    console.print(f"{src.name} {img.pixels.shape[1]}x{img.pixels.shape[0]} -> {w}x{h} "
                  f"with {up.descriptor.name} in {seconds:.2f} s "
                  f"({w * h / 1e6 / seconds:.2f} MP/s)")
    console.print(f"wrote {sr_path}\nwrote {bic_path} (bicubic, for comparison)")
