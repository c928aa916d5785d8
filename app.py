"""srhub's demo: upload an image, pick a model, compare before/after, measure it.

Run it with ``python app.py`` (http://127.0.0.1:7860); on a Hugging Face Space
this file is the entry point. The same three handlers serve the UI and the API
(``/upscale``, ``/evaluate``, ``/models``, see the README's "Demo app" section).
This file is the UI only: the work is in ``srhub.app_backend``, the models,
inference and metrics in the ``srhub`` package.

Settings (environment): ``SRHUB_APP_MODELS``, ``SRHUB_APP_MAX_PIXELS``,
``SRHUB_APP_MAX_OUTPUT_PIXELS``, ``SRHUB_APP_DEVICE``, ``SRHUB_APP_KEEP_SECONDS`` and
``SRHUB_APP_CACHE_SECONDS`` (see ``srhub/app_backend.py``), ``SRHUB_APP_CONCURRENCY``
(model runs at once, default 1) and ``SRHUB_APP_QUEUE`` (waiting requests, default 64).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

try:  # on ZeroGPU, spaces must be imported before torch sets up CUDA; elsewhere it is a no-op
    import spaces  # noqa: F401
except ImportError:  # spaces is only needed on Hugging Face Spaces
    pass

import gradio as gr
import torch

from srhub import app_backend as backend

CONCURRENCY = int(os.environ.get("SRHUB_APP_CONCURRENCY", 1))
QUEUE_SIZE = int(os.environ.get("SRHUB_APP_QUEUE", 64))
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.png"))
DEFAULT_MODEL = backend.default_model()
DEFAULT_TILE = backend.DEFAULT_TILE


@contextlib.contextmanager
def _user_errors():
    """Show problems with the user's input as a Gradio error message instead of a stack trace."""
    try:
        yield
    except ValueError as error:  # InputError and srhub's own checks on values
        raise gr.Error(str(error), title="Cannot do that") from error


def _path(value: str | dict | None) -> str | None:
    """The file path in an image input: a path (direct calls) or Gradio's file payload.

    The events run with ``preprocess=False``, so the upload reaches srhub's own
    reader (with its size and format checks and clear messages) instead of
    Gradio's, which answers a non-image with a generic error.
    """
    if isinstance(value, dict):
        return value.get("path")
    return value


# ---------------------------------------------------------------------- handlers (UI and API)


def upscale(image: str, model: str = DEFAULT_MODEL, outscale: float = 0, tile: int = DEFAULT_TILE):
    """Super-resolve one image.

    Args:
        image: the input image file.
        model: a model name from /models.
        outscale: final scale factor (1-8); 0 keeps the model's own scale.
        tile: tile size in input pixels (0 = the whole image at once).
    Returns:
        (input resized, result) for the slider, the full-resolution PNG, details (sizes, seconds, device).
    """
    with _user_errors():
        return backend.upscale_file(_path(image), model, outscale=outscale, tile=tile)


def evaluate(image: str, ground_truth: str | None = None, model: str = DEFAULT_MODEL, tile: int = DEFAULT_TILE):
    """Measure a model against a ground truth, next to MATLAB-bicubic upscaling.

    Args:
        image: without ground_truth, a high-resolution reference (the app makes the
            low-resolution input by MATLAB-bicubic downscaling); with it, your own input.
        ground_truth: the high-resolution truth for your input (scale x its size), or empty.
        model: a model name from /models.
        tile: tile size in input pixels (0 = the whole image at once).
    Returns:
        (bicubic, model) for the slider, the model's PNG, the metrics (PSNR/SSIM/MS-SSIM on Y,
        border = scale, and LPIPS where available) for the model and for bicubic.
    """
    with _user_errors():
        return backend.evaluate_files(_path(image), _path(ground_truth), model, tile=tile)


def upscale_video(video: str, model: str = DEFAULT_MODEL, outscale: float = 0):
    """Super-resolve a short video (H.264 MP4 out; audio, subtitles and timing kept).

    Args:
        video: the input video file (capped in length and output frame size, see the tab).
        model: a model name from /models.
        outscale: final scale factor (1-8); 0 keeps the model's own scale.
    Returns:
        the upscaled video, details (sizes, frames, seconds, fps, device).
    """
    with _user_errors():
        return backend.upscale_video_file(_path(video), model, outscale=outscale)


def models() -> list[dict[str, Any]]:
    """Every model the app offers: name, scale, parameters, architecture, description."""
    return backend.list_models()


# ---------------------------------------------------------------------- small UI helpers


def _upscale_summary(info: dict[str, Any]) -> str:
    (w, h), (ow, oh) = info["input_size"], info["output_size"]
    return f"**{info['model']}**: {w}×{h} → {ow}×{oh} in **{info['seconds']:.2f} s** on {info['device']}"


def _metrics_table(result: dict[str, Any]) -> str:
    model = result["model"]
    rows = [
        ("PSNR-Y (dB) ↑", "psnr_y", "{:.2f}"),
        ("SSIM-Y ↑", "ssim_y", "{:.4f}"),
        ("MS-SSIM-Y ↑", "ms_ssim_y", "{:.4f}"),
        ("LPIPS ↓", "lpips", "{:.4f}"),
    ]
    lines = [f"| metric | {model} | bicubic |", "|---|---:|---:|"]
    for label, key, fmt in rows:
        cells = [
            fmt.format(result[who][key]) if result[who].get(key) is not None else "n/a" for who in (model, "bicubic")
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    notes = {result[model].get(f"{key}_note") for key in ("ms_ssim", "lpips")} - {None}
    (w, h), (gw, gh) = result["input_size"], result["ground_truth_size"]
    lines.append(
        f"\n{result['mode']} mode, x{result['scale']}: {w}×{h} input, {gw}×{gh} ground truth, "
        f"border {result['crop_border']} px cropped; {result['seconds']:.2f} s on {result['device']}."
    )
    lines += [f"n/a: {note}" for note in sorted(notes)]
    return "\n".join(lines)


def _mode_changed(mode: str):
    reference = mode == "reference"
    image_label = "High-resolution reference image" if reference else "Your low-resolution input"
    return gr.update(label=image_label), gr.update(visible=not reference, value=None)


# ---------------------------------------------------------------------- the UI

_THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

# Gradio's cache (uploads, served results) is swept every quarter of the age it keeps files for.
_CACHE_SECONDS = backend.cache_seconds()

with gr.Blocks(
    title="srhub super-resolution",
    analytics_enabled=False,
    delete_cache=(max(1, _CACHE_SECONDS // 4), _CACHE_SECONDS),
) as demo:
    gr.Markdown(
        "# srhub: image super-resolution\n"
        "Upload an image, pick a model, compare before and after with the slider, and download the "
        "full-resolution PNG. **Measure** computes PSNR/SSIM against a ground truth, next to bicubic. "
        f"Inputs up to {backend.max_pixels() / 1e6:.1f} Mpx, results up to "
        f"{backend.max_output_pixels() / 1e6:.1f} Mpx. The same functions are served as an API "
        "(`/upscale`, `/evaluate`, `/models`; see *Use via API* below)."
    )
    model = gr.Dropdown(
        choices=backend.grouped_choices(),
        value=DEFAULT_MODEL,
        label="Model (Anime / Photo · scale · parameters · what it is)",
    )
    with gr.Tabs():
        with gr.Tab("Upscale"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(
                        type="filepath",
                        label="Input image",
                        sources=["upload", "clipboard"],
                        height=320,
                        elem_id="upscale-input",
                    )
                    with gr.Row():
                        outscale = gr.Number(value=0, minimum=0, maximum=8, label="Output scale (0 = the model's)")
                        tile = gr.Number(
                            value=DEFAULT_TILE, minimum=0, precision=0, label="Tile size (0 = whole image)"
                        )
                    run = gr.Button("Upscale", variant="primary", elem_id="upscale-button")
                    gr.Examples(examples=EXAMPLES, inputs=[image], label="Examples (crops of photos-43)")
                with gr.Column():
                    slider = gr.ImageSlider(label="Before (bicubic) / after", type="pil", elem_id="upscale-result")
                    summary = gr.Markdown(elem_id="upscale-summary")
                    download = gr.File(label="Full-resolution result (PNG)")
                    details = gr.JSON(label="Details")
        with gr.Tab("Measure"):
            with gr.Row():
                with gr.Column():
                    mode = gr.Radio(
                        ["reference", "ground truth"],
                        value="reference",
                        label="Mode",
                        info="reference: upload a sharp image, the app downscales it (MATLAB bicubic) and "
                        "measures how well the model restores it. ground truth: upload your input and its truth.",
                    )
                    eval_image = gr.Image(type="filepath", label="High-resolution reference image", height=260)
                    ground_truth = gr.Image(
                        type="filepath", label="Ground truth (scale × the input's size)", visible=False, height=260
                    )
                    eval_tile = gr.Number(
                        value=DEFAULT_TILE, minimum=0, precision=0, label="Tile size (0 = whole image)"
                    )
                    measure = gr.Button("Measure", variant="primary", elem_id="measure-button")
                    gr.Examples(examples=EXAMPLES, inputs=[eval_image], label="Examples")
                with gr.Column():
                    eval_slider = gr.ImageSlider(label="Bicubic / model", type="pil")
                    table = gr.Markdown()
                    eval_download = gr.File(label="Model result (PNG)")
                    metrics = gr.JSON(label="Metrics (JSON)")
        with gr.Tab("Video"):  # the Video tab and /upscale_video, self-contained
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="Input video", sources=["upload"], height=260)
                    video_scale = gr.Number(value=0, minimum=0, maximum=8, label="Output scale (0 = the model's)")
                    video_run = gr.Button("Upscale video", variant="primary", elem_id="video-button")
                    gr.Markdown(
                        f"Up to {backend.max_video_seconds():g} s and {backend.max_video_pixels() / 1e6:.1f} Mpx "
                        "output frames here; `srhub video IN -o OUT --model NAME` has no limits."
                    )
                with gr.Column():
                    video_out = gr.Video(label="Upscaled (H.264)", height=260)
                    video_details = gr.JSON(label="Details")
            video_run.click(
                upscale_video, [video_in, model, video_scale], [video_out, video_details], api_name="upscale_video",
                preprocess=False,
            )  # fmt: skip
    with gr.Accordion("All models", open=False):
        catalogue = gr.JSON(label="/models")

    run.click(
        upscale, [image, model, outscale, tile], [slider, download, details], api_name="upscale", preprocess=False
    ).success(_upscale_summary, details, summary, api_visibility="private", queue=False)
    measure.click(
        evaluate,
        [eval_image, ground_truth, model, eval_tile],
        [eval_slider, eval_download, metrics],
        api_name="evaluate",
        preprocess=False,
    ).success(_metrics_table, metrics, table, api_visibility="private", queue=False)
    mode.change(_mode_changed, mode, [eval_image, ground_truth], api_visibility="private", queue=False)
    demo.load(models, None, catalogue, api_name="models", concurrency_limit=None)

# Gradio's cache and srhub's results are swept on a schedule that survives steady traffic.
backend.start_sweeper(demo, every=max(1, _CACHE_SECONDS // 4), age=_CACHE_SECONDS)

# One model run at a time by default: parallel users wait in the queue instead of exhausting memory.
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


if __name__ == "__main__":
    backend.warm_up(DEFAULT_MODEL)  # load and run the default model once before the first visitor
    torch.set_grad_enabled(False)
    demo.launch(theme=_THEME, max_file_size="50mb", ssr_mode=False)
