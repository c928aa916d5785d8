"""The Gradio demo (app.py): handlers called directly, then the app served on a local port
and driven with gradio_client.

The app is pointed (``SRHUB_APP_MODELS``) at two tiny models made here, so nothing big is
converted or loaded: an SRVGGNetCompact x2 whose last convolution is zero (its output is
exactly the nearest-upsampled input, which the tests can predict) and an FSRCNN x3.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")

from srhub import metrics  # noqa: E402
from srhub.degradations import imresize  # noqa: E402
from srhub.models import get_model_class  # noqa: E402


pytestmark = pytest.mark.app
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cups.png"
NEAREST = "tiny-nearest-x2"
FSRCNN = "tiny-fsrcnn-x3"


def make_tiny_models(folder: Path) -> Path:
    """Two srhub model folders under ``folder``; returns ``folder``."""
    torch.manual_seed(0)
    nearest = get_model_class("srvggnet-compact")(scale=2, num_features=4, num_convs=1)
    with torch.no_grad():
        last = nearest.body[-1]
        last.weight.zero_()
        last.bias.zero_()
    nearest.save_pretrained(folder / NEAREST)
    get_model_class("fsrcnn")(scale=3, num_features=8, shrink_features=4, num_mapping_layers=1).save_pretrained(
        folder / FSRCNN
    )
    return folder


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models = make_tiny_models(tmp_path_factory.mktemp("app-models"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SRHUB_APP_MODELS", str(models))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.delenv("SPACES_ZERO_GPU", raising=False)
        from srhub import app_backend

        app_backend.clear_cache()
        module = importlib.reload(sys.modules["app"]) if "app" in sys.modules else importlib.import_module("app")
        yield module
        app_backend.clear_cache()


def pixels(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))


def nearest_x2(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).repeat(2, axis=0).repeat(2, axis=1)


# ---------------------------------------------------------------------- handlers, called directly


def test_models_lists_every_model_with_scale_and_parameters(app):
    listed = {entry["name"]: entry for entry in app.models()}
    assert set(listed) == {NEAREST, FSRCNN}
    from srhub import app_backend

    for name, entry in listed.items():
        model = app_backend.get_model(name)
        assert entry["scale"] == model.scale
        assert entry["num_parameters"] == model.num_parameters()
        assert entry["description"] and "\n" not in entry["label"]
    assert app.DEFAULT_MODEL == NEAREST  # the smallest one


def test_upscale_returns_slider_pair_png_and_details(app):
    (before, after), png, info = app.upscale(str(EXAMPLE))
    source = Image.open(EXAMPLE)
    assert after.size == before.size == (source.width * 2, source.height * 2)
    assert Path(png).suffix == ".png" and Image.open(png).format == "PNG"
    np.testing.assert_array_equal(pixels(png), pixels(after))
    np.testing.assert_array_equal(pixels(after), nearest_x2(source))  # the zero-residual model is nearest x2
    assert info["model"] == NEAREST and info["output_size"] == [source.width * 2, source.height * 2]
    assert info["seconds"] > 0 and info["device"] == "cpu"


def test_upscale_outscale_and_tiling(app):
    (_, whole), _, _ = app.upscale(str(EXAMPLE), NEAREST, 0, 0)
    (_, tiled), _, info = app.upscale(str(EXAMPLE), NEAREST, 0, 64)
    np.testing.assert_array_equal(pixels(whole), pixels(tiled))
    assert info["tile"] == 64
    (_, resized), _, info = app.upscale(str(EXAMPLE), FSRCNN, 2, 0)
    assert resized.size == (320, 320) and info["outscale"] == 2


def test_model_is_loaded_once(app):
    from srhub import app_backend

    first = app_backend.get_model(NEAREST)
    app.upscale(str(EXAMPLE), NEAREST)
    assert app_backend.get_model(NEAREST) is first


@pytest.mark.parametrize(
    "mode, shown, saved",
    [
        ("RGBA", "RGBA", "RGBA"),
        ("LA", "RGBA", "LA"),
        ("L", "RGB", "L"),
        ("P", "RGB", "RGB"),
        ("I;16", "RGB", "I;16"),  # 16-bit grey stays 16-bit in the PNG
        ("CMYK", "RGB", "RGB"),
    ],
)
def test_upscale_accepts_odd_modes(app, tmp_path, mode, shown, saved):
    source = Image.open(EXAMPLE).convert("RGB").resize((24, 20))
    if mode == "I;16":
        array = (np.asarray(source.convert("L"), dtype=np.uint16) * 257).astype("<u2")
        odd = Image.frombytes("I;16", source.size, array.tobytes())
    else:
        odd = source.convert(mode)
    path = tmp_path / ("odd.jpg" if mode == "CMYK" else "odd.png")
    odd.save(path)
    (before, after), png, _ = app.upscale(str(path))
    assert after.mode == before.mode == shown and after.size == (48, 40)
    result = Image.open(png)
    assert result.size == (48, 40) and result.mode.startswith(saved[:4])


def test_transparency_is_kept_in_the_png(app, tmp_path):
    half = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    half.paste((10, 20, 30, 0), (0, 0, 8, 16))
    half.save(tmp_path / "half.png")
    _, png, _ = app.upscale(str(tmp_path / "half.png"))
    alpha = np.asarray(Image.open(png).getchannel("A"))
    assert (alpha[:, :16] == 0).all() and (alpha[:, 16:] == 255).all()


@pytest.mark.parametrize(
    "args, message",
    [
        ((None,), "no image given"),
        ((str(ROOT / "pyproject.toml"),), "cannot be read"),
        ((str(EXAMPLE), "no-such-model"), "unknown model"),
        ((str(EXAMPLE), NEAREST, 0.5), "output scale"),
        ((str(EXAMPLE), NEAREST, 0, 7), "tile size"),
    ],
)
def test_upscale_bad_input_is_a_gradio_error(app, args, message):
    with pytest.raises(gr.Error, match=message):
        app.upscale(*args)


def test_bad_and_truncated_files_are_gradio_errors(app, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    data = EXAMPLE.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (3, 40)).save(tmp_path / "thin.png")
    for name, message in [("empty.png", "cannot be read"), ("cut.png", "cannot be read"), ("thin.png", "at least")]:
        with pytest.raises(gr.Error, match=message):
            app.upscale(str(tmp_path / name))


def test_size_cap_is_a_clear_error(app, monkeypatch):
    monkeypatch.setenv("SRHUB_APP_MAX_PIXELS", str(100 * 100))
    with pytest.raises(gr.Error, match="too large for this app"):
        app.upscale(str(EXAMPLE))  # 160x160 > 100x100


def test_output_cap_refuses_before_running(app, monkeypatch):
    from srhub import app_backend

    calls = []
    monkeypatch.setattr(app_backend, "_run_model", lambda *args: calls.append(args))
    monkeypatch.setenv("SRHUB_APP_MAX_OUTPUT_PIXELS", str(400 * 400))
    with pytest.raises(gr.Error, match=r"1280x1280 .* SRHUB_APP_MAX_OUTPUT_PIXELS"):
        app.upscale(str(EXAMPLE), NEAREST, 8)  # 160 px x8: 1280x1280 > 400x400
    with pytest.raises(gr.Error, match="more than this app's 0.2 Mpx limit"):
        app.upscale(str(EXAMPLE), FSRCNN, 0)  # the network's own x3 output, 480x480, counts too
    assert calls == []  # refused before the model ran


@pytest.mark.parametrize(
    "outscale, tile, message",
    [("abc", 256, "output scale must be a number, got 'abc'"), (0, "big", "tile size must be a number"),
     (float("nan"), 256, "output scale must be a finite number"), (True, 256, "output scale must be a number"),
     (0, [3], "tile size must be a number")],
)  # fmt: skip
def test_every_numeric_field_is_validated(app, outscale, tile, message):
    with pytest.raises(gr.Error, match=message):
        app.upscale(str(EXAMPLE), NEAREST, outscale, tile)


def test_numeric_strings_are_accepted(app):
    _, _, info = app.upscale(str(EXAMPLE), NEAREST, "2", "64")
    assert info["outscale"] == 2 and info["tile"] == 64


def test_result_files_are_pruned(app, monkeypatch):
    from srhub import app_backend

    paths = [app.upscale(str(EXAMPLE), NEAREST)[1] for _ in range(app_backend.MAX_KEPT_RESULTS + 4)]
    kept = sorted(app_backend.results_dir().iterdir())
    assert len(kept) <= app_backend.MAX_KEPT_RESULTS and Path(paths[-1]).is_file() and not Path(paths[0]).exists()
    assert all(Path(p).parent == app_backend.results_dir() for p in paths)  # one folder, not one per request
    monkeypatch.setenv("SRHUB_APP_KEEP_SECONDS", "0")
    time.sleep(0.01)
    app_backend.prune_results()
    assert list(app_backend.results_dir().iterdir()) == []


def test_warm_up_loads_and_runs_the_default_model(app):
    from srhub import app_backend

    app_backend.clear_cache()
    assert app_backend.warm_up() >= 0 and app_backend.default_model() in app_backend._models


def test_evaluate_reference_mode(app):
    (bicubic, model_out), png, result = app.evaluate(str(EXAMPLE))
    hr = Image.open(EXAMPLE).convert("RGB")
    assert result["mode"] == "reference" and result["crop_border"] == 2
    assert result["input_size"] == [80, 80] and result["ground_truth_size"] == [160, 160]
    # Recompute independently: MATLAB-bicubic LR, the model (nearest x2) and bicubic back up.
    hr_u8 = torch.from_numpy(np.asarray(hr).copy()).permute(2, 0, 1)
    lq = imresize(hr_u8, scale=0.5)
    gt = hr_u8.float() / 255
    nearest = lq.repeat_interleave(2, 1).repeat_interleave(2, 2).float() / 255
    upsampled = imresize(lq.float() / 255, scale=2)
    assert result[NEAREST]["psnr_y"] == pytest.approx(metrics.psnr(nearest, gt, crop_border=2), abs=1e-3)
    assert result[NEAREST]["ssim_y"] == pytest.approx(metrics.ssim(nearest, gt, crop_border=2), abs=1e-4)
    assert result["bicubic"]["psnr_y"] == pytest.approx(metrics.psnr(upsampled, gt, crop_border=2), abs=1e-3)
    assert result["bicubic"]["psnr_y"] > result[NEAREST]["psnr_y"]  # bicubic beats nearest on a photo
    assert result[NEAREST]["ms_ssim_y"] is None and "176" in result[NEAREST]["ms_ssim_note"]  # 160 px is too small
    assert bicubic.size == model_out.size == (160, 160)
    np.testing.assert_array_equal(pixels(png), pixels(model_out))
    json.dumps(result)  # the metrics are plain JSON


def test_evaluate_with_ground_truth_and_ms_ssim(app, tmp_path):
    hr = Image.open(ROOT / "examples" / "mountain.png").convert("RGB").resize((184, 184))
    hr.save(tmp_path / "gt.png")
    hr.resize((92, 92), Image.Resampling.BOX).save(tmp_path / "input.png")
    _, _, result = app.evaluate(str(tmp_path / "input.png"), str(tmp_path / "gt.png"), NEAREST)
    assert result["mode"] == "ground truth" and result["input_size"] == [92, 92]
    assert 0 < result[NEAREST]["ms_ssim_y"] <= 1  # 184 - 2 * 2 >= 176
    assert result[NEAREST]["psnr_y"] > 20
    lpips_reason = metrics.lpips_unavailable_reason()
    assert (result[NEAREST]["lpips"] is None) == (lpips_reason is not None)


def test_evaluate_ground_truth_of_the_wrong_size(app):
    with pytest.raises(gr.Error, match="must match"):
        app.evaluate(str(EXAMPLE), str(ROOT / "examples" / "dogs.png"), NEAREST)


def test_gpu_decorator_and_duration(app, monkeypatch):
    from srhub import app_backend

    def job():
        return 1

    assert app_backend.gpu(duration=lambda: 1)(job) is job  # no-op off ZeroGPU
    small = app_backend._gpu_seconds(NEAREST, Image.new("RGB", (64, 64)), None, None)
    large = app_backend._gpu_seconds(NEAREST, Image.new("RGB", (2048, 2048)), 4.0, None)
    assert 0 < small < large <= 120


# ---------------------------------------------------------------------- the served app, through gradio_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    from gradio_client import Client

    port = _free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield Client(
            f"http://127.0.0.1:{port}/",
            verbose=False,
            analytics_enabled=False,
            download_files=str(tmp_path_factory.mktemp("client-downloads")),
        )
    finally:
        app.demo.close()


def test_client_upscale_with_defaults(client):
    from gradio_client import handle_file

    slider, png, info = client.predict(handle_file(str(EXAMPLE)), api_name="/upscale")
    assert info["model"] == NEAREST and info["output_size"] == [320, 320]
    assert len(slider) == 2 and Image.open(slider[1]).size == (320, 320)
    np.testing.assert_array_equal(pixels(png), nearest_x2(Image.open(EXAMPLE)))


def test_client_upscale_named_parameters(client):
    from gradio_client import handle_file

    _, png, info = client.predict(handle_file(str(EXAMPLE)), model=FSRCNN, outscale=2, tile=64, api_name="/upscale")
    assert info["model"] == FSRCNN and info["tile"] == 64 and Image.open(png).size == (320, 320)


def test_client_evaluate_and_models(client):
    from gradio_client import handle_file

    _, png, result = client.predict(handle_file(str(EXAMPLE)), api_name="/evaluate")
    assert result["mode"] == "reference" and {"psnr_y", "ssim_y"} <= set(result["bicubic"])
    assert Image.open(png).size == (160, 160)
    listed = client.predict(api_name="/models")
    assert [entry["name"] for entry in listed] == [NEAREST, FSRCNN]


def test_client_gets_clear_errors(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="cannot be read"):
        client.predict(handle_file(str(ROOT / "pyproject.toml")), api_name="/upscale")
    with pytest.raises(AppError, match="unknown model"):
        client.predict(handle_file(str(EXAMPLE)), model="nope", api_name="/upscale")
    with pytest.raises(AppError, match="output scale must be a number"):
        client.predict(handle_file(str(EXAMPLE)), outscale="abc", api_name="/upscale")
    with pytest.raises(AppError, match="tile size must be a number"):
        client.predict(handle_file(str(EXAMPLE)), tile="big", api_name="/upscale")


# ---------------------------------------------------------------------- video


def _clip(path: Path, seconds: float = 0.4, size: tuple[int, int] = (48, 32)) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(int(seconds * 10)):
            rgb = np.full((size[1], size[0], 3), 40 * i % 255, np.uint8)
            rgb[::4] = 200
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_client_upscale_video_and_its_caps(client, tmp_path, monkeypatch):
    av = pytest.importorskip("av")
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    clip = _clip(tmp_path / "clip.mp4")
    video, info = client.predict(handle_file(str(clip)), model=FSRCNN, api_name="/upscale_video")
    path = video["video"] if isinstance(video, dict) else video
    with av.open(path) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == info["frames"] == 4 and (frames[0].width, frames[0].height) == (144, 96)
    assert info["method"].startswith("luma")
    from srhub import app_backend

    assert list(app_backend.results_dir().glob("clip_*.mp4"))  # in the pruned results folder, not a folder per request

    monkeypatch.setenv("SRHUB_APP_MAX_VIDEO_SECONDS", "0.2")  # read per request by the server in this process
    with pytest.raises(AppError, match="up to 0.2 s"):
        client.predict(handle_file(str(clip)), model=FSRCNN, api_name="/upscale_video")
    monkeypatch.setenv("SRHUB_APP_MAX_VIDEO_SECONDS", "10")
    monkeypatch.setenv("SRHUB_APP_MAX_VIDEO_PIXELS", str(96 * 64 - 1))
    with pytest.raises(AppError, match="96x64 frames; this demo makes frames up to 6,143 pixels"):
        client.predict(handle_file(str(clip)), model=NEAREST, api_name="/upscale_video")
    with pytest.raises(AppError, match="cannot be read"):
        client.predict(handle_file(str(ROOT / "pyproject.toml")), api_name="/upscale_video")
